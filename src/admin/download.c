/* Background downloads: see download.h. One fetch at a time per download; its bytes are
 * written by uv_fs_write on the thread pool, the fetch paused while more than WRITE_HIGH bytes
 * wait; the checks (sha256, GGUF header) and renames run in one job on the pool at the end. */
#include "admin/download.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "admin/audit.h"
#include "core/list.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/client.h"
#include "http/errors.h"
#include "models/gguf.h"

#define PREFIX        "/api/downloads/"
#define WRITE_HIGH    (8u << 20)
#define TREE_MAX      (8u << 20)
#define MAX_REDIRECTS 5
#define MAX_RETRIES   5
#define HASH_BLOCK    (8u << 20)
#define HF_BASE       "https://huggingface.co"

enum dl_state { DL_RESOLVING, DL_DOWNLOADING, DL_VERIFYING, DL_DONE, DL_FAILED, DL_CANCELLED };

static const char *const state_names[] = {"resolving", "downloading", "verifying",
                                          "done",      "failed",      "cancelled"};

struct dl_file {
    char *name; /* in the models folder */
    char *url;  /* where it comes from (before redirects) */
    char *part; /* the hidden file it is written to */
    char sha[65];
    uint64_t size; /* 0: unknown until the response says */
    uint64_t have; /* bytes in part */
};

struct download {
    struct download *prev, *next;
    struct admin_downloads *owner;
    char id[17];
    enum dl_state state;
    char *source;
    char *dir;
    char **hosts;
    struct dl_file *files;
    size_t n_files, cur;
    /* the fetch running now */
    struct http_fetch *fetch;
    char *url; /* after redirects */
    char range[48];
    long status;
    char *location;
    bool resolving;  /* the tree, not a file */
    struct buf tree; /* the tree's JSON */
    int fd;
    uint64_t write_at;
    struct buf wbuf, inflight;
    uv_fs_t wreq;
    bool writing, paused, fetch_done;
    int fetch_err;
    int redirects, retries;
    uv_timer_t timer;
    bool timer_open;
    uint64_t bytes_done; /* files before cur */
    uint64_t t0, rate_t, rate_bytes;
    double rate;
    uv_work_t work;
    char error[512];
};

struct admin_downloads {
    const struct admin_files_env *env;
    struct http_client *client;
    struct download *first;
    size_t n;
    bool stopping;
};

static void fetch_next(struct download *d);
static void file_done(struct download *d);

struct admin_downloads *
admin_downloads_new(const struct admin_files_env *env)
{
    struct admin_downloads *a = xcalloc(1, sizeof(*a));

    a->env = env;
    return a;
}

static void
dl_free(struct download *d)
{
    for (size_t i = 0; i < d->n_files; i++) {
        free(d->files[i].name);
        free(d->files[i].url);
        free(d->files[i].part);
    }
    free(d->files);
    strv_free(d->hosts);
    free(d->source);
    free(d->dir);
    free(d->url);
    free(d->location);
    buf_cleanup(&d->tree);
    buf_cleanup(&d->wbuf);
    buf_cleanup(&d->inflight);
    if (d->fd >= 0)
        close(d->fd);
    free(d);
}

static void
timer_closed(uv_handle_t *h)
{
    dl_free(h->data);
}

/* Takes d out of the list and frees it once its timer closed (no fetch, write or job runs). */
static void
dl_drop(struct download *d)
{
    DLIST_UNLINK(d->owner->first, d);
    d->owner->n--;
    if (d->timer_open)
        uv_close((uv_handle_t *)&d->timer, timer_closed);
    else
        dl_free(d);
}

static bool
dl_busy(const struct download *d)
{
    return d->fetch != NULL || d->writing || d->state == DL_VERIFYING;
}

