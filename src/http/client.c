#include "client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define MAX_RESPONSE_HEADER_BYTES (64 * 1024)

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeout */
    uv_timer_t reap;  /* removes cancelled fetches outside curl's callbacks */
    struct http_fetch *fetches;
    CURL *spare[64]; /* finished easy handles, reset and kept: init is costly per request */
    int n_spare;
    int closing_handles;
    bool closing;  /* in curl_multi_cleanup: sockets go, no assign back */
    bool released; /* the owner is done: destroyed once no fetch is left */
};

struct http_fetch {
    struct http_client *client;
    CURL *easy;
    struct curl_slist *slist;
    struct http_fetch_cb cb;
    void *arg;
    struct buf hdr; /* raw header lines of the current response */
    bool cancelled, paused;
    char errbuf[CURL_ERROR_SIZE];
    struct http_fetch *prev, *next;
};

struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    int events; /* what uv_poll watches now: an unchanged set costs no epoll_ctl */
    struct http_client *client;
};

static void check_done(struct http_client *c);
static void on_reap(uv_timer_t *t);

static void
fetch_unlink_free(struct http_fetch *f)
{
    struct http_client *c = f->client;

    curl_multi_remove_handle(c->multi, f->easy);
    if (c->n_spare < (int)(sizeof(c->spare) / sizeof(c->spare[0])) && !c->released) {
        curl_easy_reset(f->easy);
        c->spare[c->n_spare++] = f->easy;
    } else {
        curl_easy_cleanup(f->easy);
    }
    curl_slist_free_all(f->slist);
    buf_cleanup(&f->hdr);
    if (f->prev)
        f->prev->next = f->next;
    else
        c->fetches = f->next;
    if (f->next)
        f->next->prev = f->prev;
    free(f);
    if (c->released && c->fetches == NULL)
        uv_timer_start(&c->reap, on_reap, 0, 0);
}

/* ---- libuv glue ---- */

static void
on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(s->client->multi, s->fd, flags, &running);
    check_done(s->client);
}

static int
socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct sock *s = socketp;
    int events = 0;

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            if (!c->closing)
                curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->client = c;
        uv_poll_init_socket(c->loop, &s->poll, fd);
        s->poll.data = s;
        curl_multi_assign(c->multi, fd, s);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    if (events != s->events || !uv_is_active((uv_handle_t *)&s->poll))
        uv_poll_start(&s->poll, events, on_poll);
    s->events = events;
    return 0;
}

static void
on_timer(uv_timer_t *t)
{
    struct http_client *c = t->data;
    int running;

    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    struct http_client *c = userp;

    (void)m;
    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* Children must never inherit an upstream socket. */
static int
sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    (void)clientp;
    (void)purpose;
    return fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 ? CURL_SOCKOPT_OK : CURL_SOCKOPT_ERROR;
}

/* Reports finished transfers; on_done may start or cancel others. */
static void
check_done(struct http_client *c)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        struct http_fetch *f = NULL;
        CURLcode rc;

        if (m->msg != CURLMSG_DONE)
            continue;
        rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        if (!f->cancelled && f->cb.on_done != NULL)
            f->cb.on_done(f->arg, (int)rc,
                          rc == CURLE_OK ? "" : f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
        fetch_unlink_free(f);
    }
}

static void destroy(struct http_client *c);

/* Removes cancelled fetches; a released client goes once its last fetch has. */
static void
on_reap(uv_timer_t *t)
{
    struct http_client *c = t->data;
    struct http_fetch *f, *next;

    for (f = c->fetches; f != NULL; f = next) {
        next = f->next;
        if (f->cancelled)
            fetch_unlink_free(f);
    }
    if (c->released && c->fetches == NULL && !c->closing)
        destroy(c);
}

/* ---- curl callbacks ---- */

