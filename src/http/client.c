#include "client.h"

#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define MAX_RESPONSE_HEADER_BYTES (64 * 1024)
#define MAX_IDLE_CONNS            64
#define READ_CHUNK                (64 * 1024)

struct http_client {
    uv_loop_t *loop;
    struct uconn *idle; /* pooled keep-alive connections, most recent first */
    size_t n_idle;
    struct http_fetch *fetches; /* unfinished, for release */
    size_t n_conns;             /* open or closing: the client outlives them */
    bool released;
};

/* One upstream connection; it outlives its fetch while a write or close is pending. */
struct uconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t wr;
    struct buf out; /* the request being written */
    struct http_client *client;
    struct http_fetch *fetch; /* NULL while pooled */
    char *key;                /* "host:port", to match pooled connections */
    http_parser parser;
    bool closing;
    bool writing;       /* a uv_write is pending: the request is not all out */
    struct uconn *next; /* in the idle pool */
};

struct http_fetch {
    struct http_client *client;
    struct uconn *conn;
    struct http_fetch_cb cb;
    void *arg;
    char *key, *host; /* "host:port", and the host alone */
    int port;
    struct sockaddr_storage addr;
    struct resolve *resolve; /* a name lookup in flight */
    struct buf out;          /* the request head, kept for one retry on a stale connection */
    const char *body;        /* borrowed from the caller until the fetch ends */
    size_t body_len;
    struct buf hdr;   /* "name:value\n" lines of the current response */
    struct buf stash; /* unparsed input held while paused */
    uv_timer_t timer; /* connect, idle and total limits */
    uint64_t deadline, total_ms, idle_ms, last_read, connect_ms;

    /* Where the exchange is; the flags below are orthogonal to it. */
    enum fetch_state {
        FETCH_CONNECTING, /* resolving the name or connecting (the connect limit runs) */
        FETCH_WAITING,    /* the request is going or gone out; no final answer yet */
        FETCH_RECEIVING,  /* the final head came; the body arrives */
        FETCH_COMPLETE,   /* the whole answer is parsed; what follows is not ours */
        FETCH_FINISHED,   /* its end is reported (or about to be) and it is unlinked */
    } state;

    bool head;               /* a HEAD request: no body, whatever the length says */
    bool in_value, interim;  /* the parser: inside a header value, after a 1xx */
    bool keep_alive, paused; /* the connection goes back to the pool; reads stopped */
    bool reused, retried;    /* a pooled connection, and the one retry it allows */
    bool got_bytes;          /* something came on this connection (no retry then) */
    bool starting; /* inside http_fetch_start: an error then is reported on the next turn */
    bool deferred; /* such an error waits on the timer */
    int early_err;
    char early_msg[512];
    struct http_fetch *prev, *next;
};

struct resolve {
    uv_getaddrinfo_t req;
    struct http_fetch *fetch; /* NULL once the fetch is gone */
    int port;
};

static http_parser_settings parser_settings;

static void conn_close(struct uconn *u);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void fetch_send(struct http_fetch *f, struct uconn *u);
static void fetch_resolve(struct http_fetch *f);

/* ---- finishing ---- */

static void
on_fetch_closed(uv_handle_t *h)
{
    struct http_fetch *f = h->data;

    buf_cleanup(&f->out);
    buf_cleanup(&f->hdr);
    buf_cleanup(&f->stash);
    free(f->key);
    free(f->host);
    free(f);
}

static void
client_maybe_free(struct http_client *c)
{
    if (c->released && c->fetches == NULL && c->n_conns == 0)
        free(c);
}

/* Unlinks f; its memory goes with its timer handle, after the callbacks on the stack return. */
static void
fetch_retire(struct http_fetch *f)
{
    struct http_client *c = f->client;

    f->state = FETCH_FINISHED;
    if (f->resolve != NULL)
        f->resolve->fetch = NULL;
    if (f->conn != NULL) {
        f->conn->fetch = NULL;
        f->conn = NULL;
    }
    DLIST_UNLINK(c->fetches, f);
    uv_close((uv_handle_t *)&f->timer, on_fetch_closed);
    client_maybe_free(c);
}

static void
on_deferred(uv_timer_t *t)
{
    struct http_fetch *f = t->data;

    if (f->cb.on_done != NULL)
        f->cb.on_done(f->arg, f->early_err, f->early_msg);
    fetch_retire(f);
}