void
admin_downloads_shutdown(struct admin_downloads *a)
{
    if (a == NULL)
        return;
    a->stopping = true;
    for (struct download *d = a->first; d != NULL; d = d->next) {
        if (d->fetch != NULL) {
            struct http_fetch *f = d->fetch;

            d->fetch = NULL;
            http_fetch_cancel(f);
        }
        if (d->timer_open) {
            uv_timer_stop(&d->timer);
            uv_close((uv_handle_t *)&d->timer, NULL);
            d->timer_open = false;
        }
    }
    if (a->client != NULL)
        http_client_release(a->client);
    a->client = NULL;
}

void
admin_downloads_free(struct admin_downloads *a)
{
    struct download *d, *next;

    if (a == NULL)
        return;
    for (d = a->first; d != NULL; d = next) {
        next = d->next;
        dl_free(d);
    }
    if (a->client != NULL)
        http_client_release(a->client);
    free(a);
}

/* ---- state ---- */

static json_t *
dl_json(const struct download *d)
{
    json_t *files = json_array();
    uint64_t bytes = 0, total = 0;
    bool known = true;

    for (size_t i = 0; i < d->n_files; i++) {
        const struct dl_file *f = &d->files[i];

        json_array_append_new(files, json_pack("{s:s, s:I, s:I, s:s?}", "name", f->name, "bytes",
                                               (json_int_t)f->have, "total", (json_int_t)f->size,
                                               "sha256", f->sha[0] ? f->sha : NULL));
        bytes += f->have;
        total += f->size;
        known &= f->size > 0;
    }
    return json_pack("{s:s, s:s, s:s, s:I, s:o, s:f, s:o, s:s?, s:s}", "id", d->id, "source",
                     d->source, "state", state_names[d->state], "bytes", (json_int_t)bytes, "total",
                     known && d->n_files ? json_integer((json_int_t)total) : json_null(), "rate",
                     d->rate, "files", files, "error", d->error[0] ? d->error : NULL, "folder",
                     d->dir);
}

json_t *
admin_downloads_json(const struct admin_downloads *a)
{
    json_t *v = json_array();

    for (const struct download *d = a ? a->first : NULL; d != NULL; d = d->next)
        json_array_append_new(v, dl_json(d));
    return v;
}

