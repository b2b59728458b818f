#include "discovery.h"

#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "proc/argv.h"

#define MAX_DEPTH        32
#define SCRIPT_MAX_BYTES (256 * 1024) /* a companion script is a command line, not a program */

struct projector {
    char *path;
    uint64_t dim; /* the embedding length it feeds (header), 0 when unknown */
};

struct walk {
    struct model_list *out;
    struct projector *mmproj; /* found projector files */
    size_t n_mmproj;
    dev_t seen_dev[4096]; /* folders visited, against symlink loops */
    ino_t seen_ino[4096];
    size_t n_seen;
};

static bool
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static const char *
base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

bool
models_split_part(const char *path, int *part, int *count)
{
    const char *b = base_name(path);
    size_t n = strlen(b);
    int p = 0, c = 0, used = 0;

    /* "-00001-of-00003.gguf" is 20 characters */
    if (n < 20 || !ends_with(b, ".gguf"))
        return false;
    if (sscanf(b + n - 20, "-%5d-of-%5d.gguf%n", &p, &c, &used) != 2 || used != 20)
        return false;
    if (p < 1 || c < 1 || p > c)
        return false;
    *part = p;
    *count = c;
    return true;
}

bool
models_is_mmproj(const char *path)
{
    return strcasestr(base_name(path), "mmproj") != NULL; /* as llama.cpp's router reads it */
}

/* Length of the stem: the base name without ".gguf", split suffix and "&" flags. */
static size_t
stem_len(const char *b)
{
    size_t n = strlen(b);
    int part, count;
    const char *amp;

    if (models_split_part(b, &part, &count))
        n -= 20;
    else if (ends_with(b, ".gguf"))
        n -= 5;
    amp = memchr(b, '&', n);
    return amp ? (size_t)(amp - b) : n;
}

/* A quantization tag in a file name: Q4_K_M, Q8_0, IQ4_XS, F16, BF16... or NULL. */
static const char *
quant_tag(const char *stem, size_t n, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = stem + i;
        size_t k = 0;

        if (i > 0 && stem[i - 1] != '-' && stem[i - 1] != '.' && stem[i - 1] != '_')
            continue;
        if (strncasecmp(p, "IQ", 2) == 0 || strncasecmp(p, "BF16", 4) == 0 ||
            ((p[0] == 'Q' || p[0] == 'q' || p[0] == 'F' || p[0] == 'f') && p[1] >= '0' &&
             p[1] <= '9')) {
            while (i + k < n && stem[i + k] != '-' && stem[i + k] != '.')
                k++;
            *len = k;
            return p;
        }
    }
    return NULL;
}

/* ".../models--org--Repo-GGUF/snapshots/<rev>/file.gguf" -> "org/Repo:QUANT", or NULL. */
static char *
hf_cache_name(const char *path, const char *stem, size_t n)
{
    const char *m = strstr(path, "/models--"), *sep, *end;
    size_t qlen = 0, rlen;
    const char *q = quant_tag(stem, n, &qlen);

    if (m == NULL || strstr(m, "/snapshots/") == NULL)
        return NULL;
    m += 9;
    sep = strstr(m, "--");
    end = strchr(m, '/');
    if (sep == NULL || end == NULL || sep > end)
        return NULL;
    rlen = (size_t)(end - sep - 2);
    if (rlen > 5 && strncasecmp(sep + 2 + rlen - 5, "-GGUF", 5) == 0)
        rlen -= 5;
    if (q == NULL)
        return xasprintf("%.*s/%.*s", (int)(sep - m), m, (int)rlen, sep + 2);
    return xasprintf("%.*s/%.*s:%.*s", (int)(sep - m), m, (int)rlen, sep + 2, (int)qlen, q);
}

char *
models_name_from_path(const char *path)
{
    const char *b = base_name(path);
    size_t n = stem_len(b);
    char *hf = hf_cache_name(path, b, n);

    return hf ? hf : xstrndup(b, n);
}

/* A growing NULL-terminated list of words. */
struct words {
    char **v;
    size_t n, cap;
};

static void
words_add(struct words *w, const char *s, size_t len)
{
    if (w->n + 2 > w->cap) {
        w->cap = w->cap ? 2 * w->cap : 8;
        w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
    }
    w->v[w->n++] = xstrndup(s, len);
    w->v[w->n] = NULL;
}

