/* The admin API's model files: names, confinement, thread-pool jobs, list and delete. */
#include "admin/files.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/audit.h"
#include "admin/download.h"
#include "admin/upload.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/errors.h"

#define WALK_MAX_DEPTH 8
#define WALK_MAX_FILES 100000

/* ---- names ---- */

void
admin_file_split(const char *name, unsigned *no, unsigned *count)
{
    size_t n = strlen(name);
    const char *p;
    unsigned a = 0, b = 0;

    *no = *count = 0;
    /* "-00001-of-00003.gguf" is 20 bytes */
    if (n < 21 || strcmp(name + n - 5, ".gguf") != 0)
        return;
    p = name + n - 20;
    if (p[0] != '-' || strncmp(p + 6, "-of-", 4) != 0)
        return;
    for (int i = 1; i <= 5; i++) {
        if (p[i] < '0' || p[i] > '9' || p[i + 9] < '0' || p[i + 9] > '9')
            return;
        a = a * 10 + (unsigned)(p[i] - '0');
        b = b * 10 + (unsigned)(p[i + 9] - '0');
    }
    *no = a;
    *count = b;
}

int
admin_file_name_check(const char *name, size_t len, char *err, size_t errlen)
{
    unsigned no, count;

    if (len == 0 || len > 255) {
        snprintf(err, errlen, "a file name has 1 to 255 bytes");
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f || name[i] == '/' || name[i] == '\\') {
            snprintf(err, errlen, "a file name holds no '/', '\\', NUL or control byte");
            return -EINVAL;
        }
    }
    if (name[0] == '.' || strstr(name, "..") != NULL) {
        snprintf(err, errlen, "a file name neither starts with '.' nor holds '..'");
        return -EINVAL;
    }
    if (len < 6 || strcmp(name + len - 5, ".gguf") != 0) {
        snprintf(err, errlen, "a model file's name ends in .gguf");
        return -EINVAL;
    }
    admin_file_split(name, &no, &count);
    if (strstr(name, "-of-") != NULL && (no == 0 || no > count)) {
        snprintf(err, errlen,
                 "a split model's part is named <name>-0000N-of-0000M.gguf with 1 <= N <= M");
        return -EINVAL;
    }
    return 0;
}

int
admin_files_target(const struct admin_files_env *e, char *out, size_t size)
{
    const char *roots = e->models_dir;
    size_t n;

    if (roots == NULL || *roots == '\0')
        return -ENOENT;
    n = strcspn(roots, ":");
    if (n == 0 || n >= size)
        return -ENOENT;
    memcpy(out, roots, n);
    out[n] = '\0';
    return 0;
}

void
admin_refuse(struct http_request *req, const char *action, const char *target, int status,
             const char *type, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    audit_record(req, action, target, status);
    http_respond_error(req, status, type, "%s", msg);
}

/* ---- jobs ---- */

static void
job_abort(struct http_request *req, void *data)
{
    struct admin_job *j = data;

    (void)req;
    j->req = NULL;
}

static const struct http_handler job_handler = {job_abort, NULL};

static void
job_work(uv_work_t *w)
{
    struct admin_job *j = w->data;

    j->run(j);
}

static void
job_after(uv_work_t *w, int status)
{
    struct admin_job *j = w->data;

    (void)status;
    if (j->req != NULL)
        http_detach(j->req);
    j->done(j);
    free(j);
}

void
admin_job_start(uv_loop_t *loop, struct http_request *req, admin_job_cb run, admin_job_cb done,
                void *data)
{
    struct admin_job *j = xcalloc(1, sizeof(*j));

    j->req = req;
    j->run = run;
    j->done = done;
    j->data = data;
    j->work.data = j;
    if (req != NULL)
        http_attach(req, &job_handler, j);
    if (uv_queue_work(loop, &j->work, job_work, job_after) != 0)
        fatalx("uv_queue_work failed"); /* only with a NULL callback: a broken invariant */
}

/* ---- list ---- */

/* A model of the catalog and its files, copied for the thread pool. */
struct model_files {
    char *name;
    char *path, *mmproj;
    struct stat st, mst; /* of path and mmproj, once stat_models ran; st_ino 0: none */
};