static void fetch_finish(struct http_fetch *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports the end once; f stays linked during on_done, so a release there keeps the client. */
static void
fetch_finish(struct http_fetch *f, int err, const char *fmt, ...)
{
    char msg[512] = "";
    va_list ap;

    if (f->state == FETCH_FINISHED)
        return;
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    if (f->conn != NULL && err != HTTP_FETCH_OK)
        conn_close(f->conn);
    f->state = FETCH_FINISHED; /* a cancel from on_done is a no-op */
    if (f->starting) {
        f->deferred = true;
        f->early_err = err;
        memcpy(f->early_msg, msg, sizeof(msg));
        uv_timer_start(&f->timer, on_deferred, 0, 0);
        return;
    }
    if (f->cb.on_done != NULL)
        f->cb.on_done(f->arg, err, msg);
    fetch_retire(f);
}

/* ---- connections ---- */

static void
on_conn_closed(uv_handle_t *h)
{
    struct uconn *u = h->data;
    struct http_client *c = u->client;

    buf_cleanup(&u->out);
    free(u->key);
    free(u);
    c->n_conns--;
    client_maybe_free(c);
}

static void
pool_remove(struct uconn *u)
{
    struct http_client *c = u->client;

    for (struct uconn **pp = &c->idle; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            c->n_idle--;
            return;
        }
}

static void
conn_close(struct uconn *u)
{
    if (u->closing)
        return;
    u->closing = true;
    if (u->fetch == NULL)
        pool_remove(u);
    else
        u->fetch->conn = NULL;
    u->fetch = NULL;
    uv_close((uv_handle_t *)&u->tcp, on_conn_closed);
}

/* A finished response on a reusable connection: back to the pool, still read to see EOF. */
static void
conn_park(struct uconn *u)
{
    struct http_client *c = u->client;

    if (c->released || c->n_idle >= MAX_IDLE_CONNS) {
        conn_close(u);
        return;
    }
    u->fetch = NULL;
    u->next = c->idle;
    c->idle = u;
    c->n_idle++;
    /* A fetch paused on its last bytes ends from what it had stashed, with reads still
     * stopped: a parked connection must read, to see the upstream close it and to hear the
     * next answer (a reused one that did not hung that request). Already reading: EALREADY. */
    (void)uv_read_start((uv_stream_t *)&u->tcp, on_alloc, on_read);
}

static struct uconn *
pool_take(struct http_client *c, const char *key)
{
    for (struct uconn **pp = &c->idle; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->key, key) == 0) {
            struct uconn *u = *pp;

            *pp = u->next;
            c->n_idle--;
            return u;
        }
    return NULL;
}

/* ---- response parsing ---- */

/* The fetch a parser callback serves; NULL once it was cancelled from a callback. */
static struct http_fetch *
parser_fetch(http_parser *p)
{
    struct http_fetch *f = ((struct uconn *)p->data)->fetch;

    return f != NULL && f->state != FETCH_FINISHED ? f : NULL;
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_fetch *f = parser_fetch(p);

    if (f == NULL)
        return -1;
    if (f->in_value && buf_append(&f->hdr, "\n", 1) < 0)
        return -1;
    f->in_value = false;
    return buf_append(&f->hdr, at, len);
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_fetch *f = parser_fetch(p);

    if (f == NULL)
        return -1;
    if (!f->in_value && buf_append(&f->hdr, ":", 1) < 0)
        return -1;
    f->in_value = true;
    return buf_append(&f->hdr, at, len);
}

static size_t
split_headers(struct buf *raw, struct http_header *hv)
{
    size_t nh = 0;
    char *line, *end;

    if (raw->len == 0)
        return 0;
    buf_cstr(raw);
    for (line = raw->data; *line && nh < HTTP_MAX_HEADERS; line = end) {
        char *colon = strchr(line, ':'), *v;

        end = strchr(line, '\n');
        end = end ? end + 1 : line + strlen(line);
        if (colon == NULL || colon >= end)
            continue;
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        hv[nh] = (struct http_header){line, (size_t)(colon - line), v, (size_t)(end - v)};
        while (hv[nh].value_len > 0 &&
               (v[hv[nh].value_len - 1] == '\n' || v[hv[nh].value_len - 1] == ' '))
            hv[nh].value_len--;
        nh++;
    }
    return nh;
}