static void dl_fail(struct download *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Ends d as failed with the message; its partial files go. */
static void
dl_fail(struct download *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(d->error, sizeof(d->error), fmt, ap);
    va_end(ap);
    d->state = DL_FAILED;
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    for (size_t i = 0; i < d->n_files; i++)
        if (d->files[i].part != NULL)
            unlink(d->files[i].part);
    log_warnx("download %s (%s): %s", d->id, d->source, d->error);
}

/* Cancelled: the partial files go, the state says so. */
static void
dl_cancelled(struct download *d)
{
    dl_fail(d, "cancelled");
    d->state = DL_CANCELLED;
}

static char **
hosts_copy(char *const *v)
{
    char **out = NULL;

    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        strv_add(&out, v[i], strlen(v[i]));
    return out;
}

/* ---- hosts ---- */

/* Whether url's host is one of hosts ("name", "name:port", "*.suffix"); fills why when not. */
static bool
host_allowed(char *const *hosts, const char *url, char *why, size_t whylen)
{
    char host[256], hp[300];
    int port;
    const char *path;

    if (strncmp(url, "https://", 8) == 0) {
        snprintf(why, whylen,
                 "%s: Goinfer's HTTP client speaks plain http:// only (no TLS yet), so https:// "
                 "downloads are not possible; use an http:// mirror (GI_HF_BASE for the hub)",
                 url);
        return false;
    }
    if (http_url_split(url, host, sizeof(host), &port, &path) < 0) {
        snprintf(why, whylen, "%s is not an http://host[:port]/path URL", url);
        return false;
    }
    snprintf(hp, sizeof(hp), "%s:%d", host, port);
    for (size_t i = 0; hosts && hosts[i]; i++) {
        const char *h = hosts[i];
        size_t hl = strlen(h), nl = strlen(host);

        if (strcasecmp(h, host) == 0 || strcasecmp(h, hp) == 0)
            return true;
        if (h[0] == '*' && h[1] == '.' && nl > hl - 1 &&
            strcasecmp(host + nl - (hl - 1), h + 1) == 0)
            return true;
    }
    snprintf(why, whylen, "host %s is not in admin.download_hosts", host);
    return false;
}

/* ---- writing ---- */

static void write_some(struct download *d);

static void
wrote(uv_fs_t *req)
{
    struct download *d = req->data;
    ssize_t n = req->result;

    uv_fs_req_cleanup(req);
    d->writing = false;
    if (n < 0 || (size_t)n != d->inflight.len) {
        d->fetch_err = -1;
        snprintf(d->error, sizeof(d->error), "cannot write %s: %s", d->files[d->cur].part,
                 n < 0 ? uv_strerror((int)n) : "short write");
        if (d->fetch != NULL) {
            struct http_fetch *f = d->fetch;

            d->fetch = NULL;
            http_fetch_cancel(f);
        }
        d->fetch_done = true;
    }
    buf_reset(&d->inflight);
    if (d->state == DL_CANCELLED || d->owner->stopping) {
        if (!dl_busy(d) && d->state == DL_CANCELLED)
            dl_cancelled(d);
        return;
    }
    if (d->wbuf.len > 0 && d->fetch_err >= 0) {
        write_some(d);
    } else if (d->fetch_done) {
        file_done(d);
        return;
    }
    if (d->paused && d->wbuf.len < WRITE_HIGH && d->fetch != NULL) {
        d->paused = false;
        http_fetch_resume(d->fetch);
    }
}

/* Hands what wbuf holds to the thread pool. */
static void
write_some(struct download *d)
{
    uv_buf_t b;
    struct buf t = d->inflight;

    d->inflight = d->wbuf;
    d->wbuf = t;
    buf_reset(&d->wbuf);
    b = uv_buf_init(d->inflight.data, (unsigned)d->inflight.len);
    d->wreq.data = d;
    d->writing = true;
    uv_fs_write(d->owner->env->loop, &d->wreq, d->fd, &b, 1, (int64_t)d->write_at, wrote);
    d->write_at += d->inflight.len;
}

/* ---- one fetch ---- */

static const char *
header(const struct http_header *h, size_t n, const char *name, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len == strlen(name) && strncasecmp(h[i].name, name, h[i].name_len) == 0) {
            *len = h[i].value_len;
            return h[i].value;
        }
    }
    return NULL;
}

static void
on_response(void *arg, long status, const struct http_header *h, size_t n)
{
    struct download *d = arg;
    size_t len = 0;
    const char *v;

    d->status = status;
    free(d->location);
    d->location = NULL;
    if ((v = header(h, n, "location", &len)) != NULL)
        d->location = xstrndup(v, len);
    if (d->resolving || d->n_files == 0)
        return;
    if (status == 200 || status == 206) {
        struct dl_file *f = &d->files[d->cur];

        if (status == 200 && f->have > 0) { /* no Range support: start over */
            f->have = 0;
            if (ftruncate(d->fd, 0) != 0)
                log_warn("download %s: truncate", d->id);
        }
        d->write_at = f->have;
        if (status == 200 && (v = header(h, n, "content-length", &len)) != NULL && len < 24) {
            char num[24];

            memcpy(num, v, len);
            num[len] = '\0';
            f->size = strtoull(num, NULL, 10);
        }
        if (status == 206 && (v = header(h, n, "content-range", &len)) != NULL) {
            const char *slash = memchr(v, '/', len);

            if (slash != NULL && slash[1] != '*')
                f->size = strtoull(slash + 1, NULL, 10);
        }
    }
}