struct list_job {
    char **roots;
    struct model_files *models;
    size_t n_models;
    json_t *folders; /* built on the pool, then annotated on the loop */
    json_t *files;
    const struct admin_files_env *env;
    struct admin_uploads *up;
    struct admin_downloads *down;
};

char **
admin_files_roots(const char *models_dir)
{
    char **v = NULL;
    const char *p = models_dir;

    while (p != NULL && *p) {
        size_t n = strcspn(p, ":");

        if (n > 0)
            strv_add(&v, p, n);
        p += n + (p[n] == ':');
    }
    return v;
}

static bool
strv_has(char *const *v, const char *s)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* The catalog's models with files; without their GI_ twins for a listing (all: for a delete,
 * which must stop them too). */
static struct model_files *
copy_models(const struct catalog *cat, bool all, size_t *n)
{
    struct model_files *v = xcalloc(cat->n + 1, sizeof(*v));

    *n = 0;
    for (size_t i = 0; i < cat->n; i++) {
        const struct model_def *m = &cat->v[i];

        if (m->path == NULL || (!all && strncmp(m->name, "GI_", 3) == 0))
            continue;
        v[*n].name = xstrdup(m->name);
        v[*n].path = xstrdup(m->path);
        v[*n].mmproj = m->mmproj ? xstrdup(m->mmproj) : NULL;
        (*n)++;
    }
    return v;
}

static void
free_models(struct model_files *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].path);
        free(v[i].mmproj);
    }
    free(v);
}

/* Each model's files, stat'ed once per job (not once per file listed). */
static void
stat_models(struct model_files *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (stat(m[i].path, &m[i].st) != 0)
            m[i].st.st_ino = 0;
        if (m[i].mmproj == NULL || stat(m[i].mmproj, &m[i].mst) != 0)
            m[i].mst.st_ino = 0;
    }
}

static bool
same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino != 0 && a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* The models whose file (or projector) is st; for a split part, its first part's models. */
static json_t *
models_using(const struct model_files *m, size_t n, int dirfd, const char *name,
             const struct stat *st)
{
    json_t *a = json_array();
    struct stat first = *st;
    unsigned no, count;

    admin_file_split(name, &no, &count);
    if (no > 1) {
        char *p = xstrdup(name);

        snprintf(p + strlen(p) - 20, 21, "-00001-of-%05u.gguf", count % 100000);
        if (fstatat(dirfd, p, &first, 0) != 0)
            memset(&first, 0, sizeof(first));
        free(p);
    }
    for (size_t i = 0; i < n; i++)
        if (same_file(&m[i].st, &first) || same_file(&m[i].mst, st))
            json_array_append_new(a, json_string(m[i].name));
    return a;
}

static void walk(struct list_job *l, const char *root, int dirfd, const char *rel, int depth);

static void
walk_entry(struct list_job *l, const char *root, int dirfd, const char *rel, const char *name,
           int depth)
{
    struct stat st;
    size_t n = strlen(name);
    char *path = rel[0] ? xasprintf("%s/%s", rel, name) : xstrdup(name);

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        goto out;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd >= 0)
            walk(l, root, fd, path, depth + 1); /* closes fd */
    } else if ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && n > 5 &&
               strcmp(name + n - 5, ".gguf") == 0 && json_array_size(l->files) < WALK_MAX_FILES) {
        struct stat target = st;
        bool link = S_ISLNK(st.st_mode);

        if (link && fstatat(dirfd, name, &target, 0) != 0)
            memset(&target, 0, sizeof(target));
        json_array_append_new(
            l->files,
            json_pack("{s:s, s:s, s:I, s:I, s:b, s:o}", "folder", root, "name", path, "size",
                      (json_int_t)target.st_size, "mtime", (json_int_t)st.st_mtime, "symlink", link,
                      "models", models_using(l->models, l->n_models, dirfd, name, &target)));
    }
out:
    free(path);
}