static int
on_headers_complete(http_parser *p)
{
    struct http_fetch *f = parser_fetch(p);
    struct http_header hv[HTTP_MAX_HEADERS];
    size_t nh;

    if (f == NULL)
        return -1;
    f->in_value = false;
    if (p->status_code >= 100 && p->status_code < 200) { /* interim: wait for the real one */
        f->interim = true;
        buf_reset(&f->hdr);
        return 0;
    }
    f->state = FETCH_RECEIVING;
    nh = split_headers(&f->hdr, hv);
    if (f->cb.on_response)
        f->cb.on_response(f->arg, p->status_code, hv, nh);
    if (f->state == FETCH_FINISHED)
        return -1;
    return f->head ? 1 : 0; /* a HEAD response has no body, whatever its length says */
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct http_fetch *f = parser_fetch(p);
    int rc;

    if (f == NULL)
        return -1;
    if (f->cb.on_body == NULL)
        return 0;
    rc = f->cb.on_body(f->arg, at, len);
    if (f->state == FETCH_FINISHED)
        return -1;
    if (rc < 0) {
        fetch_finish(f, HTTP_FETCH_EABORTED, "aborted by the receiver");
        return -1;
    }
    if (rc == HTTP_FETCH_PAUSE) {
        f->paused = true;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    struct http_fetch *f = parser_fetch(p);

    if (f == NULL)
        return -1;
    if (f->interim) {
        f->interim = false;
        return 0;
    }
    f->state = FETCH_COMPLETE;
    f->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1); /* anything after the response is not ours */
    return 0;
}

static void
init_settings(void)
{
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
}

/* The response ended: pool the connection when it can carry another request, then report. */
static void
fetch_complete(struct http_fetch *f, size_t extra)
{
    struct uconn *u = f->conn;

    if (u != NULL) {
        f->conn = NULL;
        u->fetch = NULL;
        /* answered before the request was all out (an early 413): that write can't be reused */
        if (f->keep_alive && extra == 0 && !u->writing)
            conn_park(u);
        else
            conn_close(u);
    }
    fetch_finish(f, HTTP_FETCH_OK, NULL);
}

/* Feeds response bytes to the parser; keeps what a pause leaves unparsed. */
static void
fetch_input(struct http_fetch *f, const char *data, size_t len)
{
    struct uconn *u = f->conn;
    size_t n = http_parser_execute(&u->parser, &parser_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&u->parser);

    if (f->state == FETCH_FINISHED)
        return;
    if (f->state == FETCH_COMPLETE) {
        fetch_complete(f, len - n);
        return;
    }
    if (e == HPE_PAUSED) {
        if (buf_append(&f->stash, data + n, len - n) < 0)
            fetch_finish(f, HTTP_FETCH_EPROTO, "upstream response too large to hold while paused");
        else
            uv_read_stop((uv_stream_t *)&u->tcp);
        return;
    }
    if (e != HPE_OK)
        fetch_finish(f, HTTP_FETCH_EPROTO, "invalid HTTP response from upstream %s: %s", f->key,
                     http_errno_description(e));
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char chunk[READ_CHUNK]; /* one loop, one read at a time; parsing copies nothing */

    (void)h;
    (void)suggested;
    *b = uv_buf_init(chunk, sizeof(chunk));
}

/* The connection ended before the response did. */
static void
fetch_eof(struct http_fetch *f, ssize_t err)
{
    struct uconn *u = f->conn;

    if (err == UV_EOF) { /* a body delimited by the close ends here */
        http_parser_execute(&u->parser, &parser_settings, NULL, 0);
        if (f->state == FETCH_FINISHED)
            return;
        if (f->state == FETCH_COMPLETE) {
            f->keep_alive = false;
            fetch_complete(f, 0);
            return;
        }
    }
    if (f->reused && !f->retried && !f->got_bytes) {
        /* A pooled connection the upstream had just closed: once more on a fresh one. */
        f->retried = true;
        conn_close(u);
        fetch_resolve(f);
        return;
    }
    fetch_finish(f, HTTP_FETCH_ECLOSED, "upstream %s closed the connection %s: %s", f->key,
                 f->state == FETCH_RECEIVING ? "mid-response" : "before answering",
                 uv_strerror((int)err));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct uconn *u = s->data;
    struct http_fetch *f = u->fetch;

    if (nread == 0)
        return;
    if (f == NULL) { /* pooled: the upstream closed it, or sent what nobody asked for */
        conn_close(u);
        return;
    }
    if (nread < 0) {
        fetch_eof(f, nread);
        return;
    }
    f->last_read = uv_now(u->client->loop);
    f->got_bytes = true;
    fetch_input(f, b->base, (size_t)nread);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t);