static int
on_body(void *arg, const char *data, size_t len)
{
    struct download *d = arg;
    struct dl_file *f;
    uint64_t max = d->owner->env->admin->upload_max_bytes;

    if (d->resolving)
        return buf_append(&d->tree, data, len) < 0 ? -1 : 0;
    if (d->status != 200 && d->status != 206)
        return 0; /* a redirect's or an error's body */
    f = &d->files[d->cur];
    if (f->have + len > max || (f->size > 0 && f->have + len > f->size)) {
        snprintf(d->error, sizeof(d->error), "%s is larger than %s", f->name,
                 f->have + len > max ? "admin.upload_max_bytes" : "announced");
        return -1;
    }
    buf_append(&d->wbuf, data, len);
    f->have += len;
    if (!d->writing)
        write_some(d);
    if (d->wbuf.len >= WRITE_HIGH) {
        d->paused = true;
        return HTTP_FETCH_PAUSE;
    }
    return 0;
}

static void
retry_cb(uv_timer_t *t)
{
    fetch_next(t->data);
}

/* A failed transfer: again from where it stopped, after a pause, a few times. */
static void
retry(struct download *d, const char *why)
{
    if (++d->retries > MAX_RETRIES) {
        dl_fail(d, "%s (gave up after %d retries)", why, MAX_RETRIES);
        return;
    }
    log_info("download %s: %s; retrying in %d ms from byte %" PRIu64, d->id, why, 200 * d->retries,
             d->n_files ? d->files[d->cur].have : 0);
    if (!d->timer_open) {
        uv_timer_init(d->owner->env->loop, &d->timer);
        d->timer.data = d;
        d->timer_open = true;
    }
    uv_timer_start(&d->timer, retry_cb, (uint64_t)(200 * d->retries), 0);
}

/* Location against the URL it answered (absolute, or a path on the same origin). */
static char *
resolve_location(const char *base, const char *loc)
{
    const char *p;

    if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0)
        return xstrdup(loc);
    if (loc[0] != '/')
        return NULL;
    p = strstr(base, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    return p ? xasprintf("%.*s%s", (int)(p - base), base, loc) : xasprintf("%s%s", base, loc);
}

static void resolved(struct download *d);

/* Decides what follows a redirect; true when it was one. */
static bool
follow(struct download *d)
{
    char why[512], *next;

    if (d->status < 300 || d->status > 308 || d->status == 304 || d->location == NULL)
        return false;
    next = resolve_location(d->url, d->location);
    if (next == NULL || ++d->redirects > MAX_REDIRECTS) {
        dl_fail(d, "bad or too many redirects (at %s)", d->url);
    } else if (!host_allowed(d->hosts, next, why, sizeof(why))) {
        dl_fail(d, "redirected to %s: %s", next, why);
    } else {
        free(d->url);
        d->url = next;
        next = NULL;
        fetch_next(d);
    }
    free(next);
    return true;
}

static void
on_done(void *arg, int err, const char *msg)
{
    struct download *d = arg;

    d->fetch = NULL;
    if (d->state == DL_CANCELLED || d->owner->stopping) {
        if (!d->writing && d->state == DL_CANCELLED)
            dl_cancelled(d);
        return;
    }
    if (d->error[0] && err == HTTP_FETCH_EABORTED) { /* on_body's refusal */
        char e[sizeof(d->error)];

        memcpy(e, d->error, sizeof(e));
        dl_fail(d, "%s", e);
        return;
    }
    if (err == HTTP_FETCH_OK && follow(d))
        return;
    if (err != HTTP_FETCH_OK || d->status >= 500) {
        char why[600];

        snprintf(why, sizeof(why), "%s: %s", d->url,
                 err != HTTP_FETCH_OK ? msg : "the server answered an error");
        if (!d->resolving && d->fd >= 0 && d->writing) { /* write what came, then retry */
            d->fetch_err = 1;
            d->fetch_done = true;
            return;
        }
        retry(d, why);
        return;
    }
    if (d->resolving) {
        d->resolving = false;
        if (d->status != 200)
            dl_fail(d, "%s answered %ld", d->url, d->status);
        else
            resolved(d);
        return;
    }
    if (d->status == 416 && d->files[d->cur].have > 0 &&
        d->files[d->cur].have == d->files[d->cur].size) {
        d->fetch_done = true;
    } else if (d->status != 200 && d->status != 206) {
        dl_fail(d, "%s answered %ld", d->url, d->status);
        return;
    }
    d->fetch_done = true;
    if (!d->writing)
        file_done(d);
}

