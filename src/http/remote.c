#include "remote.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define REMOTE_HEAD_MAX (64 * 1024) /* a response head larger than this is refused */
/* Easy handles kept for the next fetches: a new one costs its buffers' allocation and libcurl's
 * defaults each time, a fifth of a cloud request's CPU when measured (bench/cloud_bench.py). */
#define REMOTE_POOL_MAX 64

/* One socket libcurl asked us to watch; freed in its close callback. */
struct remote_sock {
    struct remote_sock *prev, *next;
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_remote *r;
};

struct http_remote {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* libcurl's next timeout */
    struct http_remote_fetch *fetches;
    struct remote_sock *socks;
    CURL *pool[REMOTE_POOL_MAX]; /* idle easy handles, reset */
    size_t n_pool;
    int depth;  /* > 0 while inside a libcurl call that may run our callbacks */
    int n_open; /* libuv handles not closed yet: the timer and the socks */
    bool released, destroyed;
};

struct http_remote_fetch {
    struct http_remote_fetch *prev, *next;
    struct http_remote *r;
    CURL *easy;
    struct curl_slist *headers;
    const struct http_fetch_cb *cb;
    void *arg;
    struct buf head; /* the current response's header lines */
    int tries_left;
    bool delivered;  /* on_response ran: no retry any more */
    bool discarding; /* a 5xx that is retried: its body goes nowhere */
    bool cancelled;
    char errbuf[CURL_ERROR_SIZE];
};

static void process(struct http_remote *r);

static void
on_handle_closed(uv_handle_t *h)
{
    struct http_remote *r = h->data;

    if (h->type == UV_POLL) {
        struct remote_sock *k =
            (struct remote_sock *)((char *)h - offsetof(struct remote_sock, poll));
        r = k->r;
        free(k);
    }
    if (--r->n_open == 0)
        free(r);
}

static void
sock_close(struct remote_sock *k)
{
    uv_poll_stop(&k->poll);
    DLIST_UNLINK(k->r->socks, k);
    uv_close((uv_handle_t *)&k->poll, on_handle_closed);
}

static void
on_poll(uv_poll_t *h, int status, int events)
{
    struct remote_sock *k = h->data;
    struct http_remote *r = k->r;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    r->depth++;
    curl_multi_socket_action(r->multi, k->fd, flags, &running);
    r->depth--;
    process(r);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what libcurl wants, or stop. */
static int
on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_remote *r = userp;
    struct remote_sock *k = socketp;
    int events = 0;

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (k != NULL) {
            curl_multi_assign(r->multi, s, NULL);
            sock_close(k);
        }
        return 0;
    }
    if (k == NULL) {
        k = xcalloc(1, sizeof(*k));
        k->fd = s;
        k->r = r;
        if (uv_poll_init_socket(r->loop, &k->poll, s) != 0) {
            free(k);
            return -1;
        }
        k->poll.data = k;
        r->n_open++;
        DLIST_PUSH(r->socks, k);
        curl_multi_assign(r->multi, s, k);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&k->poll, events, on_poll);
    return 0;
}