char **
models_flags_from_name(const char *path)
{
    const char *b = base_name(path), *amp;
    size_t n = strlen(b), stem = stem_len(b);
    int part, count;
    struct words out = {NULL, 0, 0};

    if (models_split_part(b, &part, &count))
        n -= 20;
    else if (ends_with(b, ".gguf"))
        n -= 5;
    for (const char *p = b + stem; p < b + n; p = amp) {
        const char *eq;
        char *flag;

        p++; /* skip '&' */
        amp = memchr(p, '&', (size_t)(b + n - p));
        amp = amp ? amp : b + n;
        eq = memchr(p, '=', (size_t)(amp - p));
        if ((eq ? eq : amp) == p)
            continue; /* "&&" or "&=v": no flag */
        flag = xasprintf("-%.*s", (int)((eq ? eq : amp) - p), p);
        words_add(&out, flag, strlen(flag));
        free(flag);
        if (eq)
            words_add(&out, eq + 1, (size_t)(amp - eq - 1));
    }
    return out.v;
}

/* The long flags llama.cpp reads with '_' for '-' ("--api_key"): compare them that way. */
static bool
flag_eq(const char *w, size_t len, const char *flag)
{
    bool dashes = len >= 2 && w[0] == '-' && w[1] == '-';

    if (strlen(flag) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (w[i] != flag[i] && !(dashes && w[i] == '_' && flag[i] == '-'))
            return false;
    return true;
}

int
models_flag_reserved(const char *w)
{
    /* Where llama-server listens, its key, what it loads, and --path, which would serve any
     * folder's files through our listeners. */
    static const char *const own[] = {"-m",        "--model",        "--host", "--port",
                                      "--api-key", "--api-key-file", "--path", NULL};
    const char *eq = strchr(w, '=');

    for (int i = 0; own[i]; i++) {
        if (flag_eq(w, strlen(w), own[i]))
            return 1;
        if (eq != NULL && flag_eq(w, (size_t)(eq - w), own[i]))
            return 2;
    }
    return 0;
}

size_t
models_drop_reserved(char **v)
{
    size_t k = 0, dropped = 0;

    for (size_t i = 0; v && v[i]; i++) {
        int own = models_flag_reserved(v[i]);

        if (own == 0) {
            v[k++] = v[i];
            continue;
        }
        free(v[i]);
        dropped++;
        /* its value too, as llama-server would read it, unless that is a flag of its own */
        if (own == 1 && v[i + 1] != NULL && v[i + 1][0] != '-') {
            free(v[++i]);
            dropped++;
        }
    }
    if (v)
        v[k] = NULL;
    return dropped;
}

/* Cuts a comment: '#' at the start of a word, outside quotes. */
static void
strip_comment(char *line)
{
    char q = 0;

    for (char *p = line; *p; p++) {
        if (q == 0 && (*p == '\'' || *p == '"'))
            q = *p;
        else if (q != 0 && *p == q)
            q = 0;
        else if (q == 0 && *p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
    }
}

/* Adds one line's words to out, without the program ("exec", "llama-server"). */
static void
script_line(char *line, struct words *out)
{
    char **words = NULL, *bs;

    strip_comment(line);
    bs = strrchr(line, '\\');
    if (bs && strspn(bs + 1, " \t\r") == strlen(bs + 1))
        *bs = ' '; /* line continuation */
    if (proc_argv_split(line, &words) > 0)
        for (size_t i = 0; words[i]; i++) {
            if (out->n == 0 &&
                (strcmp(words[i], "exec") == 0 || strstr(words[i], "llama-server") != NULL))
                continue;
            words_add(out, words[i], strlen(words[i]));
        }
    proc_argv_free(words);
}

char **
models_flags_from_text(const char *text)
{
    struct words out = {NULL, 0, 0};

    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        char *line = xstrndup(p, n);

        script_line(line, &out);
        free(line);
        p += n + (p[n] == '\n');
    }
    return out.v;
}

char **
models_flags_clean(char **v)
{
    size_t k = 0;

    /* the flags Goinfer sets go first, with their values ("--port $PORT"), then what only a
     * shell would expand ("$@") */
    models_drop_reserved(v);
    for (size_t i = 0; v && v[i]; i++) {
        if (v[i][0] == '$')
            free(v[i]);
        else
            v[k++] = v[i];
    }
    if (k == 0) {
        free(v);
        return NULL;
    }
    v[k] = NULL;
    return v;
}

char *
models_read_small_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "r");
    char *s;
    size_t n;

    if (f == NULL)
        return NULL;
    s = xmalloc(max + 1);
    n = fread(s, 1, max + 1, f);
    if (ferror(f) || n > max) {
        fclose(f);
        free(s);
        return NULL;
    }
    fclose(f);
    s[n] = '\0';
    return s;
}

