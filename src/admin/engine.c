/* The engine: the llama-server in use, the installed ones, and the build job (engine.h). */
#include "admin/engine.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/audit.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "http/errors.h"
#include "http/server.h"

#ifndef GOINFER_SCRIPTS_DIR
#define GOINFER_SCRIPTS_DIR "scripts"
#endif

#define ENGINE_TAIL_BYTES  (32 * 1024) /* the job's log kept in memory */
#define ENGINE_LINE_BYTES  4096        /* a longer output line is cut */
#define ENGINE_TAIL_LINES  40          /* lines of the log a job's view shows */
#define ENGINE_STATE_FILE  "engine.json"
#define ENGINE_VERSION_MAX 2048

extern char **environ;

enum job_state { JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED };

static const char *const job_state_names[] = {"running", "done", "failed", "cancelled"};

/* A child and the pipe of its stdout and stderr, ended once both are closed. */
struct child {
    uv_process_t proc;
    uv_pipe_t out;
    int open;            /* handles not closed yet */
    int64_t exit_status; /* -1 until it exited */
    int term_signal;
    char line[ENGINE_LINE_BYTES];
    size_t line_len;
    void (*on_line)(struct child *c, const char *line, size_t len);
    void (*on_done)(struct child *c);
    void *arg;
};

struct job {
    struct engine *e;
    uint64_t id;
    enum job_state state;
    char *source, *backend, *state_dir, *log_file;
    bool tls;
    int progress; /* 0..100 from cmake's "[ NN%]" lines, -1 before the first */
    char *step, *error, *installed;
    time_t started, ended;
    struct buf tail; /* the last output lines */
    struct child child;
    bool child_running;
};

/* A GET waiting for llama-server --version. */
struct waiter {
    struct engine *e;
    struct http_request *req;
    char *exe, *engine_dir, *state_dir;
    struct waiter *next;
};

struct engine {
    uv_loop_t *loop;
    void (*reload)(void *arg, const char *why);
    void *reload_arg;
    struct job *job; /* the last one, running or ended */
    uint64_t next_id;
    bool shutting_down;
    /* --version of one program, kept: the program in use rarely changes */
    char *version_exe, *version_key, *version_text;
    struct child probe;
    bool probing;
    struct buf probe_out;
    struct waiter *waiters;
};

/* ---- paths ---- */

static char *
cache_dir(void)
{
    const char *cache = getenv("GOINFER_CACHE"), *home = getenv("HOME");

    if (cache != NULL && *cache != '\0')
        return xstrdup(cache);
    return xasprintf("%s/.cache/goinfer", home ? home : "");
}

/* admin.engine_dir (GI_ENGINE_DIR), else the build cache, where make setup put the first. */
static char *
engine_dir_of(const struct conf *c)
{
    return c->admin.engine_dir != NULL ? xstrdup(c->admin.engine_dir) : cache_dir();
}

static char *
script_path(void)
{
    const char *s = getenv("GI_ENGINE_SCRIPT");

    return s != NULL && *s != '\0' ? xstrdup(s) : xstrdup(GOINFER_SCRIPTS_DIR "/engine-build.sh");
}

/* A folder name in the engines folder: no path, no hidden file, no NUL. */
static bool
name_valid(const char *n)
{
    return n != NULL && *n != '\0' && *n != '.' && strchr(n, '/') == NULL && strlen(n) < 256;
}