/* Walks the folder dirfd (taken over), never through a symlinked folder. */
static void
walk(struct list_job *l, const char *root, int dirfd, const char *rel, int depth)
{
    DIR *d = depth <= WALK_MAX_DEPTH ? fdopendir(dirfd) : NULL;
    struct dirent *e;

    if (d == NULL) {
        close(dirfd);
        return;
    }
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') /* hidden: ., .., uploads and downloads in progress */
            walk_entry(l, root, dirfd, rel, e->d_name, depth);
    closedir(d);
}

static void
list_run(struct admin_job *j)
{
    struct list_job *l = j->data;

    stat_models(l->models, l->n_models);
    for (size_t i = 0; l->roots && l->roots[i]; i++) {
        struct statvfs vfs;
        int fd = open(l->roots[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        json_t *f = json_pack("{s:s}", "path", l->roots[i]);

        if (fd >= 0 && fstatvfs(fd, &vfs) == 0) {
            json_object_set_new(f, "free_bytes",
                                json_integer((json_int_t)vfs.f_bavail * (json_int_t)vfs.f_frsize));
            json_object_set_new(f, "total_bytes",
                                json_integer((json_int_t)vfs.f_blocks * (json_int_t)vfs.f_frsize));
        } else {
            json_object_set_new(f, "error", json_string(strerror(errno)));
        }
        json_array_append_new(l->folders, f);
        if (fd >= 0)
            walk(l, l->roots[i], fd, "", 0);
    }
}

static bool
model_runs(const struct admin_files_env *e, const char *name)
{
    const struct model_def *m = catalog_find(e->cat, name, strlen(name));
    int code;
    enum swap_model_state st = m ? swap_model_state(e->swap, m, &code) : SWAP_MODEL_UNLOADED;

    return st == SWAP_MODEL_LOADING || st == SWAP_MODEL_LOADED;
}

static void
list_done(struct admin_job *j)
{
    struct list_job *l = j->data;
    size_t i;
    json_t *f, *o;

    json_array_foreach (l->files, i, f) {
        json_t *running = json_array();
        size_t k;
        json_t *name;

        json_array_foreach (json_object_get(f, "models"), k, name) {
            if (model_runs(l->env, json_string_value(name)))
                json_array_append(running, name);
        }
        json_object_set_new(f, "running", json_boolean(json_array_size(running) > 0));
        json_object_set_new(f, "running_models", running);
    }
    o = json_pack("{s:o, s:o, s:o, s:o}", "folders", l->folders, "files", l->files, "uploads",
                  admin_uploads_json(l->up), "downloads", admin_downloads_json(l->down));
    if (j->req != NULL)
        http_respond_json(j->req, 200, o);
    else
        json_decref(o);
    strv_free(l->roots);
    free_models(l->models, l->n_models);
    free(l);
}

void
admin_files_list(struct http_request *req, const struct admin_files_env *e,
                 struct admin_uploads *up, struct admin_downloads *down)
{
    struct list_job *l = xcalloc(1, sizeof(*l));

    l->roots = admin_files_roots(e->models_dir);
    l->models = copy_models(e->cat, false, &l->n_models);
    l->folders = json_array();
    l->files = json_array();
    l->env = e;
    l->up = up;
    l->down = down;
    admin_job_start(e->loop, req, list_run, list_done, l);
}

/* ---- delete ---- */

struct delete_job {
    char **roots;
    char *rel; /* as asked: "sub/name.gguf" */
    bool force;
    int dirfd;    /* the folder that holds it, opened without following links */
    char **parts; /* the names to remove in dirfd */
    char **using; /* models that use them */
    struct model_files *models;
    size_t n_models;
    int err;       /* negative errno */
    char msg[512]; /* what went wrong */
    char **unloaded;
    const struct admin_files_env *env;
};

static void
delete_free(struct delete_job *d)
{
    if (d->dirfd >= 0)
        close(d->dirfd);
    strv_free(d->roots);
    strv_free(d->parts);
    strv_free(d->using);
    strv_free(d->unloaded);
    free_models(d->models, d->n_models);
    free(d->rel);
    free(d);
}

/* Opens the folders of rel under root one name at a time, none of them a symlink; the last
 * name is left in *base. Returns the folder's fd or a negative errno. */
static int
open_parent(const char *root, const char *rel, const char **base, char *msg, size_t msglen)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *p = rel, *slash;

    while (fd >= 0 && (slash = strchr(p, '/')) != NULL) {
        char comp[256];
        size_t n = (size_t)(slash - p);
        int next;

        if (n == 0 || n >= sizeof(comp) || p[0] == '.') {
            close(fd);
            snprintf(msg, msglen, "bad folder name in %s", rel);
            return -EINVAL;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        if (next < 0) {
            int e = errno;

            snprintf(msg, msglen, "%s: %s%s", comp, strerror(e),
                     e == ELOOP || e == ENOTDIR
                         ? " (a symbolic link: Goinfer never follows one out of the model folders)"
                         : "");
            return e == ELOOP || e == ENOTDIR ? -EPERM : -e;
        }
        fd = next;
        p = slash + 1;
    }
    if (fd < 0)
        return -errno;
    *base = p;
    return fd;
}

/* The parts to remove: the file, or every part of a split model that is there. */
static void
delete_parts(struct delete_job *d, const char *base)
{
    unsigned no, count;
    struct stat st;

    admin_file_split(base, &no, &count);
    if (no == 0) {
        strv_add(&d->parts, base, strlen(base));
        return;
    }
    for (unsigned k = 1; k <= count && k <= 99999; k++) {
        char *p = xstrdup(base);

        snprintf(p + strlen(p) - 20, 21, "-%05u-of-%05u.gguf", k % 100000, count % 100000);
        if (fstatat(d->dirfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0)
            strv_add(&d->parts, p, strlen(p));
        free(p);
    }
}

static void
delete_find(struct admin_job *j)
{
    struct delete_job *d = j->data;
    struct stat st;
    const char *base = NULL;

    d->err = -ENOENT;
    for (size_t i = 0; d->roots && d->roots[i] && d->err == -ENOENT; i++) {
        int fd = open_parent(d->roots[i], d->rel, &base, d->msg, sizeof(d->msg));

        if (fd < 0) {
            d->err = fd == -ENOENT ? -ENOENT : fd;
            continue;
        }
        if (fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            close(fd);
            continue;
        }
        d->dirfd = fd;
        d->err = 0;
    }
    if (d->err != 0) {
        if (d->err == -ENOENT)
            snprintf(d->msg, sizeof(d->msg), "no file %s in the model folders", d->rel);
        return;
    }
    delete_parts(d, base);
    stat_models(d->models, d->n_models);
    for (size_t i = 0; d->parts && d->parts[i]; i++) {
        if (fstatat(d->dirfd, d->parts[i], &st, 0) != 0) /* a link's target, to find users */
            continue;
        for (size_t k = 0; k < d->n_models; k++)
            if ((same_file(&d->models[k].st, &st) || same_file(&d->models[k].mst, &st)) &&
                !strv_has(d->using, d->models[k].name))
                strv_add(&d->using, d->models[k].name, strlen(d->models[k].name));
    }
}

static void
delete_unlink(struct admin_job *j)
{
    struct delete_job *d = j->data;

    for (size_t i = 0; d->parts && d->parts[i]; i++) {
        if (unlinkat(d->dirfd, d->parts[i], 0) != 0 && d->err == 0) { /* a link: the link only */
            d->err = -errno;
            snprintf(d->msg, sizeof(d->msg), "cannot remove %s: %s", d->parts[i], strerror(errno));
        }
    }
}

static void
delete_removed(struct admin_job *j)
{
    struct delete_job *d = j->data;
    const struct admin_files_env *e = d->env;
    json_t *parts = json_array(), *unloaded = json_array();
    int status = d->err == 0 ? 200 : 500;

    for (size_t i = 0; d->parts && d->parts[i]; i++)
        json_array_append_new(parts, json_string(d->parts[i]));
    for (size_t i = 0; d->unloaded && d->unloaded[i]; i++)
        json_array_append_new(unloaded, json_string(d->unloaded[i]));
    if (j->req != NULL)
        audit_record(j->req, "file.delete", d->rel, status);
    if (j->req != NULL && d->err == 0)
        http_respond_json(
            j->req, 200,
            json_pack("{s:s, s:o, s:o}", "deleted", d->rel, "files", parts, "unloaded", unloaded));
    else {
        json_decref(parts);
        json_decref(unloaded);
        if (j->req != NULL)
            http_respond_error(j->req, 500, "server_error", "%s", d->msg);
    }
    log_info("files: deleted %s (%zu files)%s", d->rel, strv_len(d->parts),
             d->err ? ", with an error" : "");
    e->reload(e->reload_arg, "a model file was deleted");
    delete_free(d);
}

static int
delete_status(int err)
{
    return err == -ENOENT ? 404 : err == -EPERM ? 403 : err == -EINVAL ? 400 : 500;
}

/* On the loop: refuses while a model using the file runs, unless forced; then unlinks. */
static void
delete_found(struct admin_job *j)
{
    struct delete_job *d = j->data;
    const struct admin_files_env *e = d->env;
    struct http_request *req = j->req;

    if (req == NULL || d->err != 0) {
        if (req != NULL) {
            admin_refuse(req, "file.delete", d->rel, delete_status(d->err), "invalid_request_error",
                         "%s", d->msg);
        }
        delete_free(d);
        return;
    }
    for (size_t i = 0; d->using && d->using[i]; i++) {
        const struct model_def *m = catalog_find(e->cat, d->using[i], strlen(d->using[i]));

        if (m == NULL || !model_runs(e, d->using[i]))
            continue;
        if (!d->force) {
            admin_refuse(req, "file.delete", d->rel, 409, "conflict",
                         "%s is used by model %s, which is running: unload it first "
                         "(POST /models/unload {\"model\":\"%s\"}) or ask DELETE "
                         "/api/files/%s?force=1 to unload it and delete",
                         d->rel, m->name, m->name, d->rel);
            delete_free(d);
            return;
        }
        swap_unload(e->swap, m);
        strv_add(&d->unloaded, m->name, strlen(m->name));
    }
    admin_job_start(e->loop, req, delete_unlink, delete_removed, d);
}

/* %XX in a path; NUL (%00) and a bad escape fail. */
static char *
unescape(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *out = xmalloc(n + 1);

    for (size_t i = 0; i < n; i++) {
        unsigned v;

        if (s[i] == '%' && i + 2 < n + 1 && sscanf(s + i + 1, "%2x", &v) == 1 && v != 0 &&
            strspn(s + i + 1, "0123456789abcdefABCDEF") >= 2) {
            out[o++] = (char)v;
            i += 2;
        } else if (s[i] == '%') {
            free(out);
            return NULL;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Each folder of rel a plain name (no '.' start), the last a model file name. */
static int
check_rel(const char *rel, char *err, size_t errlen)
{
    const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;

    for (const char *p = rel; p < base; p += strcspn(p, "/") + 1)
        if (*p == '.' || *p == '/') {
            snprintf(err, errlen,
                     "folder names in a file's path neither start with '.' nor "
                     "are empty");
            return -EINVAL;
        }
    return admin_file_name_check(base, strlen(base), err, errlen);
}

void
admin_files_delete(struct http_request *req, const struct admin_files_env *e)
{
    struct delete_job *d = xcalloc(1, sizeof(*d));
    char err[256], *force = NULL;

    d->dirfd = -1;
    d->env = e;
    d->rel = unescape(req->path + strlen("/api/files/"));
    if (d->rel == NULL || check_rel(d->rel, err, sizeof(err)) < 0) {
        admin_refuse(req, "file.delete", NULL, 400, "invalid_request_error", "%s",
                     d->rel ? err : "bad %-escape in the file name");
        delete_free(d);
        return;
    }
    if (req->query != NULL) {
        const char *q = strstr(req->query, "force=");

        force = q ? xstrndup(q + 6, strcspn(q + 6, "&")) : NULL;
    }
    d->force = force != NULL && (strcmp(force, "1") == 0 || strcmp(force, "true") == 0);
    free(force);
    d->roots = admin_files_roots(e->models_dir);
    d->models = copy_models(e->cat, true, &d->n_models);
    admin_job_start(e->loop, req, delete_find, delete_found, d);
}