static void
on_timeout(uv_timer_t *t)
{
    struct http_remote *r = t->data;
    int running;

    r->depth++;
    curl_multi_socket_action(r->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    r->depth--;
    process(r);
}

/* CURLMOPT_TIMERFUNCTION. */
static int
on_timer_set(CURLM *m, long ms, void *userp)
{
    struct http_remote *r = userp;

    (void)m;
    if (ms < 0)
        uv_timer_stop(&r->timer);
    else
        uv_timer_start(&r->timer, on_timeout, (uint64_t)ms, 0);
    return 0;
}

struct http_remote *
http_remote_new(uv_loop_t *loop)
{
    static bool global_done;
    struct http_remote *r = xcalloc(1, sizeof(*r));

    if (!global_done && curl_global_init(CURL_GLOBAL_DEFAULT) == 0)
        global_done = true;
    r->loop = loop;
    r->multi = curl_multi_init();
    if (r->multi == NULL)
        fatalx("libcurl: curl_multi_init failed");
    curl_multi_setopt(r->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(r->multi, CURLMOPT_SOCKETDATA, r);
    curl_multi_setopt(r->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(r->multi, CURLMOPT_TIMERDATA, r);
    curl_multi_setopt(r->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->n_open = 1;
    return r;
}

/* No fetch is left and the owner let go: libcurl's connections close, then the handles. */
static void
destroy(struct http_remote *r)
{
    if (r->destroyed)
        return;
    r->destroyed = true;
    while (r->n_pool > 0)
        curl_easy_cleanup(r->pool[--r->n_pool]);
    curl_multi_cleanup(r->multi);
    r->multi = NULL;
    while (r->socks != NULL)
        sock_close(r->socks);
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
}

void
http_remote_release(struct http_remote *r)
{
    if (r == NULL)
        return;
    r->released = true;
    if (r->fetches == NULL && r->depth == 0)
        destroy(r);
}

static void
fetch_free(struct http_remote_fetch *f)
{
    struct http_remote *r = f->r;

    curl_multi_remove_handle(r->multi, f->easy);
    if (r->n_pool < REMOTE_POOL_MAX && !f->cancelled) {
        curl_easy_reset(f->easy); /* options back to defaults; its buffers stay */
        r->pool[r->n_pool++] = f->easy;
    } else {
        curl_easy_cleanup(f->easy);
    }
    for (struct curl_slist *s = f->headers; s != NULL; s = s->next)
        explicit_bzero(s->data, strlen(s->data)); /* the provider's key is among them */
    curl_slist_free_all(f->headers);
    buf_cleanup(&f->head);
    DLIST_UNLINK(r->fetches, f);
    free(f);
}

/* The header lines as http_header pairs pointing into f->head; the status line is skipped. */
static size_t
split_head(struct http_remote_fetch *f, struct http_header *h, size_t max)
{
    const char *p = f->head.data, *end = p + f->head.len;
    size_t n = 0;

    while (p < end && n < max) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;

        eol = eol ? eol : end;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL && strncmp(p, "HTTP/", 5) != 0) {
            v = colon + 1;
            ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            h[n++] = (struct http_header){p, (size_t)(colon - p), v, (size_t)(ve - v)};
        }
        p = eol + 1;
    }
    return n;
}

/* The head is complete (the first body byte, or the end): hand it on, or decide to retry a
 * 5xx. Returns false when the response is being discarded. */
static bool
deliver_head(struct http_remote_fetch *f)
{
    struct http_header h[HTTP_MAX_HEADERS];
    long status = 0;
    size_t n;

    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 500 && f->tries_left > 0) {
        f->discarding = true;
        return false;
    }
    f->delivered = true;
    n = split_head(f, h, HTTP_MAX_HEADERS);
    f->cb->on_response(f->arg, status, h, n);
    return true;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http_remote_fetch *f = ud;
    size_t n = size * nmemb;

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) /* a new response: 1xx, or after a retry */
        buf_reset(&f->head);
    if (n <= 2 && (data[0] == '\r' || data[0] == '\n'))
        return n;
    return buf_append(&f->head, data, n) < 0 ? 0 : n;
}

static size_t
on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http_remote_fetch *f = ud;
    size_t n = size * nmemb;
    int rc;

    if (f->cancelled)
        return 0;
    if (f->discarding || (!f->delivered && !deliver_head(f)))
        return n;
    if (f->cancelled)
        return 0;
    rc = f->cb->on_body(f->arg, data, n);
    if (f->cancelled || rc < 0)
        return 0;
    if (rc == HTTP_FETCH_PAUSE)
        curl_easy_pause(f->easy, CURLPAUSE_RECV);
    return n;
}

static int
err_of(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return HTTP_FETCH_OK;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return HTTP_FETCH_EURL;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return HTTP_FETCH_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_FETCH_ETIMEDOUT;
    case CURLE_WRITE_ERROR:
        return HTTP_FETCH_EABORTED;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return HTTP_FETCH_ECLOSED;
    default:
        return HTTP_FETCH_EPROTO;
    }
}

/* Whether a failed attempt may go again: nothing reached the caller, tries are left, and the
 * failure is one another attempt can cure (not a certificate or a URL). */
static bool
retryable(const struct http_remote_fetch *f, CURLcode c)
{
    if (f->delivered || f->tries_left <= 0)
        return false;
    if (f->discarding)
        return true;
    return c == CURLE_COULDNT_CONNECT || c == CURLE_GOT_NOTHING || c == CURLE_RECV_ERROR ||
           c == CURLE_SEND_ERROR || c == CURLE_HTTP2 || c == CURLE_HTTP2_STREAM;
}