static bool
executable(const char *path)
{
    struct stat st;

    return path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* ---- the choice, kept in the state folder ---- */

char *
engine_chosen_exe(const char *state_dir)
{
    char *file = xasprintf("%s/" ENGINE_STATE_FILE, state_dir ? state_dir : ".");
    json_t *j = json_load_file(file, 0, NULL);
    const char *exe = json_string_value(json_object_get(j, "exe"));
    char *out = NULL;

    if (exe != NULL && executable(exe))
        out = xstrdup(exe);
    else if (exe != NULL)
        log_warnx("engine: the chosen llama-server %s (in %s) is gone; using the configured one",
                  exe, file);
    json_decref(j);
    free(file);
    return out;
}

/* mkdir -p, mode 0700 for what it creates. */
static int
make_dirs(const char *dir)
{
    char *d = xstrdup(dir);
    int rc = 0;

    for (char *p = d + 1; rc == 0; p++) {
        bool end = *p == '\0';

        if (*p != '/' && !end)
            continue;
        *p = '\0';
        if (mkdir(d, 0700) != 0 && errno != EEXIST)
            rc = -errno;
        if (end)
            break;
        *p = '/';
    }
    free(d);
    return rc;
}

/* Writes the choice (exe NULL: none, the configured llama-server) with a rename, so a crash
 * leaves the old choice or the new one. */
static int
choice_write(const char *state_dir, const char *exe, const char *name)
{
    char *file = xasprintf("%s/" ENGINE_STATE_FILE, state_dir);
    char *tmp = xasprintf("%s.tmp", file);
    json_t *j = json_pack("{s:s, s:s?}", "exe", exe ? exe : "", "engine", name);
    int rc = 0;

    if (exe == NULL) {
        if (unlink(file) != 0 && errno != ENOENT)
            rc = -errno;
        goto out;
    }
    rc = make_dirs(state_dir);
    if (rc < 0)
        goto out;
    if (json_dump_file(j, tmp, JSON_INDENT(1)) != 0 || rename(tmp, file) != 0) {
        rc = errno ? -errno : -EIO;
        (void)unlink(tmp);
    }
out:
    json_decref(j);
    free(tmp);
    free(file);
    return rc;
}

/* ---- describing a llama-server ---- */

/* The folder two levels above exe (engine/bin/llama-server -> engine), resolved: a link to
 * the folder (llama-current) is followed, a link at the file is not. */
static char *
engine_folder_of(const char *exe)
{
    char *up = xstrdup(exe), *slash, *real = NULL;

    for (int i = 0; i < 2; i++) {
        slash = strrchr(up, '/');
        if (slash == NULL || slash == up)
            goto out;
        *slash = '\0';
    }
    real = realpath(up, NULL);
out:
    free(up);
    return real;
}

/* The build options worth showing, from a build tree's CMakeCache.txt. */
static json_t *
cmake_flags(const char *build_dir)
{
    static const char *const keys[] = {
        "CMAKE_BUILD_TYPE",
        "GGML_CUDA",
        "GGML_VULKAN",
        "GGML_NATIVE",
        "CMAKE_CUDA_ARCHITECTURES",
        "LLAMA_OPENSSL",
        "LLAMA_CURL",
        "BUILD_SHARED_LIBS",
        "LLAMA_BUILD_UI",
        "GGML_BLAS",
        "GGML_METAL",
        "CMAKE_C_COMPILER",
        "CMAKE_CUDA_COMPILER",
        "GGML_CPU_ALL_VARIANTS",
    };
    char *file = xasprintf("%s/CMakeCache.txt", build_dir), *line = NULL;
    FILE *f = fopen(file, "r");
    json_t *flags = NULL;
    size_t cap = 0;
    ssize_t n;

    if (f == NULL)
        goto out;
    flags = json_object();
    while ((n = getline(&line, &cap, f)) > 0) {
        char *colon = strchr(line, ':'), *eq = strchr(line, '=');

        if (colon == NULL || eq == NULL || colon > eq)
            continue;
        line[n - 1] = line[n - 1] == '\n' ? '\0' : line[n - 1];
        *colon = '\0';
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strcmp(line, keys[i]) == 0)
                json_object_set_new(flags, line, json_string(eq + 1));
    }
    fclose(f);
out:
    free(line);
    free(file);
    return flags;
}

static bool
flag_on(json_t *flags, const char *key)
{
    const char *v = json_string_value(json_object_get(flags, key));

    return v != NULL && (strcasecmp(v, "ON") == 0 || strcmp(v, "1") == 0 ||
                         strcasecmp(v, "TRUE") == 0 || strcasecmp(v, "YES") == 0);
}

static bool
strip_suffix(char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    if (n <= k || strcmp(s + n - k, suffix) != 0)
        return false;
    s[n - k] = '\0';
    return true;
}

/* Where exe was built: its engine.json says; else a folder make setup named llama-<tag>-ui,
 * built in <cache>/src/build-<tag>; else exe sits in a build tree (build/bin/llama-server). */
static char *
build_dir_of(const char *folder, json_t *meta, char **tag)
{
    const char *b = json_string_value(json_object_get(meta, "build_dir"));
    const char *base = folder ? strrchr(folder, '/') : NULL;
    char *cache, *d, *probe;
    size_t n;

    *tag = xstrdup(json_string_value(json_object_get(meta, "tag")) ?: "");
    if (b != NULL)
        return xstrdup(b);
    if (folder == NULL)
        return NULL;
    probe = xasprintf("%s/CMakeCache.txt", folder);
    if (access(probe, R_OK) == 0) {
        free(probe);
        return xstrdup(folder);
    }
    free(probe);
    base = base ? base + 1 : folder;
    n = strlen(base);
    if (strncmp(base, "llama-", 6) != 0 || n < 10 || strcmp(base + n - 3, "-ui") != 0)
        return NULL;
    free(*tag);
    *tag = xstrndup(base + 6, n - 9);
    cache = cache_dir();
    d = xasprintf("%s/src/build-%s", cache, *tag); /* make setup's build-<tag>[-cuda][-tls] */
    free(cache);
    strip_suffix(*tag, "-tls");
    if (!strip_suffix(*tag, "-cuda"))
        strip_suffix(*tag, "-vulkan");
    return d;
}