static void
timer_arm(struct http_fetch *f)
{
    uint64_t now = uv_now(f->client->loop), at = 0;

    if (f->state == FETCH_FINISHED)
        return;
    if (f->state == FETCH_CONNECTING)
        at = now + f->connect_ms;
    else if (f->idle_ms > 0 && !f->paused)
        at = (f->last_read ? f->last_read : now) + f->idle_ms;
    if (f->deadline && (at == 0 || f->deadline < at))
        at = f->deadline;
    if (at == 0)
        uv_timer_stop(&f->timer);
    else
        uv_timer_start(&f->timer, on_timer, at > now ? at - now : 0, 0);
}

static void
on_timer(uv_timer_t *t)
{
    struct http_fetch *f = t->data;
    uint64_t now = uv_now(f->client->loop);

    if (f->deadline && now >= f->deadline)
        fetch_finish(f, HTTP_FETCH_ETIMEDOUT, "upstream %s took longer than %llu ms", f->key,
                     (unsigned long long)f->total_ms);
    else if (f->state == FETCH_CONNECTING)
        fetch_finish(f, HTTP_FETCH_ETIMEDOUT, "connecting to upstream %s timed out after %llu ms",
                     f->key, (unsigned long long)f->connect_ms);
    else if (f->idle_ms && !f->paused && now - f->last_read >= f->idle_ms)
        fetch_finish(f, HTTP_FETCH_ETIMEDOUT, "upstream %s sent nothing for %llu s", f->key,
                     (unsigned long long)(f->idle_ms / 1000));
    else
        timer_arm(f);
}

/* ---- sending ---- */

static void
on_written(uv_write_t *w, int status)
{
    struct uconn *u = w->data;

    u->writing = false;
    if (status < 0 && u->fetch != NULL && status != UV_ECANCELED)
        fetch_eof(u->fetch, status);
}

static void
fetch_send(struct http_fetch *f, struct uconn *u)
{
    uv_buf_t b[2];
    int sent;
    size_t head, body;

    f->conn = u;
    u->fetch = f;
    f->state = FETCH_WAITING;
    f->got_bytes = f->interim = f->in_value = false;
    buf_reset(&f->hdr);
    http_parser_init(&u->parser, HTTP_RESPONSE);
    u->parser.data = u;
    f->last_read = uv_now(f->client->loop); /* the idle clock starts with the request */
    timer_arm(f);
    /* Straight to the socket first: uv_write would cost an epoll_ctl per request. */
    b[0] = uv_buf_init(f->out.data, (unsigned)f->out.len);
    b[1] = uv_buf_init((char *)f->body, (unsigned)f->body_len);
    sent = uv_try_write((uv_stream_t *)&u->tcp, b, 2);
    head = sent > 0 ? (size_t)sent : 0;
    if (head == f->out.len + f->body_len)
        return;
    body = head > f->out.len ? head - f->out.len : 0;
    head = head < f->out.len ? head : f->out.len;
    /* The rest of the head is copied (the connection may outlive the fetch); the rest of the
     * body is borrowed: its owner keeps it until the fetch ends, and a cancelled write reads
     * nothing more. */
    buf_reset(&u->out);
    buf_append(&u->out, f->out.data + head, f->out.len - head);
    b[0] = uv_buf_init(u->out.data, (unsigned)u->out.len);
    b[1] = uv_buf_init((char *)f->body + body, (unsigned)(f->body_len - body));
    u->wr.data = u;
    u->writing = true;
    if (uv_write(&u->wr, (uv_stream_t *)&u->tcp, b, 2, on_written) < 0) {
        u->writing = false;
        fetch_eof(f, UV_EPIPE);
    }
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct uconn *u = req->data;
    struct http_fetch *f = u->fetch;

    if (f == NULL) /* cancelled while connecting; the handle is closing */
        return;
    if (status < 0) {
        fetch_finish(f, HTTP_FETCH_ECONNECT, "cannot connect to upstream %s: %s", f->key,
                     uv_strerror(status));
        return;
    }
    (void)uv_tcp_nodelay(&u->tcp, 1); /* best effort: only latency depends on it */
    status = uv_read_start((uv_stream_t *)&u->tcp, on_alloc, on_read);
    if (status < 0) {
        fetch_finish(f, HTTP_FETCH_ECONNECT, "cannot read from upstream %s: %s", f->key,
                     uv_strerror(status));
        return;
    }
    fetch_send(f, u);
}