char **
models_flags_from_script(const char *sh_path)
{
    char *text = models_read_small_file(sh_path, SCRIPT_MAX_BYTES), **v;

    if (text == NULL)
        return NULL;
    v = models_flags_from_text(text);
    free(text);
    return v;
}

static bool
seen_before(struct walk *w, const struct stat *st)
{
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen_dev[i] == st->st_dev && w->seen_ino[i] == st->st_ino)
            return true;
    if (w->n_seen < sizeof(w->seen_ino) / sizeof(w->seen_ino[0])) {
        w->seen_dev[w->n_seen] = st->st_dev;
        w->seen_ino[w->n_seen++] = st->st_ino;
    }
    return false;
}

char *
models_script_for(const char *path)
{
    const char *b = base_name(path);

    return xasprintf("%.*s%.*s.sh", (int)(b - path), path, (int)stem_len(b), b);
}

/* "&k=v" flags in the name, else a <stem>.sh beside the model; either way without the flags
 * Goinfer sets itself. */
static char **
companion_flags(const char *path)
{
    char **flags = models_flags_from_name(path), *sh;

    if (flags == NULL) {
        sh = models_script_for(path);
        flags = models_flags_from_script(sh);
        free(sh);
    }
    return models_flags_clean(flags);
}

static void
add_file(struct walk *w, const char *path, const struct stat *st)
{
    struct model_list *l = w->out;
    int part = 1, count = 1;
    struct model_meta meta;

    if (models_split_part(path, &part, &count) && part != 1)
        return; /* later shards are loaded by llama-server through the first */
    models_read_meta(path, (uint64_t)st->st_size, (int64_t)st->st_mtime, &meta);
    if (models_is_mmproj(path) || meta.is_mmproj) {
        w->mmproj = xrealloc(w->mmproj, (w->n_mmproj + 1) * sizeof(*w->mmproj));
        w->mmproj[w->n_mmproj].path = xstrdup(path);
        w->mmproj[w->n_mmproj++].dim = meta.projection_dim;
        return;
    }
    if (!meta.ok)
        log_warnx("models: %s: %s (listed anyway; llama-server will say more)", path, meta.error);
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n].name = models_name_from_path(path);
    l->v[l->n].path = xstrdup(path);
    l->v[l->n].mmproj = NULL;
    l->v[l->n].flags = companion_flags(path);
    l->v[l->n].size = (uint64_t)st->st_size;
    l->v[l->n].shards = count;
    l->v[l->n].meta = meta;
    l->n++;
}

static void walk_dir(struct walk *w, const char *dir, int depth);

/* Uses the type readdir gives, so only folders, links and *.gguf files cost a stat. */
static void
walk_entry(struct walk *w, const char *dir, const struct dirent *e, int depth)
{
    bool gguf = ends_with(e->d_name, ".gguf");
    char *path;
    struct stat st;

    if (e->d_type == DT_REG && !gguf)
        return;
    if (e->d_type != DT_REG && e->d_type != DT_DIR && e->d_type != DT_LNK &&
        e->d_type != DT_UNKNOWN)
        return; /* sockets, fifos, devices */
    path = xasprintf("%s/%s", dir, e->d_name);
    if (stat(path, &st) != 0)
        log_warn("models: skipping %s", path);
    else if (S_ISDIR(st.st_mode) && !seen_before(w, &st))
        walk_dir(w, path, depth + 1);
    else if (S_ISREG(st.st_mode) && gguf)
        add_file(w, path, &st);
    free(path);
}

static void
walk_dir(struct walk *w, const char *dir, int depth)
{
    DIR *d;
    struct dirent *e;

    if (depth > MAX_DEPTH) {
        log_warnx("models: %s is deeper than %d folders, not searched", dir, MAX_DEPTH);
        return;
    }
    d = opendir(dir);
    if (d == NULL) {
        log_warn("models: cannot open %s", dir);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ., .., and hidden folders such as .git */
        walk_entry(w, dir, e, depth);
    }
    closedir(d);
}

