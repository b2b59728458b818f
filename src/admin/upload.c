/* Resumable uploads: see upload.h for the protocol and why it is chunked. */
#include "admin/upload.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/audit.h"
#include "core/list.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/errors.h"
#include "models/gguf.h"

#define ID_LEN       32
#define PREFIX       "/api/uploads/"
#define REHASH_BLOCK (8u << 20)
#define META_MAX     4096

enum op { OP_NONE, OP_STATUS, OP_CHUNK, OP_CANCEL };

struct upload {
    struct upload *prev, *next;
    struct admin_uploads *owner;
    char id[ID_LEN + 1];
    char *name, *dir, *part, *meta;
    uint64_t size, offset;
    char expect[65]; /* the sha256 the client announced, or "" */
    char sha[65];    /* once complete */
    EVP_MD_CTX *md;  /* over part[0..offset) */
    int fd;
    bool busy;  /* a job runs: no other chunk until it ends */
    bool found; /* created, or restored from disk */
    /* what runs now */
    struct http_request *req; /* NULL once its client left */
    enum op op;
    struct buf chunk;
    size_t chunk_len;
    /* the next chunk, sent on another connection while this one is written (pipelining) */
    struct http_request *next_req;
    struct buf next_chunk;
    uv_work_t w_write, w_hash, w_job;
    int pending;
    int err; /* negative errno of the job */
    int status;
    char msg[512];
    char **roots; /* restore: where to look */
};

struct admin_uploads {
    const struct admin_files_env *env;
    struct upload *first;
    size_t n;
};

struct admin_uploads *
admin_uploads_new(const struct admin_files_env *env)
{
    struct admin_uploads *u = xcalloc(1, sizeof(*u));

    u->env = env;
    return u;
}

static void
upload_free(struct upload *up)
{
    if (up == NULL)
        return;
    if (up->fd >= 0)
        close(up->fd);
    EVP_MD_CTX_free(up->md);
    buf_cleanup(&up->chunk);
    buf_cleanup(&up->next_chunk);
    strv_free(up->roots);
    free(up->name);
    free(up->dir);
    free(up->part);
    free(up->meta);
    free(up);
}

void
admin_uploads_free(struct admin_uploads *u)
{
    struct upload *up, *next;

    if (u == NULL)
        return;
    for (up = u->first; up != NULL; up = next) {
        next = up->next;
        upload_free(up);
    }
    free(u);
}

static struct upload *
upload_new(struct admin_uploads *u)
{
    struct upload *up = xcalloc(1, sizeof(*up));

    up->owner = u;
    up->fd = -1;
    buf_init(&up->chunk, SIZE_MAX);
    buf_init(&up->next_chunk, SIZE_MAX);
    up->w_write.data = up->w_hash.data = up->w_job.data = up;
    return up;
}

static void
up_abort(struct http_request *req, void *data)
{
    struct upload *up = data;

    if (req == up->next_req)
        up->next_req = NULL;
    else
        up->req = NULL;
}

static const struct http_handler up_handler = {up_abort, NULL};

static json_t *
upload_json(const struct upload *up)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "id", up->id, "name", up->name, "size",
                          (json_int_t)up->size, "offset", (json_int_t)up->offset, "folder", up->dir,
                          "state", up->busy ? "writing" : "waiting");

    if (up->expect[0])
        json_object_set_new(o, "expected_sha256", json_string(up->expect));
    return o;
}

json_t *
admin_uploads_json(const struct admin_uploads *u)
{
    json_t *a = json_array();

    for (const struct upload *up = u ? u->first : NULL; up != NULL; up = up->next)
        if (up->found)
            json_array_append_new(a, upload_json(up));
    return a;
}

/* Answers req with the upload's state and an Upload-Offset header. */
static void
respond_state(struct http_request *req, const struct upload *up, int status, json_t *extra)
{
    char off[32];
    json_t *o = upload_json(up);
    int n = snprintf(off, sizeof(off), "%" PRIu64, up->offset);

    if (extra != NULL)
        json_object_update(o, extra);
    json_decref(extra);
    http_add_header(req, "Upload-Offset", off, (size_t)n);
    http_respond_json(req, status, o);
}