/* Everything known about exe but its --version (added by the caller). */
static json_t *
describe(const char *exe)
{
    char *folder = engine_folder_of(exe), *meta_file, *tag = NULL, *build;
    json_t *meta, *flags, *d;
    const char *backend;

    meta_file = xasprintf("%s/engine.json", folder ? folder : "/nonexistent");
    meta = json_load_file(meta_file, 0, NULL);
    build = build_dir_of(folder, meta, &tag);
    flags = build ? cmake_flags(build) : NULL;
    backend = json_string_value(json_object_get(meta, "backend"));
    if (backend == NULL && flags != NULL)
        backend = flag_on(flags, "GGML_CUDA")     ? "cuda"
                  : flag_on(flags, "GGML_VULKAN") ? "vulkan"
                                                  : "cpu";
    d = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:o?}", "path", exe, "folder", folder, "tag",
                  tag && *tag ? tag : NULL, "backend", backend, "build_dir", build, "flags", flags);
    if (json_object_get(meta, "tls") != NULL)
        json_object_set(d, "tls", json_object_get(meta, "tls"));
    else if (flags != NULL)
        json_object_set_new(d, "tls", json_boolean(flag_on(flags, "LLAMA_OPENSSL")));
    if (json_object_get(meta, "built") != NULL)
        json_object_set(d, "built", json_object_get(meta, "built"));
    if (json_object_get(meta, "source") != NULL)
        json_object_set(d, "source", json_object_get(meta, "source"));
    json_decref(meta);
    free(meta_file);
    free(folder);
    free(tag);
    free(build);
    return d;
}

/* The engine folders under dir: each holds bin/llama-server (links are not followed). */
static json_t *
list_engines(const char *dir, const char *current)
{
    json_t *out = json_array();
    char *cur = current ? engine_folder_of(current) : NULL;
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);

    for (int i = 0; i < n; i++) {
        char *folder = xasprintf("%s/%s", dir, ents[i]->d_name);
        char *exe = xasprintf("%s/bin/llama-server", folder), *real;
        struct stat st;

        if (name_valid(ents[i]->d_name) && lstat(folder, &st) == 0 && S_ISDIR(st.st_mode) &&
            executable(exe)) {
            json_t *d = describe(exe);

            real = realpath(folder, NULL);
            json_object_set_new(d, "name", json_string(ents[i]->d_name));
            json_object_set_new(d, "current", json_boolean(real && cur && strcmp(real, cur) == 0));
            json_object_del(d, "flags");
            json_array_append_new(out, d);
            free(real);
        }
        free(exe);
        free(folder);
        free(ents[i]);
    }
    free(ents);
    free(cur);
    return out;
}

/* ---- children: a build, a --version probe ---- */

static void
child_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    b->base = xmalloc(16 * 1024);
    b->len = 16 * 1024;
}

static void
child_closed(uv_handle_t *h)
{
    struct child *c = h->data;

    if (--c->open == 0)
        c->on_done(c);
}

/* Splits the output into lines (a longer one is cut); "\r" ends a line too (progress bars). */
static void
child_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct child *c = s->data;

    for (ssize_t i = 0; i < n; i++) {
        char ch = b->base[i];

        if (ch == '\n' || ch == '\r' || c->line_len == sizeof(c->line) - 1) {
            c->line[c->line_len] = '\0';
            if (c->line_len > 0)
                c->on_line(c, c->line, c->line_len);
            c->line_len = 0;
            if (ch == '\n' || ch == '\r')
                continue;
        }
        c->line[c->line_len++] = ch;
    }
    free(b->base);
    if (n < 0) {
        if (c->line_len > 0) {
            c->line[c->line_len] = '\0';
            c->on_line(c, c->line, c->line_len);
            c->line_len = 0;
        }
        uv_close((uv_handle_t *)&c->out, child_closed);
    }
}

static void
child_exit(uv_process_t *p, int64_t status, int sig)
{
    struct child *c = p->data;

    c->exit_status = status;
    c->term_signal = sig;
    uv_close((uv_handle_t *)p, child_closed);
}