static int
cmp_entry(const void *a, const void *b)
{
    const struct model_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : strcmp(x->path, y->path);
}

static bool
same_dir(const char *a, const char *b)
{
    size_t la = (size_t)(base_name(a) - a), lb = (size_t)(base_name(b) - b);

    return la == lb && strncmp(a, b, la) == 0;
}

/* The name of a model without what varies between its files: "gemma-3-4b-it-Q4_K_M.gguf"
 * and its shards -> "gemma-3-4b-it". For a projector, the "mmproj" word goes too:
 * "mmproj-gemma-3-4b-it-f16.gguf", "gemma-3-4b-it-mmproj.gguf" -> "gemma-3-4b-it";
 * "mmproj-F16.gguf" -> "" (a generic name). Returns a length into *start. */
static size_t
core_name(const char *path, bool projector, const char **start)
{
    const char *b = base_name(path), *q, *mm;
    size_t n = stem_len(b), qlen;

    mm = projector ? strcasestr(b, "mmproj") : NULL;
    if (mm != NULL && mm == b) { /* "mmproj-<core>" */
        b += 6 + (n > 6 && strchr("-_.", b[6]) != NULL);
        n -= (size_t)(b - base_name(path));
    } else if (mm != NULL && mm < b + n) { /* "<core>-mmproj..." */
        n = (size_t)(mm - b) - (mm > b && strchr("-_.", mm[-1]) != NULL);
    }
    q = quant_tag(b, n, &qlen);
    if (q != NULL)
        n = (size_t)(q - b) - (q > b && strchr("-_.", q[-1]) != NULL);
    *start = b;
    return n;
}

/* Lower-case letters and digits only, so "mistral7b" is found in "llava-v1.6-Mistral-7B". */
static char *
folded(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;

    for (size_t i = 0; i < n; i++)
        if (isalnum((unsigned char)s[i]))
            *o++ = (char)tolower((unsigned char)s[i]);
    *o = '\0';
    return out;
}

/* How well a projector's core name fits a model's: 2 the same, 1 one holds the other, 0 no. */
static int
name_fit(const char *pc, size_t pn, const struct model_entry *m)
{
    const char *mc;
    size_t mn = core_name(m->path, false, &mc);
    char *a, *b;
    int fit = 0;

    if (pn == mn && strncasecmp(pc, mc, pn) == 0)
        return 2;
    a = folded(pc, pn);
    b = folded(mc, mn);
    if (strlen(a) >= 4 && strlen(b) >= 4 && (strstr(b, a) != NULL || strstr(a, b) != NULL))
        fit = 1;
    free(a);
    free(b);
    return fit;
}

/* True when every model in dir has one core name: the files of one model (quantizations,
 * a split), as a Hugging Face repository or llama.cpp's router lays them out. */
static bool
one_model_in(const struct model_list *l, const char *dir)
{
    const char *first = NULL, *c;
    size_t first_n = 0, n;

    for (size_t j = 0; j < l->n; j++) {
        if (!same_dir(dir, l->v[j].path))
            continue;
        n = core_name(l->v[j].path, false, &c);
        if (first == NULL) {
            first = c, first_n = n;
        } else if (n != first_n || strncasecmp(c, first, n) != 0) {
            return false;
        }
    }
    return first != NULL;
}

/* The header's word: a projector feeds a model of its own embedding length. */
static bool
dims_fit(const struct projector *p, const struct model_entry *m)
{
    return p->dim == 0 || m->meta.embedding_length == 0 || p->dim == m->meta.embedding_length;
}

/*
 * Which models of its folder a projector goes to: those whose name is its name (best fit
 * first: the same core name, then one holding the other), else every model of a folder that
 * holds one model only; never one whose embedding length differs from its projection.
 * Sets fits[j]; returns how many.
 */