static void
fetch_connect(struct http_fetch *f)
{
    struct http_client *c = f->client;
    struct uconn *u = xcalloc(1, sizeof(*u));
    int rc;

    u->client = c;
    u->key = xstrdup(f->key);
    buf_init(&u->out, SIZE_MAX);
    uv_tcp_init(c->loop, &u->tcp);
    u->tcp.data = u->connect.data = u;
    c->n_conns++;
    u->fetch = f;
    f->conn = u;
    f->state = FETCH_CONNECTING;
    f->reused = false;
    timer_arm(f);
    rc = uv_tcp_connect(&u->connect, &u->tcp, (struct sockaddr *)&f->addr, on_connected);
    if (rc < 0)
        fetch_finish(f, HTTP_FETCH_ECONNECT, "cannot connect to upstream %s: %s", f->key,
                     uv_strerror(rc));
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve *r = req->data;
    struct http_fetch *f = r->fetch;

    if (f != NULL) {
        f->resolve = NULL;
        if (status < 0 || res == NULL) {
            fetch_finish(f, HTTP_FETCH_ECONNECT, "cannot resolve upstream %s: %s", f->key,
                         uv_strerror(status));
        } else {
            memcpy(&f->addr, res->ai_addr, res->ai_addrlen);
            ((struct sockaddr_in *)&f->addr)->sin_port = htons((uint16_t)r->port);
            fetch_connect(f);
        }
    }
    uv_freeaddrinfo(res);
    free(r);
}

/* ---- URL and request ---- */

int
http_url_split(const char *url, char *host, size_t host_size, int *port, const char **path)
{
    const char *p, *end, *colon;
    size_t n;
    bool tls = strncmp(url, "https://", 8) == 0;

    if (!tls && strncmp(url, "http://", 7) != 0)
        return -1;
    p = url + (tls ? 8 : 7);
    end = p + strcspn(p, "/?");
    *path = *end ? end : "/";
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));

        if (close == NULL)
            return -1;
        n = (size_t)(close - p - 1);
        colon = close[1] == ':' ? close + 1 : NULL;
        p++;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        n = (size_t)((colon ? colon : end) - p);
    }
    if (n == 0 || n >= host_size)
        return -1;
    memcpy(host, p, n);
    host[n] = '\0';
    *port = tls ? 443 : 80;
    if (colon != NULL) {
        char *e;
        long v = strtol(colon + 1, &e, 10);

        if (e != end || v <= 0 || v > 65535)
            return -1;
        *port = (int)v;
    }
    return 0;
}

/* No printf here: it was a tenth of the proxy's own time per request. */
static void
build_request(struct http_fetch *f, const struct http_fetch_opts *o, const char *path)
{
    const char *method = o->method ? o->method : o->body ? "POST" : "GET";
    struct buf *b = &f->out;
    char len[32];

    buf_append(b, method, strlen(method));
    buf_append(b, " ", 1);
    buf_append(b, path, strlen(path));
    buf_append(b, " HTTP/1.1\r\nHost: ", 17);
    buf_append(b, f->key, strlen(f->key));
    buf_append(b, "\r\n", 2);
    for (size_t i = 0; i < o->n_headers; i++) {
        buf_append(b, o->headers[i].name, o->headers[i].name_len);
        buf_append(b, ": ", 2);
        buf_append(b, o->headers[i].value, o->headers[i].value_len);
        buf_append(b, "\r\n", 2);
    }
    if (o->body != NULL) {
        int n = snprintf(len, sizeof(len), "Content-Length: %zu\r\n", o->body_len);

        buf_append(b, len, (size_t)n);
    }
    buf_append(b, "\r\n", 2);
    f->body = o->body;
    f->body_len = o->body ? o->body_len : 0;
    f->head = strcmp(method, "HEAD") == 0;
}

/* Resolves (numbers at once, names on the thread pool), then connects. */
static void
fetch_resolve(struct http_fetch *f)
{
    struct resolve *r;
    const char *host = f->host;
    int port = f->port;

    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&f->addr) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&f->addr) == 0) {
        fetch_connect(f);
        return;
    }
    r = xcalloc(1, sizeof(*r));
    r->fetch = f;
    r->port = port;
    r->req.data = r;
    f->resolve = r;
    f->state = FETCH_CONNECTING;
    timer_arm(f);
    if (uv_getaddrinfo(f->client->loop, &r->req, on_resolved, host, NULL,
                       &(struct addrinfo){.ai_socktype = SOCK_STREAM}) < 0) {
        f->resolve = NULL;
        free(r);
        fetch_finish(f, HTTP_FETCH_ECONNECT, "cannot resolve upstream %s", f->key);
    }
}