static const struct http_fetch_cb fetch_cb = {on_response, on_body, on_done};

/* Starts (or restarts) the fetch of d->url: the tree, or the current file from its offset. */
static void
fetch_next(struct download *d)
{
    struct http_fetch_opts o = {0};
    struct http_header h[1];
    struct dl_file *f = d->resolving ? NULL : &d->files[d->cur];

    if (d->owner->stopping || d->state == DL_CANCELLED)
        return;
    if (d->owner->client == NULL)
        d->owner->client = http_client_new(d->owner->env->loop);
    d->status = 0;
    d->fetch_done = false;
    d->fetch_err = 0;
    o.url = d->url;
    o.idle_s = 30;
    o.connect_timeout_ms = 10000;
    if (f != NULL && f->have > 0) {
        int n = snprintf(d->range, sizeof(d->range), "bytes=%" PRIu64 "-", f->have);

        h[0] = (struct http_header){"Range", 5, d->range, (size_t)n};
        o.headers = h;
        o.n_headers = 1;
    }
    if (d->resolving)
        buf_reset(&d->tree);
    d->fetch = http_fetch_start(d->owner->client, &o, &fetch_cb, d);
}

/* Opens the current file's part (appending to what an earlier try left) and fetches it. */
static void
file_start(struct download *d)
{
    struct dl_file *f = &d->files[d->cur];
    struct stat st;

    d->fd = open(f->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (d->fd < 0) {
        dl_fail(d, "cannot create %s: %s", f->part, strerror(errno));
        return;
    }
    f->have = fstat(d->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    free(d->url);
    d->url = xstrdup(f->url);
    d->redirects = 0;
    d->retries = 0;
    fetch_next(d);
}

/* ---- verify and rename, on the pool ---- */

static int
sha_file(const char *path, char out[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char *b = xmalloc(HASH_BLOCK);
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    ssize_t r;

    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (fd >= 0 && ((r = read(fd, b, HASH_BLOCK)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0)
            EVP_DigestUpdate(md, b, (size_t)r);
    if (fd < 0 || r < 0)
        rc = -errno;
    EVP_DigestFinal_ex(md, dg, &n);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", dg[i]);
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(md);
    free(b);
    return rc;
}

static void
verify_run(uv_work_t *w)
{
    struct download *d = w->data;
    char got[65] = "", err[256];

    for (size_t i = 0; i < d->n_files && !d->error[0]; i++) {
        struct dl_file *f = &d->files[i];
        struct gguf_info info = {0};

        if (sha_file(f->part, got) < 0)
            snprintf(d->error, sizeof(d->error), "cannot read %s", f->part);
        else if (f->sha[0] && strcmp(got, f->sha) != 0)
            snprintf(d->error, sizeof(d->error),
                     "sha256 mismatch for %s: expected %s, got %s; the file is removed", f->name,
                     f->sha, got);
        else if (gguf_read_file(f->part, 16u << 20, &info, err, sizeof(err)) < 0)
            snprintf(d->error, sizeof(d->error), "%s is not a GGUF model: %s", f->name, err);
        if (!f->sha[0])
            memcpy(f->sha, got, sizeof(f->sha));
        gguf_info_cleanup(&info);
    }
    for (size_t i = 0; i < d->n_files && !d->error[0]; i++) {
        char *final = xasprintf("%s/%s", d->dir, d->files[i].name);

        if (renameat2(AT_FDCWD, d->files[i].part, AT_FDCWD, final, RENAME_NOREPLACE) != 0)
            snprintf(d->error, sizeof(d->error), "cannot rename into %s: %s", final,
                     strerror(errno));
        free(final);
    }
    for (size_t i = 0; i < d->n_files && d->error[0]; i++)
        unlink(d->files[i].part);
}

static void
verify_done(uv_work_t *w, int status)
{
    struct download *d = w->data;
    const struct admin_files_env *e = d->owner->env;

    (void)status;
    if (d->error[0]) {
        char msg[sizeof(d->error)];

        memcpy(msg, d->error, sizeof(msg));
        dl_fail(d, "%s", msg);
        return;
    }
    d->state = DL_DONE;
    log_info("download %s (%s): done, %zu files", d->id, d->source, d->n_files);
    if (!d->owner->stopping)
        e->reload(e->reload_arg, "a model file was downloaded");
}

/* The current file came whole (or the transfer stopped: then again from its offset). */
static void
file_done(struct download *d)
{
    struct dl_file *f = &d->files[d->cur];

    if (d->fetch_err != 0) {
        if (d->fetch_err < 0) {
            char msg[sizeof(d->error)];

            memcpy(msg, d->error, sizeof(msg));
            dl_fail(d, "%s", msg);
        } else {
            retry(d, "the transfer stopped");
        }
        return;
    }
    if (f->size > 0 && f->have != f->size) {
        retry(d, "the transfer ended short");
        return;
    }
    close(d->fd);
    d->fd = -1;
    d->bytes_done += f->have;
    if (++d->cur < d->n_files) {
        file_start(d);
        return;
    }
    d->state = DL_VERIFYING;
    d->work.data = d;
    uv_queue_work(d->owner->env->loop, &d->work, verify_run, verify_done);
}

/* ---- what to fetch ---- */

static bool
add_file(struct download *d, const char *name, const char *url, const char *sha, uint64_t size)
{
    char err[256];
    struct dl_file *f;
    struct stat st;
    char *final;

    if (admin_file_name_check(name, strlen(name), err, sizeof(err)) < 0) {
        dl_fail(d, "%s: %s", name, err);
        return false;
    }
    final = xasprintf("%s/%s", d->dir, name);
    if (lstat(final, &st) == 0) {
        dl_fail(d, "%s is already in %s: delete it first", name, d->dir);
        free(final);
        return false;
    }
    free(final);
    d->files = xrealloc(d->files, (d->n_files + 1) * sizeof(*d->files));
    f = &d->files[d->n_files++];
    memset(f, 0, sizeof(*f));
    f->name = xstrdup(name);
    f->url = xstrdup(url);
    f->part = xasprintf("%s/.goinfer-dl-%s-%s", d->dir, d->id, name);
    f->size = size;
    if (sha != NULL && strlen(sha) == 64)
        for (int i = 0; i < 64; i++)
            f->sha[i] = (char)tolower((unsigned char)sha[i]);
    return true;
}

/* Free space for what is known of the sizes, and the size limit; then the first file. */
static void
begin(struct download *d)
{
    struct statvfs vfs;
    uint64_t total = 0, max = d->owner->env->admin->upload_max_bytes;

    for (size_t i = 0; i < d->n_files; i++) {
        if (d->files[i].size > max) {
            dl_fail(d, "%s (%" PRIu64 " bytes) is more than admin.upload_max_bytes (%" PRIu64 ")",
                    d->files[i].name, d->files[i].size, max);
            return;
        }
        total += d->files[i].size;
    }
    if (statvfs(d->dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < total) {
        dl_fail(d, "not enough free space in %s: %" PRIu64 " bytes free, %" PRIu64 " needed",
                d->dir, (uint64_t)vfs.f_bavail * vfs.f_frsize, total);
        return;
    }
    d->state = DL_DOWNLOADING;
    d->cur = 0;
    file_start(d);
}

/* The hub's tree: the .gguf files whose names hold the quant (a split model's parts all). */
static void
resolved(struct download *d)
{
    json_error_t jerr;
    json_t *tree = json_loadb(d->tree.data, d->tree.len, 0, &jerr), *e;
    const char *colon = strrchr(d->source, ':'), *base = getenv("GI_HF_BASE");
    char *repo = xstrndup(d->source, (size_t)(colon - d->source)), *names = NULL;
    size_t i;

    json_array_foreach (tree, i, e) {
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *type = json_string_value(json_object_get(e, "type"));
        json_t *lfs = json_object_get(e, "lfs");
        const char *bn = path && strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        json_int_t size = json_integer_value(json_object_get(lfs ? lfs : e, "size"));
        char *url;

        if (path == NULL || (type && strcmp(type, "file") != 0) || strlen(bn) < 5 ||
            strcmp(bn + strlen(bn) - 5, ".gguf") != 0 || strcasestr(bn, "mmproj") != NULL)
            continue;
        if (strcasestr(bn, colon + 1) == NULL) {
            char *t = xasprintf("%s%s%s", names ? names : "", names ? ", " : "", bn);

            free(names);
            names = t;
            continue;
        }
        url = xasprintf("%s/%s/resolve/main/%s", base && *base ? base : HF_BASE, repo, path);
        if (!add_file(d, bn, url, json_string_value(json_object_get(lfs, "oid")),
                      (uint64_t)(size > 0 ? size : 0))) {
            free(url);
            goto out;
        }
        free(url);
    }
    if (!json_is_array(tree))
        dl_fail(d, "the hub's tree for %s is not a JSON array", repo);
    else if (d->n_files == 0)
        dl_fail(d, "no .gguf file of %s matches %s (its files: %s)", repo, colon + 1,
                names ? names : "none");
    else
        begin(d);
out:
    free(names);
    free(repo);
    json_decref(tree);
}

static bool
hf_ref_ok(const char *s)
{
    const char *slash = strchr(s, '/'), *colon = strrchr(s, ':');

    if (slash == NULL || colon == NULL || colon < slash || slash == s || colon == slash + 1 ||
        colon[1] == '\0' || strchr(slash + 1, '/') != NULL)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && strchr("-_./:", *p) == NULL)
            return false;
    return strstr(s, "..") == NULL;
}

/* ---- handlers ---- */

/* Reads the body into d (source, the first fetch); answers 4xx and returns false when wrong. */
static bool
start_args(struct admin_downloads *a, struct http_request *req, struct download *d)
{
    json_error_t jerr;
    json_t *o = json_loadb(req->body.data, req->body.len, 0, &jerr);
    const char *url = json_string_value(json_object_get(o, "url"));
    const char *hf = json_string_value(json_object_get(o, "hf"));
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    const char *base = getenv("GI_HF_BASE");
    char why[512];
    bool ok = false;

    (void)a;
    if ((url == NULL) == (hf == NULL)) {
        admin_refuse(req, "download.start", NULL, 400, "invalid_request_error",
                     "send {\"url\":\"http://...\"} or {\"hf\":\"org/repo:quant\"}");
    } else if (hf != NULL && !hf_ref_ok(hf)) {
        admin_refuse(req, "download.start", NULL, 400, "invalid_request_error",
                     "a Hugging Face reference reads org/repo:quant (e.g. "
                     "unsloth/Qwen3-0.6B-GGUF:Q4_K_M)");
    } else {
        char *first =
            hf ? xasprintf("%s/api/models/%.*s/tree/main?recursive=true",
                           base && *base ? base : HF_BASE, (int)(strrchr(hf, ':') - hf), hf)
               : xstrdup(url);

        d->source = xstrdup(hf ? hf : url);
        if (!host_allowed(d->hosts, first, why, sizeof(why))) {
            admin_refuse(req, "download.start", NULL, strncmp(first, "https:", 6) ? 403 : 501,
                         "invalid_request_error", "%s", why);
        } else {
            const char *path = strstr(first, "://") + 3, *q;
            char *name;

            path += strcspn(path, "/");
            q = path + strcspn(path, "?#");
            while (q > path && q[-1] != '/')
                q--;
            name = xstrndup(q, strcspn(q, "?#"));
            d->url = xstrdup(first);
            d->resolving = hf != NULL;
            ok = hf != NULL || add_file(d, name, url, sha, 0);
            if (!ok)
                admin_refuse(req, "download.start", NULL, 400, "invalid_request_error", "%s",
                             d->error);
            free(name);
        }
        free(first);
    }
    json_decref(o);
    return ok;
}

void
admin_downloads_start(struct admin_downloads *a, struct http_request *req)
{
    struct download *d = xcalloc(1, sizeof(*d));
    unsigned char rnd[8];
    char dir[4096];

    d->owner = a;
    d->fd = -1;
    buf_init(&d->tree, TREE_MAX);
    buf_init(&d->wbuf, SIZE_MAX);
    buf_init(&d->inflight, SIZE_MAX);
    d->hosts = hosts_copy(a->env->admin->download_hosts);
    if (admin_files_target(a->env, dir, sizeof(dir)) < 0 || RAND_bytes(rnd, 8) != 1) {
        admin_refuse(req, "download.start", NULL, 500, "server_error",
                     "no models folder to download into");
        dl_free(d);
        return;
    }
    for (int i = 0; i < 8; i++)
        snprintf(d->id + 2 * i, 3, "%02x", rnd[i]);
    d->dir = xstrdup(dir);
    if (a->n >= ADMIN_DOWNLOADS_MAX) { /* forget the oldest finished one */
        struct download *old = NULL;

        for (struct download *x = a->first; x != NULL; x = x->next)
            if (x->state >= DL_DONE && !dl_busy(x))
                old = x;
        if (old != NULL)
            dl_drop(old);
    }
    if (a->n >= ADMIN_DOWNLOADS_MAX) {
        admin_refuse(req, "download.start", NULL, 429, "server_error",
                     "%d downloads are running already", ADMIN_DOWNLOADS_MAX);
        dl_free(d);
        return;
    }
    if (!start_args(a, req, d)) {
        dl_free(d);
        return;
    }
    DLIST_PUSH(a->first, d);
    a->n++;
    d->state = DL_RESOLVING;
    d->t0 = d->rate_t = uv_now(a->env->loop);
    log_info("download %s: %s into %s", d->id, d->source, d->dir);
    audit_record(req, "download.start", d->source, 202);
    http_respond_json(req, 202, dl_json(d));
    if (d->resolving)
        fetch_next(d);
    else
        begin(d);
}

static void
update_rates(struct admin_downloads *a)
{
    uint64_t now = uv_now(a->env->loop);

    for (struct download *d = a->first; d != NULL; d = d->next) {
        uint64_t bytes = 0;

        for (size_t i = 0; i < d->n_files; i++)
            bytes += d->files[i].have;
        if (d->state != DL_DOWNLOADING) {
            d->rate = 0;
        } else if (now > d->rate_t) {
            d->rate = (double)(bytes - d->rate_bytes) * 1000.0 / (double)(now - d->rate_t);
        }
        if (now >= d->rate_t + 1000 || d->state != DL_DOWNLOADING) {
            d->rate_t = now;
            d->rate_bytes = bytes;
        }
    }
}

void
admin_downloads_list(struct admin_downloads *a, struct http_request *req)
{
    update_rates(a);
    http_respond_json(req, 200, json_pack("{s:o}", "downloads", admin_downloads_json(a)));
}

void
admin_downloads_cancel(struct admin_downloads *a, struct http_request *req)
{
    const char *id = req->path + strlen(PREFIX);
    struct download *d = a->first;

    while (d != NULL && strcmp(d->id, id) != 0)
        d = d->next;
    if (d == NULL) {
        http_respond_error(req, 404, "not_found", "no download %s", id);
        return;
    }
    if (d->state < DL_DONE && d->state != DL_VERIFYING) {
        d->state = DL_CANCELLED;
        if (d->fetch != NULL) {
            struct http_fetch *f = d->fetch;

            d->fetch = NULL;
            http_fetch_cancel(f);
        }
        if (d->timer_open)
            uv_timer_stop(&d->timer);
        if (!d->writing)
            dl_cancelled(d);
    }
    audit_record(req, "download.cancel", d->source, 200);
    http_respond_json(req, 200, dl_json(d));
}