static size_t
projector_fits(const struct model_list *l, const struct projector *p, bool *fits)
{
    const char *pc;
    size_t pn = core_name(p->path, true, &pc), n = 0;
    int best = 0, fit;
    bool generic = pn == 0 || (pn == 5 && strncasecmp(pc, "model", 5) == 0), alone;

    for (size_t j = 0; j < l->n; j++) {
        fits[j] = same_dir(p->path, l->v[j].path) && dims_fit(p, &l->v[j]);
        fit = fits[j] && !generic ? name_fit(pc, pn, &l->v[j]) : 0;
        best = fit > best ? fit : best;
    }
    alone = best == 0 && one_model_in(l, p->path);
    for (size_t j = 0; j < l->n; j++) {
        if (fits[j] && best > 0)
            fits[j] = name_fit(pc, pn, &l->v[j]) == best;
        fits[j] = fits[j] && (best > 0 || alone);
        n += fits[j];
    }
    return n;
}

/* Each projector goes to its own model(s) only (projector_fits); the first by path wins. */
static void
attach_mmproj(struct walk *w)
{
    struct model_list *l = w->out;
    bool *fits = xcalloc(l->n + 1, sizeof(*fits));

    for (size_t i = 0; i < w->n_mmproj; i++) {
        const struct projector *p = &w->mmproj[i];

        if (projector_fits(l, p, fits) == 0)
            log_warnx("models: %s: no model in its folder is known to use it; name it "
                      "mmproj-<model>.gguf or put it in a folder with its model alone",
                      p->path);
        for (size_t j = 0; j < l->n; j++)
            if (fits[j] && l->v[j].mmproj == NULL)
                l->v[j].mmproj = xstrdup(p->path);
    }
    free(fits);
}

static int
cmp_projector(const void *a, const void *b)
{
    return strcmp(((const struct projector *)a)->path, ((const struct projector *)b)->path);
}

static void
free_projectors(struct walk *w)
{
    for (size_t i = 0; i < w->n_mmproj; i++)
        free(w->mmproj[i].path);
    free(w->mmproj);
    w->mmproj = NULL;
    w->n_mmproj = 0;
}

/* Keeps the first of each name (sorted by path, so the choice is stable) and says so. */
static void
drop_duplicates(struct model_list *l)
{
    size_t k = 0;

    for (size_t i = 0; i < l->n; i++) {
        if (k > 0 && strcmp(l->v[k - 1].name, l->v[i].name) == 0) {
            log_warnx("models: %s and %s share the name %s; using the first", l->v[k - 1].path,
                      l->v[i].path, l->v[i].name);
            free(l->v[i].name);
            free(l->v[i].path);
            free(l->v[i].mmproj);
            proc_argv_free(l->v[i].flags);
            continue;
        }
        l->v[k++] = l->v[i];
    }
    l->n = k;
}

static int
check_root(const char *root, char *err, size_t errlen)
{
    struct stat st;

    if (stat(root, &st) != 0) {
        int e = errno;

        snprintf(err, errlen,
                 "models folder %s: %s; set GI_MODELS_DIR (or models_dir in goinfer.yml) to "
                 "folders holding *.gguf files, separated by ':'",
                 root, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(
            err, errlen,
            "models folder %s is not a folder; set GI_MODELS_DIR to folders holding *.gguf files",
            root);
        return -ENOTDIR;
    }
    return 0;
}

int
models_discover(const char *roots, struct model_list *out, char *err, size_t errlen)
{
    struct walk *w = xcalloc(1, sizeof(*w));
    char *copy = xstrdup(roots ? roots : ""), *save = NULL, *root;
    int rc = 0;

    out->v = NULL;
    out->n = 0;
    w->out = out;
    for (root = strtok_r(copy, ":", &save); root; root = strtok_r(NULL, ":", &save)) {
        struct stat st;

        rc = check_root(root, err, errlen);
        if (rc < 0)
            goto out;
        if (stat(root, &st) == 0 && !seen_before(w, &st))
            walk_dir(w, root, 0);
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), cmp_entry);
    drop_duplicates(out);
    if (w->n_mmproj > 1)
        qsort(w->mmproj, w->n_mmproj, sizeof(*w->mmproj), cmp_projector);
    attach_mmproj(w);
out:
    free_projectors(w);
    if (rc < 0)
        model_list_cleanup(out);
    free(copy);
    free(w);
    return rc;
}

void
model_list_cleanup(struct model_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].path);
        free(l->v[i].mmproj);
        proc_argv_free(l->v[i].flags);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

const struct model_entry *
model_list_find(const struct model_list *l, const char *name, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i].name) == len && strncmp(l->v[i].name, name, len) == 0)
            return &l->v[i];
    return NULL;
}