/* A pooled connection to the same host and port if there is one, else a new one. */
static void
fetch_begin(struct http_fetch *f)
{
    struct uconn *u = pool_take(f->client, f->key);

    if (u != NULL) {
        f->reused = true;
        fetch_send(f, u);
    } else {
        fetch_resolve(f);
    }
}

/* Errors found before any I/O are reported on the next loop turn, like all others. */
/* ---- public ---- */

struct http_client *
http_client_new(uv_loop_t *loop)
{
    struct http_client *c = xcalloc(1, sizeof(*c));

    if (parser_settings.on_body == NULL)
        init_settings();
    c->loop = loop;
    return c;
}

void
http_client_release(struct http_client *c)
{
    if (c == NULL || c->released)
        return;
    c->released = true;
    while (c->idle != NULL)
        conn_close(c->idle);
    client_maybe_free(c);
}

struct http_fetch *
http_fetch_start(struct http_client *c, const struct http_fetch_opts *o,
                 const struct http_fetch_cb *cb, void *arg)
{
    struct http_fetch *f = xcalloc(1, sizeof(*f));
    char host[256];
    const char *path;
    int port;
    uint64_t now = uv_now(c->loop);

    f->client = c;
    f->cb = *cb;
    f->arg = arg;
    buf_init(&f->out, SIZE_MAX);
    buf_init(&f->hdr, MAX_RESPONSE_HEADER_BYTES);
    buf_init(&f->stash, READ_CHUNK * 2);
    uv_timer_init(c->loop, &f->timer);
    f->timer.data = f;
    f->connect_ms = o->connect_timeout_ms > 0 ? (uint64_t)o->connect_timeout_ms : 5000;
    f->total_ms = o->timeout_ms > 0 ? (uint64_t)o->timeout_ms : 0;
    f->deadline = f->total_ms ? now + f->total_ms : 0;
    f->idle_ms = o->idle_s > 0 ? (uint64_t)o->idle_s * 1000 : 0;
    DLIST_PUSH(c->fetches, f);
    f->starting = true;
    if (http_url_split(o->url, host, sizeof(host), &port, &path) < 0 ||
        strncmp(o->url, "http://", 7) != 0) {
        f->key = xstrdup(o->url);
        fetch_finish(f, HTTP_FETCH_EURL, "not an http://host:port URL: %s", o->url);
    } else {
        f->key =
            strchr(host, ':') ? xasprintf("[%s]:%d", host, port) : xasprintf("%s:%d", host, port);
        f->host = xstrdup(host);
        f->port = port;
        build_request(f, o, path);
        fetch_begin(f);
    }
    f->starting = false;
    return f;
}

void
http_fetch_cancel(struct http_fetch *f)
{
    if (f == NULL)
        return;
    if (f->deferred) { /* its error is not reported yet: it never will be */
        f->cb.on_done = NULL;
        return;
    }
    if (f->state == FETCH_FINISHED)
        return;
    if (f->conn != NULL)
        conn_close(f->conn);
    fetch_retire(f);
}

void
http_fetch_resume(struct http_fetch *f)
{
    struct buf held;

    if (f->state == FETCH_FINISHED || !f->paused || f->conn == NULL)
        return;
    f->paused = false;
    f->last_read = uv_now(f->client->loop); /* a paused stream was not idle */
    http_parser_pause(&f->conn->parser, 0);
    held = f->stash; /* parsing may pause again and stash the rest anew */
    buf_init(&f->stash, held.max);
    if (held.len > 0)
        fetch_input(f, held.data, held.len);
    buf_cleanup(&held);
    if (f->state != FETCH_FINISHED && !f->paused && f->conn != NULL) {
        int rc = uv_read_start((uv_stream_t *)&f->conn->tcp, on_alloc, on_read);

        if (rc < 0 && rc != UV_EALREADY) {
            fetch_finish(f, HTTP_FETCH_ECLOSED, "cannot read from upstream %s: %s", f->key,
                         uv_strerror(rc));
            return;
        }
        timer_arm(f);
    }
}