/* Collects header lines; the blank line ends a response (1xx ones are dropped). */
static size_t
header_cb(char *p, size_t size, size_t n, void *userp)
{
    struct http_fetch *f = userp;
    size_t len = size * n;
    struct http_header hv[HTTP_MAX_HEADERS];
    size_t nh = 0;
    long status = 0;
    char *line, *end;

    if (f->cancelled)
        return 0;
    if (!(len <= 2 && (len == 0 || p[0] == '\r' || p[0] == '\n')))
        return buf_append(&f->hdr, p, len) < 0 ? 0 : len;
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 100 && status < 200) {
        buf_reset(&f->hdr);
        return len;
    }
    buf_cstr(&f->hdr);
    line = strchr(f->hdr.data, '\n'); /* skip the status line */
    for (line = line ? line + 1 : NULL; line && *line && nh < HTTP_MAX_HEADERS; line = end) {
        char *colon = strchr(line, ':'), *v;

        end = strchr(line, '\n');
        end = end ? end + 1 : line + strlen(line);
        if (colon == NULL || colon >= end)
            continue;
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        hv[nh].name = line;
        hv[nh].name_len = (size_t)(colon - line);
        hv[nh].value = v;
        hv[nh].value_len = (size_t)(end - v);
        while (hv[nh].value_len > 0 && (v[hv[nh].value_len - 1] == '\r' || v[hv[nh].value_len - 1] == '\n'))
            hv[nh].value_len--;
        nh++;
    }
    if (f->cb.on_response)
        f->cb.on_response(f->arg, status, hv, nh);
    return f->cancelled ? 0 : len;
}

static size_t
write_cb(char *p, size_t size, size_t n, void *userp)
{
    struct http_fetch *f = userp;
    int rc;

    if (f->cancelled)
        return 0;
    rc = f->cb.on_body ? f->cb.on_body(f->arg, p, size * n) : 0;
    if (f->cancelled || rc < 0)
        return 0;
    if (rc == HTTP_FETCH_PAUSE) {
        f->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return size * n;
}

/* ---- public ---- */

struct http_client *
http_client_new(uv_loop_t *loop)
{
    struct http_client *c = xcalloc(1, sizeof(*c));

    c->loop = loop;
    c->multi = curl_multi_init();
    if (c->multi == NULL)
        fatalx("curl_multi_init failed");
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->reap);
    c->timer.data = c->reap.data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

static void
on_client_timer_closed(uv_handle_t *h)
{
    struct http_client *c = h->data;

    if (--c->closing_handles == 0)
        free(c);
}

/* Closes the pooled connections (a peer may be waiting for them to go) and the handles. */
static void
destroy(struct http_client *c)
{
    c->closing = true;
    while (c->n_spare > 0)
        curl_easy_cleanup(c->spare[--c->n_spare]);
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    c->closing_handles = 2;
    uv_close((uv_handle_t *)&c->timer, on_client_timer_closed);
    uv_close((uv_handle_t *)&c->reap, on_client_timer_closed);
}

void
http_client_release(struct http_client *c)
{
    if (c == NULL || c->released)
        return;
    c->released = true;
    uv_timer_start(&c->reap, on_reap, 0, 0); /* never inside a curl callback */
}

static struct curl_slist *
build_headers(const struct http_fetch_opts *o)
{
    struct curl_slist *l = curl_slist_append(NULL, "Expect:");

    for (size_t i = 0; i < o->n_headers; i++) {
        char *h = xasprintf("%.*s: %.*s", (int)o->headers[i].name_len, o->headers[i].name,
                            (int)o->headers[i].value_len, o->headers[i].value);

        l = curl_slist_append(l, h);
        free(h);
    }
    return l;
}

struct http_fetch *
http_fetch_start(struct http_client *c, const struct http_fetch_opts *o,
                 const struct http_fetch_cb *cb, void *arg)
{
    struct http_fetch *f = xcalloc(1, sizeof(*f));
    CURL *e = c->n_spare > 0 ? c->spare[--c->n_spare] : curl_easy_init();

    if (e == NULL)
        fatalx("curl_easy_init failed");
    f->client = c;
    f->easy = e;
    f->cb = *cb;
    f->arg = arg;
    buf_init(&f->hdr, MAX_RESPONSE_HEADER_BYTES);
    f->slist = build_headers(o);
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, f);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->slist);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms ? o->connect_timeout_ms : 5000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (o->idle_s > 0) { /* under 1 byte/s for idle_s seconds: nothing came */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->idle_s);
    }
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL); /* pass bodies through untouched */
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*"); /* upstreams are direct; ignore http_proxy */
    if (o->body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body);
    }
    if (o->method != NULL && strcmp(o->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (o->method != NULL)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
    f->next = c->fetches;
    if (c->fetches)
        c->fetches->prev = f;
    c->fetches = f;
    curl_multi_add_handle(c->multi, e);
    return f;
}

void
http_fetch_cancel(struct http_fetch *f)
{
    if (f == NULL || f->cancelled)
        return;
    f->cancelled = true;
    uv_timer_start(&f->client->reap, on_reap, 0, 0);
}

void
http_fetch_resume(struct http_fetch *f)
{
    if (f->cancelled || !f->paused)
        return;
    f->paused = false;
    curl_easy_pause(f->easy, CURLPAUSE_CONT);
}
