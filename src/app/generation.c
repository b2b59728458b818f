#include "generation.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/engine.h"
#include "admin/static.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "proc/argv.h"

#define TEXT_MAX (4u << 20) /* a configuration file kept as text: far above any real one */

char *
generation_llama_exe(const struct conf *c, char *err, size_t errlen)
{
    const char *cache = getenv("GOINFER_CACHE"), *home = getenv("HOME");
    struct stat st;
    char *exe = engine_chosen_exe(c->admin.state_dir);

    if (exe != NULL)
        log_info("llama-server: %s, the engine chosen with the admin API (%s/engine.json; "
                 "POST /api/engine/use {\"engine\":\"default\"} goes back to llama.exe)",
                 exe, c->admin.state_dir);
    else if (c->llama_exe != NULL)
        exe = xstrdup(c->llama_exe);
    else if (cache && *cache)
        exe = xasprintf("%s/llama-current/bin/llama-server", cache);
    else
        exe = xasprintf("%s/.cache/goinfer/llama-current/bin/llama-server", home ? home : "");
    if (stat(exe, &st) != 0) {
        snprintf(err, errlen,
                 "llama-server not found at %s: set GI_LLAMA_EXE (or llama.exe in goinfer.yml) to "
                 "a llama-server executable, or run `make setup` to build one",
                 exe);
    } else if (!S_ISREG(st.st_mode) || access(exe, X_OK) != 0) {
        snprintf(err, errlen,
                 "%s is not an executable file: set GI_LLAMA_EXE to a llama-server executable",
                 exe);
    } else {
        return exe;
    }
    free(exe);
    return NULL;
}

static int
discover(struct generation *g, char *err, size_t errlen)
{
    const struct conf *c = &g->conf;

    if (c->models_dir == NULL && c->swap.n_models > 0)
        return 0; /* every model is defined in the llama-swap section */
    if (c->models_dir == NULL) {
        snprintf(err, errlen,
                 "no models folder: set GI_MODELS_DIR (or models_dir in goinfer.yml) "
                 "to folders holding *.gguf files, separated by ':'");
        return -EINVAL;
    }
    if (models_discover(c->models_dir, &g->models, err, errlen) < 0)
        return -ENOENT;
    if (g->models.n == 0 && c->swap.n_models == 0)
        log_warnx("no *.gguf model found under %s; requests will get 404 until models are added "
                  "(then send SIGHUP)",
                  c->models_dir);
    return 0;
}

/* Whether llama.args.common turns llama-server's own page off. */
static bool
args_no_ui(const struct conf *c)
{
    char **words = NULL;
    bool off = false;

    if (c->args_common != NULL && proc_argv_split(c->args_common, &words) >= 0)
        for (char **w = words; *w; w++)
            off |= strcmp(*w, "--no-ui") == 0 || strcmp(*w, "--no-webui") == 0;
    proc_argv_free(words);
    return off;
}

/* Where llama.cpp's web UI at / comes from: the files beside the llama-server, else (its UI
 * built into the program, as an installed or copied llama-server has it) its own page,
 * proxied; said at start, since a 404 at / told nobody why. */
static void
ui_source(struct generation *g)
{
    bool listened = false;

    for (size_t i = 0; i < g->conf.n_listen; i++)
        listened |= (g->conf.listen[i].services & CONF_SVC_GOINFER) != 0;
    g->ui_dir = static_ui_dir_for(g->llama_exe);
    g->ui_proxy = listened && g->ui_dir == NULL && !args_no_ui(&g->conf);
    if (!listened)
        g->ui_source = xstrdup("none, because no listen address offers the goinfer service");
    else if (g->ui_dir != NULL)
        g->ui_source = xasprintf("files from %s", g->ui_dir);
    else if (!g->ui_proxy)
        g->ui_source = xasprintf("none, because %s has no UI folder beside it and "
                                 "llama.args.common turns its own page off (--no-ui)",
                                 g->llama_exe);
    else
        g->ui_source = xasprintf(
            "llama-server's own page, proxied (%s has no UI folder beside it): from a running "
            "model's llama-server, else %s is started%s",
            g->llama_exe, g->conf.default_model ? "the default model" : "the first model",
            g->cat.n == 0 ? "; none for now, as there is no model" : "");
}

int
generation_read_text(const char *path, size_t max, struct generation_text *t)
{
    FILE *f = fopen(path, "rb");
    char *data;
    size_t n;

    t->data = NULL;
    t->len = 0;
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;
    data = xmalloc(max + 1);
    n = fread(data, 1, max + 1, f);
    if (ferror(f) || n > max) {
        fclose(f);
        free(data);
        return n > max ? -EFBIG : -EIO;
    }
    fclose(f);
    data[n] = '\0';
    t->data = data;
    t->len = n;
    return 0;
}

/* The texts the configuration in force came from (read just after the loader read them). */
static void
keep_texts(struct generation *g)
{
    char *swap_file;

    if (g->conf.file == NULL)
        return;
    swap_file = conf_swap_file_for(g->conf.file);
    generation_read_text(g->conf.file, TEXT_MAX, &g->text[0]);
    generation_read_text(swap_file, TEXT_MAX, &g->text[1]);
    free(swap_file);
}