/* Starts argv with env in its own session, so a cancel reaches its whole group (make, the
 * compilers, the smoke test's llama-server). Its stdin is /dev/null; its stdout and stderr are
 * one pipe, so the lines come in the order written. On failure on_done runs all the same. */
static int
child_start(uv_loop_t *loop, struct child *c, char **argv, char **env)
{
    uv_stdio_container_t io[3];
    uv_process_options_t o = {0};
    uv_file fds[2] = {-1, -1};
    int rc;

    c->exit_status = -1;
    c->term_signal = 0;
    c->line_len = 0;
    uv_pipe_init(loop, &c->out, 0);
    c->out.data = c->proc.data = c;
    c->open = 1;
    rc = uv_pipe(fds, 0, 0); /* both ends close-on-exec; the child's is dup'ed onto 1 and 2 */
    if (rc == 0)
        rc = uv_pipe_open(&c->out, fds[0]);
    if (rc < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        goto fail;
    }
    io[0].flags = UV_IGNORE;
    io[1].flags = io[2].flags = UV_INHERIT_FD;
    io[1].data.fd = io[2].data.fd = fds[1];
    o.file = argv[0];
    o.args = argv;
    o.env = env;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = child_exit;
    o.flags = UV_PROCESS_DETACHED;
    rc = uv_spawn(loop, &c->proc, &o);
    c->open = 2; /* the handle is initialised even when the spawn failed */
    if (rc < 0) {
        uv_close((uv_handle_t *)&c->proc, child_closed);
        goto fail;
    }
    close(fds[1]);
    fds[1] = -1;
    rc = uv_read_start((uv_stream_t *)&c->out, child_alloc, child_read);
    if (rc < 0)
        uv_close((uv_handle_t *)&c->out, child_closed); /* the exit closes the other */
    return 0;
fail:
    if (fds[1] >= 0)
        close(fds[1]);
    uv_close((uv_handle_t *)&c->out, child_closed);
    return rc;
}

static void
child_kill(struct child *c)
{
    if (c->exit_status < 0 && c->proc.pid > 0)
        (void)kill(-c->proc.pid, SIGTERM);
}

/* ---- the build job ---- */

static json_t *
job_view(const struct job *j)
{
    const char *t = j->tail.len ? buf_cstr((struct buf *)&j->tail) : "", *p = t + strlen(t);
    json_t *v;

    for (int lines = 0; p > t && lines <= ENGINE_TAIL_LINES; p--) /* the last lines */
        lines += p[-1] == '\n';
    p += p > t;
    v = json_pack("{s:I, s:s, s:s, s:s, s:b, s:i, s:s?, s:s?, s:s?, s:I, s:s, s:s}", "id",
                  (json_int_t)j->id, "state", job_state_names[j->state], "source", j->source,
                  "backend", j->backend, "tls", j->tls, "progress", j->progress, "step", j->step,
                  "error", j->error, "engine", j->installed, "started", (json_int_t)j->started,
                  "log_tail", p, "log", j->log_file);
    if (j->ended)
        json_object_set_new(v, "ended", json_integer((json_int_t)j->ended));
    return v;
}

static void
job_free(struct job *j)
{
    if (j == NULL)
        return;
    free(j->source);
    free(j->backend);
    free(j->state_dir);
    free(j->log_file);
    free(j->step);
    free(j->error);
    free(j->installed);
    buf_cleanup(&j->tail);
    free(j);
}

/* Keeps the tail: past its cap, the older half goes. */
static void
tail_add(struct buf *b, const char *line, size_t len)
{
    if (b->len + len + 1 > ENGINE_TAIL_BYTES) {
        const char *cut = memchr(b->data + b->len / 2, '\n', b->len - b->len / 2);

        buf_consume(b, cut ? (size_t)(cut - b->data) + 1 : b->len);
    }
    if (len + 1 < ENGINE_TAIL_BYTES)
        buf_printf(b, "%.*s\n", (int)len, line);
}

static void
set_str(char **dst, const char *s, size_t len)
{
    free(*dst);
    *dst = xstrndup(s, len);
}

/* "[ 42%] Building ..." gives the progress; the script's "engine: " lines the step, the error
 * and, at the end, the folder installed. */