static void
hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static struct upload *
find(struct admin_uploads *u, const char *id)
{
    for (struct upload *up = u->first; up != NULL; up = up->next)
        if (strcmp(up->id, id) == 0)
            return up;
    return NULL;
}

static bool
id_ok(const char *id)
{
    return strlen(id) == ID_LEN && strspn(id, "0123456789abcdef") == ID_LEN;
}

static void
unlink_files(struct upload *up)
{
    if (up->part)
        unlink(up->part);
    if (up->meta)
        unlink(up->meta);
}

/* Takes up out of the list and frees it (no job may run on it). */
static void
drop(struct upload *up)
{
    struct admin_uploads *u = up->owner;

    DLIST_UNLINK(u->first, up);
    u->n--;
    upload_free(up);
}

/* ---- create ---- */

static int
write_all(int fd, const char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static void
create_run(uv_work_t *w)
{
    struct upload *up = w->data;
    struct statvfs vfs;
    struct stat st;
    char *final = xasprintf("%s/%s", up->dir, up->name);
    json_t *m = json_pack("{s:s, s:I, s:s}", "name", up->name, "size", (json_int_t)up->size,
                          "sha256", up->expect);
    char *text = json_dumps(m, JSON_COMPACT);
    int fd = -1;

    json_decref(m);
    if (lstat(final, &st) == 0) {
        up->err = -EEXIST;
        snprintf(up->msg, sizeof(up->msg), "%s is already in %s: delete it first", up->name,
                 up->dir);
    } else if (statvfs(up->dir, &vfs) != 0) {
        up->err = -errno;
        snprintf(up->msg, sizeof(up->msg), "%s: %s", up->dir, strerror(errno));
    } else if ((uint64_t)vfs.f_bavail * vfs.f_frsize < up->size) {
        up->err = -ENOSPC;
        snprintf(up->msg, sizeof(up->msg),
                 "not enough free space in %s: %" PRIu64 " bytes free, %" PRIu64 " needed", up->dir,
                 (uint64_t)vfs.f_bavail * vfs.f_frsize, up->size);
    } else if ((fd = open(up->meta, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
               write_all(fd, text, strlen(text), 0) < 0 ||
               (up->fd = open(up->part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        up->err = -errno;
        snprintf(up->msg, sizeof(up->msg), "cannot create %s: %s", up->part, strerror(errno));
        unlink(up->meta);
    }
    if (fd >= 0)
        close(fd);
    free(text);
    free(final);
}

static int
err_status(int err)
{
    switch (err) {
    case -EEXIST:
        return 409;
    case -ENOSPC:
    case -EDQUOT:
        return 507;
    case -EINVAL:
        return 422;
    case -ENOENT:
        return 404;
    default:
        return 500;
    }
}

static void
create_done(uv_work_t *w, int status)
{
    struct upload *up = w->data;
    struct admin_uploads *u = up->owner;
    struct http_request *req = up->req;

    (void)status;
    up->busy = false;
    if (req != NULL)
        http_detach(req);
    up->req = NULL;
    if (up->err != 0) {
        if (req != NULL) {
            admin_refuse(req, "upload.create", up->name, err_status(up->err),
                         "invalid_request_error", "%s", up->msg);
        }
        drop(up);
        return;
    }
    up->found = true;
    log_info("upload %s: %s (%" PRIu64 " bytes) into %s", up->id, up->name, up->size, up->dir);
    if (req != NULL) {
        char *loc = xasprintf(PREFIX "%s", up->id);

        http_add_header(req, "Location", loc, strlen(loc));
        audit_record(req, "upload.create", up->name, 201);
        respond_state(req, up, 201, NULL);
        free(loc);
    }
    (void)u;
}

/* Reads {"name","size","sha256"?} into up; answers 4xx and returns false when wrong. */
static bool
create_args(struct admin_uploads *u, struct http_request *req, struct upload *up)
{
    json_error_t jerr;
    json_t *o = json_loadb(req->body.data, req->body.len, 0, &jerr);
    json_t *name = json_object_get(o, "name"), *size = json_object_get(o, "size");
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    uint64_t max = u->env->admin->upload_max_bytes;
    char err[256];
    bool ok = false;

    if (!json_is_string(name) || !json_is_integer(size) || json_integer_value(size) <= 0) {
        admin_refuse(req, "upload.create", NULL, 400, "invalid_request_error",
                     "send {\"name\":\"<file>.gguf\",\"size\":<bytes>,\"sha256\":\"<hex>\"} "
                     "(sha256 optional)");
    } else if (admin_file_name_check(json_string_value(name), json_string_length(name), err,
                                     sizeof(err)) < 0 ||
               strlen(json_string_value(name)) != json_string_length(name)) {
        admin_refuse(req, "upload.create", NULL, 400, "invalid_request_error", "%s",
                     strchr(err, ' ') ? err : "a file name holds no NUL");
    } else if ((uint64_t)json_integer_value(size) > max) {
        admin_refuse(req, "upload.create", NULL, 413, "invalid_request_error",
                     "%" PRIu64 " bytes is more than admin.upload_max_bytes (%" PRIu64 ")",
                     (uint64_t)json_integer_value(size), max);
    } else if (sha != NULL && (strlen(sha) != 64 || strspn(sha, "0123456789abcdefABCDEF") != 64)) {
        admin_refuse(req, "upload.create", NULL, 400, "invalid_request_error",
                     "sha256 is 64 hex digits");
    } else {
        up->name = xstrdup(json_string_value(name));
        up->size = (uint64_t)json_integer_value(size);
        for (size_t i = 0; sha && i < 64; i++)
            up->expect[i] = (char)(sha[i] | 0x20); /* lower case */
        ok = true;
    }
    json_decref(o);
    return ok;
}

void
admin_uploads_create(struct admin_uploads *u, struct http_request *req)
{
    struct upload *up = upload_new(u);
    unsigned char rnd[ID_LEN / 2];
    char dir[4096];

    if (!create_args(u, req, up)) {
        upload_free(up);
        return;
    }
    for (struct upload *o = u->first; o != NULL; o = o->next) {
        if (strcmp(o->name, up->name) == 0) {
            admin_refuse(req, "upload.create", NULL, 409, "conflict",
                         "%s is being uploaded already (id %s)", up->name, o->id);
            upload_free(up);
            return;
        }
    }
    if (u->n >= ADMIN_UPLOADS_MAX || admin_files_target(u->env, dir, sizeof(dir)) < 0 ||
        RAND_bytes(rnd, sizeof(rnd)) != 1) {
        admin_refuse(req, "upload.create", NULL, u->n >= ADMIN_UPLOADS_MAX ? 429 : 500,
                     "server_error",
                     u->n >= ADMIN_UPLOADS_MAX ? "%d uploads are open already"
                                               : "no models folder to upload into (%d)",
                     ADMIN_UPLOADS_MAX);
        upload_free(up);
        return;
    }
    hex(rnd, sizeof(rnd), up->id);
    up->dir = xstrdup(dir);
    up->part = xasprintf("%s/.goinfer-upload-%s.part", dir, up->id);
    up->meta = xasprintf("%s/.goinfer-upload-%s.json", dir, up->id);
    up->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(up->md, EVP_sha256(), NULL);
    up->busy = true;
    up->req = req;
    DLIST_PUSH(u->first, up);
    u->n++;
    http_attach(req, &up_handler, up);
    uv_queue_work(u->env->loop, &up->w_job, create_run, create_done);
}

/* ---- restore after a restart: the offset from the part's size, the hash from its bytes ---- */

static int
read_meta(struct upload *up, const char *path)
{
    json_error_t jerr;
    char text[META_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ssize_t n = fd >= 0 ? read(fd, text, sizeof(text)) : -1;
    json_t *o = n > 0 ? json_loadb(text, (size_t)n, 0, &jerr) : NULL;
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    json_int_t size = json_integer_value(json_object_get(o, "size"));
    char err[256];
    int rc = -EINVAL;

    if (name != NULL && size > 0 && admin_file_name_check(name, strlen(name), err, 256) == 0) {
        up->name = xstrdup(name);
        up->size = (uint64_t)size;
        snprintf(up->expect, sizeof(up->expect), "%s", sha && strlen(sha) == 64 ? sha : "");
        rc = 0;
    }
    json_decref(o);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int
rehash(struct upload *up)
{
    char *b = xmalloc(REHASH_BLOCK);
    uint64_t off = 0;
    int rc = 0;

    EVP_DigestInit_ex(up->md, EVP_sha256(), NULL);
    while (off < up->offset) {
        ssize_t n = pread(up->fd, b, REHASH_BLOCK, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
        EVP_DigestUpdate(up->md, b, (size_t)n);
        off += (uint64_t)n;
    }
    free(b);
    return rc;
}

static void
restore_run(uv_work_t *w)
{
    struct upload *up = w->data;
    struct stat st;

    up->err = -ENOENT;
    for (size_t i = 0; up->roots && up->roots[i] && up->err == -ENOENT; i++) {
        char *meta = xasprintf("%s/.goinfer-upload-%s.json", up->roots[i], up->id);

        if (access(meta, F_OK) == 0) {
            up->dir = xstrdup(up->roots[i]);
            up->meta = meta;
            up->part = xasprintf("%s/.goinfer-upload-%s.part", up->dir, up->id);
            up->err = read_meta(up, meta);
        } else {
            free(meta);
        }
    }
    if (up->err == 0) {
        up->fd = open(up->part, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        up->err = up->fd < 0 || fstat(up->fd, &st) != 0 ? -errno : 0;
    }
    if (up->err == 0 && (uint64_t)st.st_size > up->size)
        up->err = -EINVAL;
    if (up->err == 0) {
        up->offset = (uint64_t)st.st_size;
        up->err = rehash(up);
    }
    if (up->err != 0)
        snprintf(up->msg, sizeof(up->msg), "no upload %s%s", up->id,
                 up->err == -ENOENT ? "" : " (its files are unreadable)");
}

static void run_op(struct upload *up);

static void
restore_done(uv_work_t *w, int status)
{
    struct upload *up = w->data;

    (void)status;
    up->busy = false;
    if (up->err != 0) {
        if (up->req != NULL) {
            http_detach(up->req);
            http_respond_error(up->req, 404, "not_found", "%s", up->msg);
        }
        drop(up);
        return;
    }
    up->found = true;
    log_info("upload %s: %s resumed after a restart at %" PRIu64 " of %" PRIu64 " bytes", up->id,
             up->name, up->offset, up->size);
    run_op(up);
}

/* The Upload-Offset header as a number; false when absent or malformed. */
static bool
header_offset(struct http_request *req, uint64_t *out)
{
    size_t n = 0;
    const char *h = http_header_get(req, "upload-offset", &n);
    char v[24], *end;

    if (h == NULL || n == 0 || n >= sizeof(v))
        return false;
    memcpy(v, h, n);
    v[n] = '\0';
    *out = strtoull(v, &end, 10);
    return *end == '\0' && v[0] >= '0' && v[0] <= '9';
}

/* A chunk that follows the one being written, come on another connection: held (its body
 * taken) until that one is written, so a client with two connections keeps the disk busy while
 * it sends. One at a time; true when taken. */
static bool
queue_next(struct upload *up, struct http_request *req)
{
    uint64_t off;

    if (up->next_req != NULL || up->next_chunk.len > 0 || up->pending == 0 ||
        !header_offset(req, &off) || off != up->offset + up->chunk_len || off >= up->size)
        return false;
    up->next_req = req;
    up->next_chunk = req->body;
    buf_init(&req->body, req->body.max);
    http_attach(req, &up_handler, up);
    return true;
}

/* The held chunk becomes the current one (its client may have left: then it goes). */
static void
run_next(struct upload *up)
{
    struct buf t = up->chunk;

    if (up->next_req == NULL) {
        buf_reset(&up->next_chunk);
        return;
    }
    up->chunk = up->next_chunk;
    up->next_chunk = t;
    buf_reset(&up->next_chunk);
    up->req = up->next_req;
    up->next_req = NULL;
    up->op = OP_CHUNK;
    run_op(up);
}

/* The upload the path names: in memory, or restored from disk (then op runs after). */
static struct upload *
lookup(struct admin_uploads *u, struct http_request *req, enum op op)
{
    const char *id = req->path + strlen(PREFIX);
    struct upload *up = find(u, id);

    if (up != NULL && up->busy && op == OP_CHUNK && queue_next(up, req))
        return NULL;
    if (up != NULL && up->busy) {
        http_respond_error(req, 409, "conflict",
                           "upload %s is busy with another request; ask again when it answered",
                           id);
        return NULL;
    }
    if (up != NULL || !id_ok(id) || u->n >= ADMIN_UPLOADS_MAX) {
        if (up == NULL)
            http_respond_error(req, 404, "not_found", "no upload %s", id);
        return up;
    }
    up = upload_new(u);
    memcpy(up->id, id, ID_LEN + 1);
    up->md = EVP_MD_CTX_new();
    up->roots = admin_files_roots(u->env->models_dir);
    up->busy = true;
    up->req = req;
    up->op = op;
    if (op == OP_CHUNK) { /* kept while the file is rehashed */
        up->chunk = req->body;
        buf_init(&req->body, req->body.max);
    }
    DLIST_PUSH(u->first, up);
    u->n++;
    http_attach(req, &up_handler, up);
    uv_queue_work(u->env->loop, &up->w_job, restore_run, restore_done);
    return NULL;
}

/* ---- chunks: written and hashed at once on the pool ---- */

static void
write_run(uv_work_t *w)
{
    struct upload *up = w->data;

    up->err = write_all(up->fd, up->chunk.data, up->chunk.len, up->offset);
}

static void
hash_run(uv_work_t *w)
{
    struct upload *up = w->data;

    EVP_DigestUpdate(up->md, up->chunk.data, up->chunk.len);
}

/* The last chunk is in: the digest, the header, then the rename into place. */
static void
finish_run(uv_work_t *w)
{
    struct upload *up = w->data;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    struct gguf_info info = {0};
    char err[256], *final = xasprintf("%s/%s", up->dir, up->name);

    EVP_DigestFinal_ex(up->md, d, &n);
    hex(d, n, up->sha);
    if (up->expect[0] && strcmp(up->expect, up->sha) != 0) {
        up->err = -EINVAL;
        snprintf(up->msg, sizeof(up->msg),
                 "sha256 mismatch: the file's is %s, %s was announced; the upload is removed",
                 up->sha, up->expect);
    } else if (gguf_read_file(up->part, 16u << 20, &info, err, sizeof(err)) < 0) {
        up->err = -EINVAL;
        snprintf(up->msg, sizeof(up->msg), "not a GGUF model: %s; the upload is removed", err);
    } else if (renameat2(AT_FDCWD, up->part, AT_FDCWD, final, RENAME_NOREPLACE) != 0) {
        up->err = -errno;
        snprintf(up->msg, sizeof(up->msg), "cannot rename into %s: %s; the upload is removed",
                 final, strerror(errno));
    }
    gguf_info_cleanup(&info);
    if (up->err != 0)
        unlink(up->part);
    unlink(up->meta);
    free(final);
}

static void
finish_done(uv_work_t *w, int status)
{
    struct upload *up = w->data;
    struct http_request *req = up->req;
    const struct admin_files_env *e = up->owner->env;
    int code = up->err ? err_status(up->err) : 200;

    (void)status;
    if (req != NULL) {
        http_detach(req);
        audit_record(req, "upload.complete", up->name, code);
    }
    if (up->err != 0) {
        log_warnx("upload %s: %s: %s", up->id, up->name, up->msg);
        if (req != NULL)
            http_respond_error(req, code, "invalid_request_error", "%s", up->msg);
    } else {
        log_info("upload %s: %s complete, sha256 %s", up->id, up->name, up->sha);
        if (req != NULL)
            respond_state(
                req, up, 200,
                json_pack("{s:s, s:s, s:b}", "sha256", up->sha, "state", "done", "done", 1));
    }
    if (up->err == 0)
        e->reload(e->reload_arg, "a model file was uploaded");
    drop(up);
}

static void
chunk_done(uv_work_t *w, int status)
{
    struct upload *up = w->data;
    struct http_request *req = up->req;

    (void)status;
    if (--up->pending > 0)
        return;
    buf_reset(&up->chunk);
    if (up->err != 0) { /* the digest is past the file now: forget, restore from disk */
        log_warnx("upload %s: write at %" PRIu64 ": %s", up->id, up->offset, strerror(-up->err));
        if (req != NULL) {
            http_detach(req);
            http_respond_error(req, err_status(up->err), "server_error",
                               "cannot write the chunk: %s; ask GET " PREFIX "%s for the offset",
                               strerror(-up->err), up->id);
        }
        if (up->next_req != NULL) {
            http_detach(up->next_req);
            http_respond_error(up->next_req, 409, "conflict",
                               "the chunk before this one could not be written; ask GET " PREFIX
                               "%s for the offset",
                               up->id);
        }
        drop(up);
        return;
    }
    up->offset += up->chunk_len;
    if (up->offset == up->size) {
        uv_queue_work(up->owner->env->loop, &up->w_job, finish_run, finish_done);
        return;
    }
    up->busy = false;
    up->req = NULL;
    if (req != NULL) {
        http_detach(req);
        respond_state(req, up, 200, NULL);
    }
    run_next(up);
}

static bool
chunk_check(struct upload *up, struct http_request *req)
{
    uint64_t off;

    if (!header_offset(req, &off)) {
        http_respond_error(req, 400, "invalid_request_error",
                           "send the chunk's place in Upload-Offset (GET " PREFIX "%s tells it)",
                           up->id);
        return false;
    }
    if (off != up->offset) {
        respond_state(req, up, 409,
                      json_pack("{s:s}", "error", "Upload-Offset is not the upload's offset"));
        return false;
    }
    if (up->chunk.len > up->size - up->offset) {
        http_respond_error(req, 413, "invalid_request_error",
                           "the chunk goes past the announced size (%" PRIu64 " bytes)", up->size);
        return false;
    }
    return true;
}

/* Runs the operation a request asked of an idle upload (the chunk is in up->chunk). */
static void
run_op(struct upload *up)
{
    struct http_request *req = up->req;
    enum op op = up->op;

    up->op = OP_NONE;
    up->req = NULL;
    if (req == NULL) {
        buf_reset(&up->chunk);
        return;
    }
    http_detach(req);
    if (op == OP_STATUS) {
        respond_state(req, up, 200, NULL);
    } else if (op == OP_CANCEL) {
        unlink_files(up);
        audit_record(req, "upload.cancel", up->name, 200);
        http_respond_json(req, 200, json_pack("{s:s, s:s}", "id", up->id, "state", "cancelled"));
        drop(up);
    } else if (!chunk_check(up, req)) {
        buf_reset(&up->chunk);
    } else if (up->chunk.len == 0) {
        respond_state(req, up, 200, NULL);
    } else {
        up->busy = true;
        up->req = req;
        up->chunk_len = up->chunk.len;
        up->pending = 2;
        up->err = 0;
        http_attach(req, &up_handler, up);
        uv_queue_work(up->owner->env->loop, &up->w_write, write_run, chunk_done);
        uv_queue_work(up->owner->env->loop, &up->w_hash, hash_run, chunk_done);
    }
}

static void
request_op(struct admin_uploads *u, struct http_request *req, enum op op)
{
    struct upload *up = lookup(u, req, op);

    if (up == NULL)
        return; /* answered, or restoring: run_op follows */
    up->op = op;
    up->req = req;
    if (op == OP_CHUNK) {
        buf_cleanup(&up->chunk);
        up->chunk = req->body; /* taken: the client may leave while it is written */
        buf_init(&req->body, req->body.max);
    }
    run_op(up);
}

void
admin_uploads_chunk(struct admin_uploads *u, struct http_request *req)
{
    request_op(u, req, OP_CHUNK);
}

void
admin_uploads_status(struct admin_uploads *u, struct http_request *req)
{
    request_op(u, req, OP_STATUS);
}

void
admin_uploads_cancel(struct admin_uploads *u, struct http_request *req)
{
    request_op(u, req, OP_CANCEL);
}