int
generation_load(struct generation *g, int argc, char **argv, char *err, size_t errlen)
{
    char msg[512];
    int rc;

    memset(g, 0, sizeof(*g));
    rc = conf_load(&g->conf, argc, argv, err, errlen);
    if (rc != 0)
        return rc;
    rc = discover(g, err, errlen);
    if (rc < 0)
        return rc;
    keep_texts(g);
    g->llama_exe = generation_llama_exe(&g->conf, err, errlen);
    if (g->llama_exe == NULL && !g->conf.write)
        return -ENOENT;
    if (g->conf.write)
        return 0;
    rc = catalog_build(&g->cat, &g->conf, &g->models, g->llama_exe, msg, sizeof(msg));
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", g->conf.file ? g->conf.file : "config", msg);
    else
        ui_source(g);
    return rc;
}

void
generation_cleanup(struct generation *g)
{
    catalog_cleanup(&g->cat);
    model_list_cleanup(&g->models);
    conf_cleanup(&g->conf);
    free(g->llama_exe);
    free(g->ui_dir);
    free(g->ui_source);
    free(g->text[0].data);
    free(g->text[1].data);
    memset(g, 0, sizeof(*g));
}

/* ---- checking candidate texts with the loader the process uses ---- */

/* Writes len bytes of data to path, new, mode 0600. */
static int
write_new(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), rc = 0;

    if (fd < 0)
        return -errno;
    while (len > 0 && rc == 0) {
        ssize_t w = write(fd, data, len);

        if (w < 0 && errno != EINTR)
            rc = -errno;
        else if (w > 0)
            data += w, len -= (size_t)w;
    }
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* argv with its -config replaced by file. */
static char **
argv_with_config(int argc, char **argv, const char *file, int *n)
{
    char **v = xcalloc((size_t)argc + 3, sizeof(*v));

    *n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i] + (strncmp(argv[i], "--", 2) == 0 ? 2 : 1);

        if (i > 0 && argv[i][0] == '-' && strcmp(a, "config") == 0) {
            i++;
            continue;
        }
        if (i > 0 && argv[i][0] == '-' && strncmp(a, "config=", 7) == 0)
            continue;
        v[(*n)++] = argv[i];
    }
    v[(*n)++] = "-config";
    v[(*n)++] = (char *)file;
    return v;
}

/* s with every from replaced by to (the temporary names by the real ones). */
static char *
renamed(const char *s, const char *from, const char *to)
{
    char *out = xstrdup(""), *next;
    const char *hit;

    for (hit = strstr(s, from); hit != NULL; hit = strstr(s, from)) {
        next = xasprintf("%s%.*s%s", out, (int)(hit - s), s, to);
        free(out);
        out = next;
        s = hit + strlen(from);
    }
    next = xasprintf("%s%s", out, s);
    free(out);
    return next;
}

static void
check_results(const struct generation *g, const char *const tmp[2], const char *const real[2],
              bool failed, char *err, size_t errlen, char ***warnings)
{
    char *const *w = g->cat.warnings ? g->cat.warnings : g->conf.warnings;
    char *a, *b;

    if (failed) {
        a = renamed(err, tmp[1], real[1]);
        b = renamed(a, tmp[0], real[0]);
        snprintf(err, errlen, "%s", b);
        free(a);
        free(b);
    }
    for (size_t i = 0; w != NULL && w[i] != NULL; i++) {
        a = renamed(w[i], tmp[1], real[1]);
        b = renamed(a, tmp[0], real[0]);
        strv_add(warnings, b, strlen(b));
        free(a);
        free(b);
    }
}

int
generation_check(int argc, char **argv, const char *file, const struct generation_text text[2],
                 char *err, size_t errlen, char ***warnings)
{
    const char *slash = strrchr(file, '/');
    char *dir = NULL, *tmp[2] = {NULL, NULL}, *real_swap = conf_swap_file_for(file), **v = NULL;
    const char *real[2] = {file, real_swap};
    struct generation g;
    enum log_level level;
    int rc, n;

    *warnings = NULL;
    dir = slash ? xasprintf("%.*s/.goinfer-check-XXXXXX", (int)(slash - file), file)
                : xstrdup(".goinfer-check-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        rc = -errno;
        snprintf(err, errlen, "cannot make a folder to check in beside %s: %s", file,
                 strerror(errno));
        free(dir);
        free(real_swap);
        return rc;
    }
    tmp[0] = xasprintf("%s/%s", dir, slash ? slash + 1 : file);
    tmp[1] = conf_swap_file_for(tmp[0]);
    rc = write_new(tmp[0], text[0].data, text[0].len);
    if (rc == 0 && text[1].data != NULL)
        rc = write_new(tmp[1], text[1].data, text[1].len);
    if (rc < 0) {
        snprintf(err, errlen, "cannot write in %s: %s", dir, strerror(-rc));
        goto out;
    }
    v = argv_with_config(argc, argv, tmp[0], &n);
    level = log_threshold; /* a candidate's warnings go in the answer, not in the log */
    log_set_level(LOG_LEVEL_ERROR);
    rc = generation_load(&g, n, v, err, errlen);
    log_set_level(level);
    if (rc == 1)
        rc = 0;
    check_results(&g, (const char *const *)tmp, real, rc < 0, err, errlen, warnings);
    generation_cleanup(&g);
out:
    unlink(tmp[0]);
    unlink(tmp[1]);
    rmdir(dir);
    free(v);
    free(tmp[0]);
    free(tmp[1]);
    free(dir);
    free(real_swap);
    return rc;
}