static void
job_line(struct child *c, const char *line, size_t len)
{
    struct job *j = c->arg;
    static const char step[] = "engine: step ", error[] = "engine: error ",
                      done[] = "engine: installed ";

    tail_add(&j->tail, line, len);
    if (len > 6 && line[0] == '[' && line[4] == '%' && line[5] == ']') {
        int pct = 0;

        for (size_t i = 1; i < 4; i++)
            pct = line[i] >= '0' && line[i] <= '9' ? pct * 10 + line[i] - '0' : pct;
        j->progress = pct > 100 ? 100 : pct;
    } else if (strncmp(line, step, sizeof(step) - 1) == 0) {
        set_str(&j->step, line + sizeof(step) - 1, len - sizeof(step) + 1);
        log_info("engine: job %llu: %s", (unsigned long long)j->id, j->step);
    } else if (strncmp(line, error, sizeof(error) - 1) == 0) {
        set_str(&j->error, line + sizeof(error) - 1, len - sizeof(error) + 1);
    } else if (strncmp(line, done, sizeof(done) - 1) == 0) {
        set_str(&j->installed, line + sizeof(done) - 1, len - sizeof(done) + 1);
    }
}

/* The base name of a folder path. */
static const char *
base_of(const char *path)
{
    const char *s = strrchr(path, '/');

    return s ? s + 1 : path;
}

/* The child ended: switch when it installed and smoke-tested an engine, else say why and keep
 * the engine in use. */
static void
job_done(struct child *c)
{
    struct job *j = c->arg;
    char *exe = NULL, why[512];
    int rc;

    j->child_running = false;
    j->ended = time(NULL);
    if (j->state == JOB_CANCELLED) {
        log_warnx("engine: job %llu cancelled; the engine in use stays", (unsigned long long)j->id);
        return;
    }
    if (c->exit_status == 0 && c->term_signal == 0 && j->installed != NULL) {
        exe = xasprintf("%s/bin/llama-server", j->installed);
        rc = choice_write(j->state_dir, exe, base_of(j->installed));
        if (rc == 0) {
            j->state = JOB_DONE;
            j->progress = 100;
            log_info("engine: job %llu built, installed and smoke-tested %s: switching to it",
                     (unsigned long long)j->id, exe);
            snprintf(why, sizeof(why), "engine %s", base_of(j->installed));
            free(exe);
            if (!j->e->shutting_down)
                j->e->reload(j->e->reload_arg, why);
            return;
        }
        set_str(&j->error, "cannot write the engine choice", 30);
        free(exe);
    }
    j->state = JOB_FAILED;
    if (j->error == NULL)
        j->error = c->exit_status < 0
                       ? xstrdup("the build script could not be started")
                       : xasprintf("the build script ended with status %lld%s",
                                   (long long)c->exit_status, c->term_signal ? " (killed)" : "");
    log_warnx("engine: job %llu failed: %s; the engine in use stays", (unsigned long long)j->id,
              j->error);
}

#define SMOKE_CANDIDATES 3

/* The smallest model files Goinfer knows, one per line: the smoke test tries them in turn (a
 * file that cannot load, such as a corrupt one, must not fail a good build). */
static char *
smoke_models(const struct catalog *cat)
{
    const char *best[SMOKE_CANDIDATES] = {NULL};
    uint64_t size[SMOKE_CANDIDATES] = {0};
    struct buf out;
    char *s;

    for (size_t i = 0; cat != NULL && i < cat->n; i++) {
        const struct model_def *m = &cat->v[i];
        size_t k = SMOKE_CANDIDATES;

        if (m->path == NULL || strchr(m->path, '\n') != NULL)
            continue;
        while (k > 0 && (best[k - 1] == NULL || m->size < size[k - 1]))
            k--;
        if (k == SMOKE_CANDIDATES)
            continue;
        memmove(&best[k + 1], &best[k], (SMOKE_CANDIDATES - k - 1) * sizeof(best[0]));
        memmove(&size[k + 1], &size[k], (SMOKE_CANDIDATES - k - 1) * sizeof(size[0]));
        best[k] = m->path;
        size[k] = m->size;
    }
    buf_init(&out, 64 * 1024);
    for (size_t k = 0; k < SMOKE_CANDIDATES && best[k] != NULL; k++)
        buf_printf(&out, "%s%s", k ? "\n" : "", best[k]);
    s = xstrdup(out.len ? buf_cstr(&out) : "");
    buf_cleanup(&out);
    return s;
}

/* Our environment without Goinfer's own settings (keys among them: the script needs none)
 * but the build's (GI_CUDA_ARCH, GI_ENGINE_JOBS), then the job's. Returns a NULL-terminated array
 * the caller frees with its strings. */