static void
finish(struct http_remote_fetch *f, CURLcode c)
{
    const struct http_fetch_cb *cb = f->cb;
    void *arg = f->arg;
    int err = err_of(c);
    char msg[CURL_ERROR_SIZE + 32];

    if (retryable(f, c)) {
        f->tries_left--;
        f->discarding = false;
        buf_reset(&f->head);
        f->errbuf[0] = '\0';
        curl_multi_remove_handle(f->r->multi, f->easy);
        curl_multi_add_handle(f->r->multi, f->easy);
        return;
    }
    if (err == 0 && !f->delivered)
        deliver_head(f);
    snprintf(msg, sizeof(msg), "%s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(c));
    fetch_free(f);
    cb->on_done(arg, err, err ? msg : "");
}

/* After libcurl ran: finished transfers end, cancelled ones go, and a released multi whose
 * work is over is destroyed. */
static void
process(struct http_remote *r)
{
    CURLMsg *msg;
    int left;

    if (r->depth > 0 || r->destroyed)
        return;
    r->depth++;
    while ((msg = curl_multi_info_read(r->multi, &left)) != NULL) {
        struct http_remote_fetch *f = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        if (f->cancelled)
            fetch_free(f);
        else
            finish(f, msg->data.result);
    }
    for (struct http_remote_fetch *f = r->fetches, *next; f != NULL; f = next) {
        next = f->next;
        if (f->cancelled)
            fetch_free(f);
    }
    r->depth--;
    if (r->released && r->fetches == NULL)
        destroy(r);
}

static void
set_easy(struct http_remote_fetch *f, const struct http_fetch_opts *o,
         const struct http_remote_opts *ro)
{
    CURL *e = f->easy;
    const char *method = o->method ? o->method : o->body ? "POST" : "GET";

    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)f);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ro != NULL && ro->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, ro->ca_file);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L);
    if (o->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (o->idle_s > 0) { /* "no byte for idle_s": under one byte a second for that long */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->idle_s);
    }
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    if (o->body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    else if (strcmp(method, "GET") == 0 && o->body == NULL)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
}

struct http_remote_fetch *
http_remote_start(struct http_remote *r, const struct http_fetch_opts *o,
                  const struct http_remote_opts *ro, const struct http_fetch_cb *cb, void *arg)
{
    struct http_remote_fetch *f = xcalloc(1, sizeof(*f));

    f->r = r;
    f->cb = cb;
    f->arg = arg;
    f->tries_left = ro ? ro->retries : 0;
    buf_init(&f->head, REMOTE_HEAD_MAX);
    f->easy = r->n_pool > 0 ? r->pool[--r->n_pool] : curl_easy_init();
    if (f->easy == NULL)
        fatalx("libcurl: curl_easy_init failed");
    for (size_t i = 0; i < o->n_headers; i++) {
        char *line = xasprintf("%.*s: %.*s", (int)o->headers[i].name_len, o->headers[i].name,
                               (int)o->headers[i].value_len, o->headers[i].value);

        f->headers = curl_slist_append(f->headers, line);
        explicit_bzero(line, strlen(line));
        free(line);
    }
    f->headers = curl_slist_append(f->headers, "Expect:"); /* no 100-continue round trip */
    set_easy(f, o, ro);
    curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers);
    DLIST_PUSH(r->fetches, f);
    r->depth++; /* adding may call the timer function, never a fetch's callbacks */
    curl_multi_add_handle(r->multi, f->easy);
    r->depth--;
    return f;
}

void
http_remote_cancel(struct http_remote_fetch *f)
{
    struct http_remote *r;

    if (f == NULL)
        return;
    r = f->r;
    f->cancelled = true;
    if (r->depth > 0) /* inside libcurl: process() frees it when libcurl returns */
        return;
    fetch_free(f);
    if (r->released && r->fetches == NULL)
        destroy(r);
}

void
http_remote_resume(struct http_remote_fetch *f)
{
    struct http_remote *r = f->r;

    r->depth++; /* unpausing may deliver the bytes libcurl held */
    curl_easy_pause(f->easy, CURLPAUSE_CONT);
    r->depth--;
    process(r);
}