void
generation_stamp(const char *file, struct generation_stamp *out)
{
    char *swap_file = file ? conf_swap_file_for(file) : NULL;
    const char *paths[2] = {file, swap_file};
    struct stat st;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < 2; i++)
        if (paths[i] != NULL && stat(paths[i], &st) == 0)
            out->f[i] = (struct generation_file_stamp){.exists = true,
                                                       .dev = st.st_dev,
                                                       .ino = st.st_ino,
                                                       .size = st.st_size,
                                                       .mtime = st.st_mtim,
                                                       .ctime = st.st_ctim};
    free(swap_file);
}

static bool
same_time(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

bool
generation_stamp_same(const struct generation_stamp *a, const struct generation_stamp *b)
{
    for (size_t i = 0; i < 2; i++) {
        const struct generation_file_stamp *x = &a->f[i], *y = &b->f[i];

        if (x->exists != y->exists || x->dev != y->dev || x->ino != y->ino || x->size != y->size ||
            !same_time(x->mtime, y->mtime) || !same_time(x->ctime, y->ctime))
            return false;
    }
    return true;
}

/* ---- generations: which one each running request holds ---- */

#define USERS_MIN_BUCKETS 256

struct gen_user {
    uint64_t id;
    struct generation *g;
    struct gen_user *next;
};

static void
generation_free(struct generation *g)
{
    if (g == NULL)
        return;
    generation_cleanup(g);
    free(g);
}

/* Request ids are handed out in sequence, so their low bits spread them evenly. */
static struct gen_user **
bucket_of(const struct generations *gs, uint64_t id)
{
    return &gs->users[id & (gs->n_buckets - 1)];
}

/* Doubles the table once it holds two users a bucket on average. */
static void
users_grow(struct generations *gs)
{
    struct gen_user **old = gs->users;
    size_t n_old = gs->n_buckets;

    gs->n_buckets = n_old * 2;
    gs->users = xcalloc(gs->n_buckets, sizeof(*gs->users));
    for (size_t b = 0; b < n_old; b++)
        while (old[b] != NULL) {
            struct gen_user *u = old[b], **head;

            old[b] = u->next;
            head = bucket_of(gs, u->id);
            u->next = *head;
            *head = u;
        }
    free(old);
}

void
generations_init(struct generations *gs, struct generation *first)
{
    memset(gs, 0, sizeof(*gs));
    gs->current = first;
    gs->n_buckets = USERS_MIN_BUCKETS;
    gs->users = xcalloc(gs->n_buckets, sizeof(*gs->users));
}

void
generations_replace(struct generations *gs, struct generation *next)
{
    gs->current->next = gs->retired;
    gs->retired = gs->current;
    gs->current = next;
}

void
generations_begin(struct generations *gs, uint64_t id)
{
    struct gen_user *u = xmalloc(sizeof(*u)), **head;

    if (gs->n_users >= 2 * gs->n_buckets)
        users_grow(gs);
    head = bucket_of(gs, id);
    *u = (struct gen_user){id, gs->current, *head};
    *head = u;
    gs->n_users++;
    gs->current->users++;
}

bool
generations_end(struct generations *gs, uint64_t id)
{
    for (struct gen_user **pp = bucket_of(gs, id); *pp != NULL; pp = &(*pp)->next) {
        struct gen_user *u = *pp;
        struct generation *g = u->g;

        if (u->id != id)
            continue;
        *pp = u->next;
        free(u);
        gs->n_users--;
        return --g->users == 0 && g != gs->current;
    }
    return false;
}

size_t
generations_collect(struct generations *gs, generation_in_use_cb in_use, void *arg)
{
    size_t claimed = 0;

    for (struct generation **pp = &gs->retired; *pp != NULL;) {
        struct generation *g = *pp;
        bool claim = g->users == 0 && in_use != NULL && in_use(g, arg);

        claimed += claim;
        if (g->users > 0 || claim) {
            pp = &g->next;
            continue;
        }
        *pp = g->next;
        generation_free(g);
    }
    return claimed;
}

void
generations_cleanup(struct generations *gs)
{
    for (size_t b = 0; gs->users != NULL && b < gs->n_buckets; b++)
        while (gs->users[b] != NULL) {
            struct gen_user *u = gs->users[b];

            gs->users[b] = u->next;
            free(u);
        }
    free(gs->users);
    gs->users = NULL;
    while (gs->retired != NULL) {
        struct generation *g = gs->retired;

        gs->retired = g->next;
        generation_free(g);
    }
    generation_free(gs->current);
    gs->current = NULL;
}