static char **
job_env(const char *const *add)
{
    size_t n = 0, k = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    for (size_t i = 0; add[i] != NULL; i++)
        n++;
    env = xcalloc(n + 1, sizeof(*env));
    for (size_t i = 0; environ[i] != NULL; i++)
        if (strncmp(environ[i], "GI_", 3) != 0 || strncmp(environ[i], "GI_CUDA_ARCH=", 13) == 0 ||
            strncmp(environ[i], "GI_ENGINE_JOBS=", 15) == 0)
            env[k++] = xstrdup(environ[i]);
    for (size_t i = 0; add[i] != NULL; i++)
        if (strchr(add[i], '=')[1] != '\0') /* "NAME=" is unset */
            env[k++] = xstrdup(add[i]);
    return env;
}

static void
env_free(char **env)
{
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

struct build_req {
    const char *source, *backend, *path, *remote, *version;
    bool tls;
};

/* Starts the job; 0, or -errno with err (the job, failed, is kept for GET to show). */
static int
job_start(struct engine *e, struct job *j, const struct build_req *b, const struct engine_ctx *x)
{
    char *script = script_path(), *dir = engine_dir_of(x->conf), *cache = cache_dir();
    char *models = smoke_models(x->cat);
    char *vars[11];
    char *argv[] = {script, NULL}, **env;
    int rc;

    vars[0] = xasprintf("GI_ENGINE_SOURCE=%s", b->source);
    vars[1] = xasprintf("GI_ENGINE_BACKEND=%s", b->backend);
    vars[2] = xasprintf("GI_ENGINE_TLS=%d", b->tls);
    vars[3] = xasprintf("GI_ENGINE_DIR=%s", dir);
    vars[4] = xasprintf("GI_ENGINE_PATH=%s", b->path ? b->path : "");
    vars[5] = xasprintf("GI_ENGINE_REMOTE=%s", b->remote ? b->remote
                                               : x->conf->admin.engine_remote
                                                   ? x->conf->admin.engine_remote
                                                   : "");
    vars[6] = xasprintf("GI_ENGINE_SMOKE_MODELS=%s", models);
    vars[7] = xasprintf("GI_ENGINE_BUNDLE_VERSION=%s", b->version ? b->version : "");
    vars[8] = xasprintf("GOINFER_CACHE=%s", cache);
    vars[9] = xasprintf("GI_ENGINE_LOG=%s", j->log_file);
    vars[10] = NULL;
    env = job_env((const char *const *)vars);
    j->child.on_line = job_line;
    j->child.on_done = job_done;
    j->child.arg = j;
    j->child_running = true;
    rc = child_start(e->loop, &j->child, argv, env);
    if (rc < 0)
        j->error = xasprintf("cannot start %s: %s", script, uv_strerror(rc));
    else
        log_info("engine: job %llu started: %s from source %s, backend %s%s, into %s (pid %d)",
                 (unsigned long long)j->id, script, b->source, b->backend, b->tls ? ", tls" : "",
                 dir, j->child.proc.pid);
    env_free(env);
    for (size_t i = 0; vars[i] != NULL; i++)
        free(vars[i]);
    free(script);
    free(dir);
    free(cache);
    free(models);
    return rc;
}

/* ---- --version, asked once per program, off the loop ---- */

static void
probe_line(struct child *c, const char *line, size_t len)
{
    struct engine *e = c->arg;

    if (e->probe_out.len + len + 1 < ENGINE_VERSION_MAX)
        buf_printf(&e->probe_out, "%s%.*s", e->probe_out.len ? "\n" : "", (int)len, line);
}

static void respond_get(struct http_request *req, const char *exe, const char *engine_dir,
                        const char *state_dir, const char *version, const struct job *j);

static void
waiter_free(struct waiter *w)
{
    free(w->exe);
    free(w->engine_dir);
    free(w->state_dir);
    free(w);
}

static void
probe_done(struct child *c)
{
    struct engine *e = c->arg;
    struct waiter *w;

    e->probing = false;
    free(e->version_text);
    e->version_text = xstrdup(e->probe_out.len ? buf_cstr(&e->probe_out) : "");
    buf_cleanup(&e->probe_out);
    while ((w = e->waiters) != NULL) {
        e->waiters = w->next;
        if (w->req != NULL) {
            http_detach(w->req);
            respond_get(w->req, w->exe, w->engine_dir, w->state_dir,
                        strcmp(w->exe, e->version_exe) == 0 ? e->version_text : NULL, e->job);
        }
        waiter_free(w);
    }
}

static void
waiter_abort(struct http_request *req, void *data)
{
    struct waiter *w = data;

    (void)req;
    w->req = NULL; /* freed when the probe ends */
}

static const struct http_handler waiter_handler = {waiter_abort, NULL};

/* The program and its change time: a rebuilt file at the same path is asked again. */
static char *
version_key_of(const char *exe)
{
    struct stat st;

    if (stat(exe, &st) != 0)
        return xstrdup(exe);
    return xasprintf("%s@%lld.%09ld", exe, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static void
probe_start(struct engine *e, const char *exe)
{
    char *argv[] = {(char *)exe, "--version", NULL}, *none[] = {NULL},
         **env = job_env((const char *const *)none);

    free(e->version_exe);
    free(e->version_key);
    e->version_exe = xstrdup(exe);
    e->version_key = version_key_of(exe);
    buf_init(&e->probe_out, ENGINE_VERSION_MAX);
    e->probe.on_line = probe_line;
    e->probe.on_done = probe_done;
    e->probe.arg = e;
    e->probing = true;
    (void)child_start(e->loop, &e->probe, argv, env); /* a failure ends in probe_done too */
    env_free(env);
}

/* ---- handlers ---- */

static void
respond_get(struct http_request *req, const char *exe, const char *engine_dir,
            const char *state_dir, const char *version, const struct job *j)
{
    json_t *cur = describe(exe);
    char *chosen = engine_chosen_exe(state_dir);

    json_object_set_new(cur, "version", version ? json_string(version) : json_null());
    json_object_set_new(cur, "chosen", json_boolean(chosen != NULL));
    http_respond_json(req, 200,
                      json_pack("{s:o, s:o, s:s, s:o}", "current", cur, "engines",
                                list_engines(engine_dir, exe), "engine_dir", engine_dir, "job",
                                j ? job_view(j) : json_null()));
    free(chosen);
}

void
engine_get(struct engine *e, struct http_request *req, const struct engine_ctx *x)
{
    char *dir = engine_dir_of(x->conf), *key = x->llama_exe ? version_key_of(x->llama_exe) : NULL;
    struct waiter *w;

    if (x->llama_exe == NULL) {
        http_respond_error(req, 503, "no_engine", "no llama-server is configured");
    } else if (e->version_key != NULL && strcmp(e->version_key, key) == 0 && !e->probing) {
        respond_get(req, x->llama_exe, dir, x->conf->admin.state_dir, e->version_text, e->job);
    } else {
        w = xcalloc(1, sizeof(*w));
        *w = (struct waiter){
            e,         req, xstrdup(x->llama_exe), xstrdup(dir), xstrdup(x->conf->admin.state_dir),
            e->waiters};
        e->waiters = w;
        http_attach(req, &waiter_handler, w);
        if (!e->probing)
            probe_start(e, x->llama_exe);
    }
    free(key);
    free(dir);
}

static bool
one_of(const char *s, const char *const *set)
{
    for (; s != NULL && *set != NULL; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

/* Checks a build request; NULL, or what is wrong with it. */
static const char *
build_check(const struct build_req *b)
{
    static const char *const sources[] = {"cached", "bundle", "git", "local", NULL};
    static const char *const backends[] = {"cpu", "cuda", "vulkan", NULL};

    if (!one_of(b->source, sources))
        return "source must be cached, bundle, git or local";
    if (!one_of(b->backend, backends))
        return "backend must be cpu, cuda or vulkan";
    if (strcmp(b->source, "local") == 0 && (b->path == NULL || b->path[0] != '/'))
        return "source local needs path, an absolute path to a llama.cpp tree";
    if (strcmp(b->backend, "cuda") == 0 && access("/usr/local/cuda/bin/nvcc", X_OK) != 0)
        return "backend cuda needs the CUDA toolkit (/usr/local/cuda/bin/nvcc); none here";
    if (b->remote != NULL && strncmp(b->remote, "https://", 8) != 0 && b->remote[0] != '/')
        return "remote must be an https:// URL or an absolute path";
    return NULL;
}

void
engine_build(struct engine *e, struct http_request *req, const struct engine_ctx *x)
{
    json_t *body = json_loadb(req->body.data, req->body.len, 0, NULL), *tls;
    struct build_req b = {0};
    const char *bad;
    struct job *j;
    int status;

    b.source = json_string_value(json_object_get(body, "source"));
    b.backend = json_string_value(json_object_get(body, "backend"));
    b.path = json_string_value(json_object_get(body, "path"));
    b.remote = json_string_value(json_object_get(body, "remote"));
    b.version = json_string_value(json_object_get(body, "version"));
    b.source = b.source ? b.source : "cached";
    b.backend = b.backend ? b.backend : "cpu";
    tls = json_object_get(body, "tls");
    b.tls = json_is_true(tls);
    bad = !json_is_object(body)                  ? "the body must be a JSON object"
          : tls != NULL && !json_is_boolean(tls) ? "tls must be true or false"
                                                 : build_check(&b);
    if (bad != NULL) {
        status = 400;
        http_respond_error(req, status, "invalid_request_error", "%s", bad);
    } else if (e->job != NULL && e->job->child_running) {
        status = 409;
        http_respond_error(req, status, "conflict",
                           "engine job %llu is %s; cancel it with DELETE /api/engine/build",
                           (unsigned long long)e->job->id,
                           e->job->state == JOB_RUNNING ? "running" : "still stopping");
    } else {
        job_free(e->job);
        j = xcalloc(1, sizeof(*j));
        j->e = e;
        j->id = ++e->next_id;
        j->source = xstrdup(b.source);
        j->backend = xstrdup(b.backend);
        j->state_dir = xstrdup(x->conf->admin.state_dir);
        j->log_file = xasprintf("%s/engine-build.log", j->state_dir);
        j->tls = b.tls;
        j->progress = -1;
        j->started = time(NULL);
        buf_init(&j->tail, ENGINE_TAIL_BYTES);
        e->job = j;
        (void)job_start(e, j, &b, x); /* a failure is the job's, shown as failed */
        status = 202;
        http_respond_json(req, status, json_pack("{s:o}", "job", job_view(j)));
    }
    audit_record(req, "engine.build", b.source, status);
    json_decref(body);
}

void
engine_cancel(struct engine *e, struct http_request *req)
{
    int status = 200;

    if (e->job == NULL || e->job->state != JOB_RUNNING) {
        status = 404;
        http_respond_error(req, status, "not_found", "no engine job is running");
    } else {
        e->job->state = JOB_CANCELLED;
        child_kill(&e->job->child);
        http_respond_json(req, status, json_pack("{s:o}", "job", job_view(e->job)));
    }
    audit_record(req, "engine.cancel", NULL, status);
}

/* POST /api/engine/use: name is a folder of the engines folder holding bin/llama-server, or
 * "default" (the configured llama-server: llama.exe, GI_LLAMA_EXE or make setup's). */
void
engine_use(struct engine *e, struct http_request *req, const struct engine_ctx *x)
{
    json_t *body = json_loadb(req->body.data, req->body.len, 0, NULL);
    const char *name = json_string_value(json_object_get(body, "engine"));
    char *dir = engine_dir_of(x->conf), *exe = NULL, why[300];
    bool dflt = name != NULL && strcmp(name, "default") == 0;
    int status = 200;

    if (!dflt && name_valid(name))
        exe = xasprintf("%s/%s/bin/llama-server", dir, name);
    if (!dflt && !executable(exe)) {
        status = 404;
        http_respond_error(req, status, "not_found",
                           "no engine '%s' in %s (GET /api/engine lists them; \"default\" is "
                           "the configured llama-server)",
                           name ? name : "", dir);
    } else if (choice_write(x->conf->admin.state_dir, exe, dflt ? NULL : name) < 0) {
        status = 500;
        http_respond_error(req, status, "server_error", "cannot write the engine choice in %s",
                           x->conf->admin.state_dir);
    } else {
        snprintf(why, sizeof(why), "engine %s", name);
        log_info("engine: switching to %s", exe ? exe : "the configured llama-server");
        e->reload(e->reload_arg, why);
        http_respond_json(req, status, json_pack("{s:s, s:s?}", "engine", name, "exe", exe));
    }
    audit_record(req, "engine.use", name, status);
    free(exe);
    free(dir);
    json_decref(body);
}

/* ---- life ---- */

struct engine *
engine_new(uv_loop_t *loop, void (*reload)(void *arg, const char *why), void *arg)
{
    struct engine *e = xcalloc(1, sizeof(*e));

    e->loop = loop;
    e->reload = reload;
    e->reload_arg = arg;
    return e;
}

void
engine_shutdown(struct engine *e)
{
    if (e == NULL)
        return;
    e->shutting_down = true;
    if (e->job != NULL && e->job->state == JOB_RUNNING) {
        e->job->state = JOB_CANCELLED;
        child_kill(&e->job->child);
    }
    if (e->probing)
        child_kill(&e->probe);
}

void
engine_free(struct engine *e)
{
    struct waiter *w;

    if (e == NULL)
        return;
    while ((w = e->waiters) != NULL) {
        e->waiters = w->next;
        waiter_free(w);
    }
    job_free(e->job);
    buf_cleanup(&e->probe_out);
    free(e->version_exe);
    free(e->version_key);
    free(e->version_text);
    free(e);
}
