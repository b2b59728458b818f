#include "server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/list.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "http/addrtab.h"
#include "http/errors.h"
#include "http/h1.h"
#include "http/tls.h"

/* Pipelined bytes kept while a request is in flight; past this we stop reading. */
#define PENDING_MAX (64 * 1024)
#define READ_CHUNK  (16 * 1024)
/* A body must keep coming at this rate on average, past request_timeout's grace: one byte
 * every 10 s kept a connection (and its buffer) open for ever when only each part was timed. */
#define BODY_MIN_RATE (64 * 1024) /* bytes per second */
/* After an answer sent before the body was read, its bytes are read and dropped this long:
 * closing on unread data sends a RST that can destroy the answer before the client reads it
 * (nginx's lingering close). */
#define LINGER_MS 2000

struct http_server {
    uv_loop_t *loop;
    struct http_limits limits;
    http_handler_cb handler;
    void *arg;
    struct listener *listeners;
    struct http_conn *conns; /* doubly linked, for shutdown */
    struct tls_ctx *tls;     /* for the TLS listeners; borrowed */
    http_request_cb on_complete;
    http_admit_cb admit;
    struct addrtab *addrs; /* per client address: connections, body bytes */
    size_t body_reserved;  /* request body bytes reserved across connections */
    size_t n_conns;
    size_t n_local; /* requests from http_local_start still running */
    bool shutting_down;
};

struct listener {
    uv_tcp_t tcp;
    struct http_server *srv;
    unsigned services;
    bool tls;
    struct listener *next;
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct http_server *srv;
    struct http_conn *prev, *next;
    unsigned services;
    struct h1 h1;       /* assembles c->req from the bytes read */
    struct buf pending; /* bytes read while a request is being handled */
    struct http_request req;

    /* Where the connection is in its life; the flags below are orthogonal to it. */
    enum conn_state {
        CONN_READING,   /* between requests, or a request's head and body arriving */
        CONN_HANDLING,  /* a request parsed: its handler runs or its response streams */
        CONN_UPGRADED,  /* taken over after a 101: raw bytes go to up->on_data */
        CONN_FLUSHING,  /* last response queued: shut down once written, then close */
        CONN_LINGERING, /* the same, reading and dropping a body nobody will read */
        CONN_CLOSED,    /* uv_close called; freed when its handles are */
    } state;

    bool served;  /* a request has begun on it: between requests it is an idle keep-alive */
    bool kick;    /* the timer fires to parse pipelined bytes, not for a timeout */
    bool stalled; /* the client stopped reading; the timer bounds how long */
    bool read_paused;
    uv_shutdown_t shutdown_req;
    int handles; /* open libuv handles; freed when 0 */
    size_t queued;
    char peer[64];
    char ip[48]; /* peer without the port, for per-address limits */
    struct addr_entry *addr;
    size_t body_reserved; /* of the limits' body bytes, what this request's body holds */
    bool body_unread;     /* between a head announcing a body and that body's end */
    uint64_t t_body;      /* uv_now() when the body began */
    struct buf head;      /* response headers, sent with the first body bytes (one write) */
    struct tls_conn *tls; /* NULL on a plain listener */
    const struct http_upgrade_cb *up; /* after a 101: raw bytes go to up->on_data */
    void *up_arg;
};

struct wreq {
    uv_write_t w;
    struct http_conn *conn;
    size_t len;
    char data[];
};

static uint64_t next_request_id = 1;

static void conn_close(struct http_conn *c);
static void conn_feed(struct http_conn *c, const char *data, size_t len);
static void request_finish(struct http_conn *c);
static void flush_and_close(struct http_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static struct http_request *synthetic_request(struct http_conn *c);

/* Reads (again); a socket that cannot is of no use and is closed. */
static void
read_on(struct http_conn *c)
{
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);

    if (rc < 0 && rc != UV_EALREADY) {
        log_info("conn %s: cannot read: %s, closing", c->peer, uv_strerror(rc));
        conn_close(c);
    }
}

/* ---- connection lifetime ---- */

static void
on_handle_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;

    if (--c->handles > 0)
        return;
    h1_cleanup(&c->h1);
    buf_cleanup(&c->pending);
    buf_cleanup(&c->req.body);
    buf_cleanup(&c->head);
    tls_conn_free(c->tls);
    free(c->req.path);
    free(c->req.query);
    free(c->req.log_model);
    free(c);
}

/* Gives back what c's request body reserved of the body limits. */
static void
body_release(struct http_conn *c)
{
    c->srv->body_reserved -= c->body_reserved;
    if (c->addr != NULL)
        c->addr->body_bytes -= c->body_reserved;
    c->body_reserved = 0;
}

/* Reserves n more body bytes against the limits in all and per address: -EBUSY or -EUSERS
 * past them. Reserved before the bytes are read, so no client gets memory it cannot keep. */
static int
body_reserve(struct http_conn *c, size_t n)
{
    struct http_server *srv = c->srv;
    const struct http_limits *l = &srv->limits;

    if (l->body_in_flight && srv->body_reserved + n > l->body_in_flight)
        return -EBUSY;
    if (l->body_per_ip && c->addr->body_bytes + n > l->body_per_ip)
        return -EUSERS;
    srv->body_reserved += n;
    c->addr->body_bytes += n;
    c->body_reserved += n;
    return 0;
}

/* Tells the handler its client is gone, then closes. Never frees inside a callback of c. */
static void
conn_close(struct http_conn *c)
{
    struct http_server *srv = c->srv;

    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_HANDLING)
        http_request_gone(&c->req);
    if (c->up != NULL && c->up->on_close != NULL)
        c->up->on_close(c->up_arg);
    c->state = CONN_CLOSED;
    body_release(c);
    addrtab_put(srv->addrs, c->addr);
    c->addr = NULL;
    DLIST_UNLINK(srv->conns, c);
    srv->n_conns--;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void
on_timeout(uv_timer_t *t)
{
    struct http_conn *c = t->data;

    if (c->kick) {
        struct buf rest = c->pending;

        c->kick = false;
        buf_init(&c->pending, PENDING_MAX + READ_CHUNK);
        conn_feed(c, rest.data, rest.len);
        buf_cleanup(&rest);
        return;
    }
    if (c->stalled) {
        log_info("req=%llu client %s read nothing for %llu ms, closing",
                 (unsigned long long)c->req.id, c->peer,
                 (unsigned long long)c->srv->limits.write_stall_ms);
        conn_close(c);
        return;
    }
    if (c->state == CONN_HANDLING || c->state == CONN_UPGRADED) /* their own timeouts apply */
        return;
    if (c->state == CONN_READING && h1_started(&c->h1)) {
        log_info("conn %s: request not received in time", c->peer);
        http_respond_error(synthetic_request(c), 408, "timeout",
                           "request not received in time: each part of it (headers, body) "
                           "must arrive within %llu ms",
                           (unsigned long long)c->srv->limits.header_ms);
        return;
    }
    conn_close(c);
}

static void
arm_timer(struct http_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* ---- writing ---- */

static void
on_written(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    struct http_conn *c = wr->conn;

    c->queued -= wr->len;
    free(wr);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->stalled && c->queued <= c->srv->limits.write_high / 2) {
        c->stalled = false;
        uv_timer_stop(&c->timer);
    }
    if (c->state == CONN_HANDLING && c->req.want_drain &&
        c->queued <= c->srv->limits.write_high / 2)
        http_drained(&c->req);
    else if (c->up != NULL && c->up->on_drain != NULL && c->queued <= c->srv->limits.write_high / 2)
        c->up->on_drain(c->up_arg);
}

static struct wreq *
wreq_new(struct http_conn *c, const char *data, size_t len)
{
    struct wreq *wr = xmalloc(sizeof(*wr) + len);

    wr->conn = c;
    wr->len = len;
    memcpy(wr->data, data, len);
    return wr;
}

static int queue_write(struct http_conn *c, struct wreq *wr);

/* The TLS stream's ciphertext goes out as one queued write. */
static int
send_cipher(void *arg, const char *data, size_t len)
{
    struct http_conn *c = arg;

    return len > 0 ? queue_write(c, wreq_new(c, data, len)) : 0;
}

static void on_plain(struct http_conn *c, const char *data, size_t len);

static void
deliver_plain(void *arg, const char *data, size_t len)
{
    struct http_conn *c = arg;

    if (c->state != CONN_CLOSED)
        on_plain(c, data, len);
}

static void
tls_io(struct http_conn *c, struct tls_stream *io)
{
    *io = (struct tls_stream){send_cipher, deliver_plain, c};
}

/* Writes what the socket takes at once when nothing is queued (uv_write would cost an
 * epoll_ctl per response) and drops those bytes from the parts. */
static void
write_now(struct http_conn *c, uv_buf_t *parts, size_t n)
{
    int rc;
    size_t sent;

    if (c->tls != NULL || c->queued > 0)
        return;
    rc = uv_try_write((uv_stream_t *)&c->tcp, parts, (unsigned)n);
    for (sent = rc > 0 ? (size_t)rc : 0; n > 0 && sent > 0; parts++, n--) {
        size_t k = sent < parts->len ? sent : parts->len;

        if (k == 0)
            continue; /* an empty part may have no base at all */
        parts->base += k;
        parts->len -= k;
        sent -= k;
    }
}

/* Queues bytes for the client: the pending head and up to three parts, as one write. */
static int
conn_write(struct http_conn *c, const char *a, size_t alen, const char *b, size_t blen,
           const char *d, size_t dlen)
{
    uv_buf_t parts[4] = {
        uv_buf_init(c->head.data, (unsigned)c->head.len), uv_buf_init((char *)a, (unsigned)alen),
        uv_buf_init((char *)b, (unsigned)blen), uv_buf_init((char *)d, (unsigned)dlen)};
    struct wreq *wr;
    size_t total = 0;

    if (c->state == CONN_CLOSED)
        return -EPIPE;
    write_now(c, parts, 4);
    for (int i = 0; i < 4; i++)
        total += parts[i].len;
    if (total == 0) {
        buf_reset(&c->head);
        return 0;
    }
    wr = xmalloc(sizeof(*wr) + total);
    wr->conn = c;
    wr->len = 0;
    for (int i = 0; i < 4; i++) {
        if (parts[i].len > 0)
            memcpy(wr->data + wr->len, parts[i].base, parts[i].len);
        wr->len += parts[i].len;
    }
    buf_reset(&c->head);
    if (c->tls != NULL) {
        struct tls_stream io;
        int rc;

        tls_io(c, &io);
        rc = tls_stream_output(c->tls, &io, wr->data, wr->len);
        free(wr);
        return rc;
    }
    return queue_write(c, wr);
}

/* Hands a prepared write to libuv; wr is consumed either way. */
static int
queue_write(struct http_conn *c, struct wreq *wr)
{
    uv_buf_t ub;
    int rc;

    ub = uv_buf_init(wr->data, (unsigned)wr->len);
    rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &ub, 1, on_written);
    if (rc < 0) {
        free(wr);
        return rc;
    }
    c->queued += wr->len;
    if (c->state == CONN_HANDLING && !c->stalled && c->queued > c->srv->limits.write_high) {
        c->stalled = true; /* a reader that never reads must not hold its upstream forever */
        arm_timer(c, c->srv->limits.write_stall_ms);
    }
    return 0;
}

size_t
http_pending_bytes(const struct http_request *req)
{
    return req->tp->queued(req);
}

bool
http_over_high_water(const struct http_request *req)
{
    return http_pending_bytes(req) > req->srv->limits.write_high;
}

uint64_t
http_next_request_id(void)
{
    return next_request_id++;
}

void
http_server_dispatch(struct http_server *srv, struct http_request *req)
{
    srv->handler(req, srv->arg);
}

void
http_server_count_local(struct http_server *srv, int delta)
{
    srv->n_local += (size_t)delta;
}

size_t
http_server_write_high(const struct http_server *srv)
{
    return srv->limits.write_high;
}

/* ---- responses ---- */

static void http_gone(struct http_request *req);

void
http_request_gone(struct http_request *req)
{
    if (req->ended)
        return;
    log_info("req=%llu client %s went away before the response ended", (unsigned long long)req->id,
             http_request_peer(req));
    if (!req->started)
        req->status = 499; /* nginx's code for a client that closed first */
    req->ended = true;
    http_access_log(req);
    http_gone(req);
}

void
http_attach(struct http_request *req, const struct http_handler *h, void *data)
{
    req->handler = h;
    req->handler_data = data;
    req->want_drain = false;
}

void
http_detach(struct http_request *req)
{
    req->handler = NULL;
    req->handler_data = NULL;
    req->want_drain = false;
}

void
http_wait_drain(struct http_request *req)
{
    req->want_drain = req->handler != NULL && req->handler->drain != NULL;
}

void
http_drained(struct http_request *req)
{
    if (!req->want_drain || req->ended)
        return;
    req->want_drain = false;
    req->handler->drain(req, req->handler_data);
}

/* The client is gone: the handler hears it once, detached first. */
static void
http_gone(struct http_request *req)
{
    const struct http_handler *h = req->handler;
    void *data = req->handler_data;

    http_detach(req);
    if (h != NULL && h->abort != NULL)
        h->abort(req, data);
}

void
http_access_log(const struct http_request *req)
{
    struct http_server *srv = req->srv;
    double total = (double)(uv_hrtime() - req->t_start) / 1e6;
    double ttfb = req->t_first ? (double)(req->t_first - req->t_start) / 1e6 : total;
    char cost[40] = "";

    if (req->usage.cost_usd >= 0) /* a cloud provider's price of the request */
        snprintf(cost, sizeof(cost), " cost=$%.6f", req->usage.cost_usd);
    /* client= last: the fields before it are what tests and scripts already parse */
    log_info("req=%llu %s %s model=%s backend=%s status=%d bytes=%llu ttfb=%.1fms total=%.1fms%s "
             "client=%s",
             (unsigned long long)req->id, req->method_name, req->path,
             req->log_model ? req->log_model : "-", req->log_backend ? req->log_backend : "-",
             req->status, (unsigned long long)req->bytes_out, ttfb, total, cost,
             http_request_peer(req));
    if (srv->on_complete)
        srv->on_complete((struct http_request *)req);
}

static int
head_line(struct buf *b, const struct http_header *h)
{
    int rc = buf_append(b, h->name, h->name_len);

    rc |= buf_append(b, ": ", 2);
    rc |= buf_append(b, h->value, h->value_len);
    return rc | buf_append(b, "\r\n", 2);
}

/* ---- the HTTP/1.1 connection as a transport ---- */

/* Straight into c->head, which goes out with the first body bytes; no printf per line: it was
 * a tenth of a trivial proxied request's own time. */
static int
conn_head(struct http_request *req, const struct http_header *headers, size_t n_headers,
          int64_t content_length)
{
    struct http_conn *c = req->tp_ctx;
    char line[96];
    int rc, n;
    size_t mark = c->head.len;

    if (c->srv->shutting_down)
        req->keep_alive = false;
    n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", req->status,
                 http_status_text(req->status));
    rc = buf_append(&c->head, line, (size_t)n);
    for (size_t i = 0; i < n_headers; i++)
        rc |= head_line(&c->head, &headers[i]);
    for (size_t i = 0; i < req->n_extra; i++)
        rc |= head_line(&c->head, &req->extra[i]);
    if (content_length >= 0) {
        n = snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)content_length);
        rc |= buf_append(&c->head, line, (size_t)n);
    } else if (h1_is_http11(&c->h1)) {
        req->chunked = true;
        rc |= buf_append(&c->head, "Transfer-Encoding: chunked\r\n", 28);
    } else {
        req->keep_alive = false; /* HTTP/1.0: the body ends when the connection does */
    }
    if (req->keep_alive)
        rc |= buf_append(&c->head, "Connection: keep-alive\r\n\r\n", 26);
    else
        rc |= buf_append(&c->head, "Connection: close\r\n\r\n", 21);
    if (rc < 0) {
        c->head.len = mark; /* all of the head or none of it */
        return -EMSGSIZE;
    }
    return 0;
}

static int
conn_body(struct http_request *req, const char *data, size_t len)
{
    char head[24];
    int n;

    if (!req->chunked)
        return conn_write(req->tp_ctx, data, len, NULL, 0, NULL, 0);
    n = snprintf(head, sizeof(head), "%zx\r\n", len);
    return conn_write(req->tp_ctx, head, (size_t)n, data, len, "\r\n", 2);
}

static void
conn_flush(struct http_request *req)
{
    conn_write(req->tp_ctx, NULL, 0, NULL, 0, NULL, 0);
}

static void
conn_end(struct http_request *req, bool cut)
{
    struct http_conn *c = req->tp_ctx;

    if (cut) {
        conn_close(c);
        return;
    }
    if (req->chunked && req->method != HTTP_HEAD)
        conn_write(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
    else
        conn_write(c, NULL, 0, NULL, 0, NULL, 0); /* headers alone, if nothing else went */
    request_finish(c);
}

static size_t
conn_queued(const struct http_request *req)
{
    return ((const struct http_conn *)req->tp_ctx)->queued;
}

static const char *
conn_peer(const struct http_request *req)
{
    return ((const struct http_conn *)req->tp_ctx)->peer;
}

static const struct tls_conn *
conn_tls(const struct http_request *req)
{
    return ((const struct http_conn *)req->tp_ctx)->tls;
}

static const struct http_transport conn_transport = {
    conn_head, conn_body, conn_flush, conn_end, conn_queued, conn_peer, conn_tls,
};

/* ---- responses, on whatever road ---- */

int
http_stream_start(struct http_request *req, int status, const struct http_header *headers,
                  size_t n_headers, int64_t content_length)
{
    if (req->started)
        return -EALREADY;
    req->started = true;
    req->status = status;
    req->t_first = uv_hrtime();
    return req->tp->head(req, headers, n_headers, content_length);
}

int
http_stream_write(struct http_request *req, const char *data, size_t len)
{
    if (len == 0 || req->method == HTTP_HEAD)
        return 0;
    req->bytes_out += len;
    return req->tp->body(req, data, len);
}

void
http_stream_flush(struct http_request *req)
{
    req->tp->flush(req);
}

void
http_stream_end(struct http_request *req)
{
    if (req->ended)
        return;
    req->ended = true;
    http_detach(req);
    http_access_log(req);
    req->tp->end(req, false);
}

struct http_conn *
http_upgrade(struct http_request *req, const char *protocol, const struct http_upgrade_cb *cb,
             void *arg)
{
    struct http_conn *c = req->tp_ctx;
    char head[256];
    int n;

    if (req->tp != &conn_transport)
        return NULL; /* only a socket can be taken over */
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n",
                 protocol);

    conn_write(c, head, (size_t)n, NULL, 0, NULL, 0);
    req->status = 101;
    req->ended = true;
    http_access_log(req);
    body_release(c); /* the tunnel holds no request body for its whole life */
    c->state = CONN_UPGRADED;
    c->up = cb;
    c->up_arg = arg;
    uv_timer_stop(&c->timer);
    if (c->read_paused) {
        c->read_paused = false;
        read_on(c);
    }
    if (c->pending.len > 0) { /* the peer may speak first, right behind its request */
        struct buf rest = c->pending;

        buf_init(&c->pending, PENDING_MAX + READ_CHUNK);
        cb->on_data(arg, rest.data, rest.len);
        buf_cleanup(&rest);
    }
    return c;
}

int
http_conn_send(struct http_conn *c, const char *data, size_t len)
{
    return conn_write(c, data, len, NULL, 0, NULL, 0);
}

size_t
http_conn_queued(const struct http_conn *c)
{
    return c->queued;
}

bool
http_conn_over_high_water(const struct http_conn *c)
{
    return c->queued > c->srv->limits.write_high;
}

void
http_conn_close(struct http_conn *c)
{
    c->up = NULL; /* the owner is leaving: no callback back into it */
    conn_close(c);
}

void
http_add_header(struct http_request *req, const char *name, const char *value, size_t value_len)
{
    if (req->n_extra < sizeof(req->extra) / sizeof(req->extra[0]))
        req->extra[req->n_extra++] = (struct http_header){name, strlen(name), value, value_len};
}

const char *
http_request_peer(const struct http_request *req)
{
    return req->tp->peer(req);
}

const struct tls_conn *
http_conn_tls(const struct http_request *req)
{
    return req->tp->tls(req);
}

void
http_abort(struct http_request *req)
{
    if (req->ended)
        return;
    req->ended = true;
    req->keep_alive = false;
    http_detach(req);
    http_access_log(req);
    req->tp->end(req, true);
}

void
http_respond(struct http_request *req, int status, const char *content_type, const char *body,
             size_t len)
{
    struct http_header h[2] = {
        {"Content-Type", 12, content_type, strlen(content_type)},
        {"Cache-Control", 13, "no-store", 8},
    };

    if (req->started) { /* too late for a status: cut the stream so the client sees it */
        http_abort(req);
        return;
    }
    if (http_stream_start(req, status, h, 2, (int64_t)len) == 0) {
        http_stream_write(req, body, len);
    }
    http_stream_end(req);
}

void
http_respond_error(struct http_request *req, int status, const char *type, const char *fmt, ...)
{
    va_list ap;
    char *body;

    va_start(ap, fmt);
    body = http_error_json_v(status, type, fmt, ap);
    va_end(ap);
    http_respond(req, status, "application/json", body, strlen(body));
    free(body);
}

/* ---- request parsing: the h1 assembler's hooks ---- */

/* curl and others wait up to a second for "100 Continue" before sending a large body. */
static void
expect_continue(struct http_conn *c, const struct http_request *r)
{
    size_t n = 0;
    const char *v = http_header_get(r, "expect", &n);

    if (v != NULL && n == 12 && strncasecmp(v, "100-continue", 12) == 0 && h1_is_http11(&c->h1))
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0, NULL, 0);
}

/* Readies c->req for its handler: the response state the response functions and the log read
 * (the assembler filled in method, target and headers). */
static void
request_begin(struct http_conn *c)
{
    struct http_request *r = &c->req;

    r->id = next_request_id++;
    c->served = true;
    if (c->srv->shutting_down)
        r->keep_alive = false;
    r->started = r->chunked = r->ended = false;
    r->status = 0;
    r->bytes_out = 0;
    r->t_first = 0;
    http_detach(r);
    r->route = NULL;
    r->n_extra = 0;
    free(r->log_model);
    r->log_model = NULL;
    r->log_backend = NULL;
    r->key_name[0] = '\0';
    memset(&r->usage, 0, sizeof(r->usage));
    r->usage.cost_usd = -1;
}

/* Answers when the body limits cannot take rc's bytes; the request was begun. Returns -1: the
 * assembler stops, the answer says "Connection: close" and the unread body is drained while
 * the connection lingers. */
static int
refuse_body(struct http_conn *c, int rc)
{
    struct http_request *r = &c->req;
    const struct http_limits *l = &c->srv->limits;

    r->keep_alive = false;
    c->state = CONN_HANDLING;
    if (rc == -EUSERS) {
        log_warnx("req=%llu %s has %zu body bytes in flight (limits.body_bytes_per_ip %zu), "
                  "refusing",
                  (unsigned long long)r->id, c->ip, c->addr->body_bytes, l->body_per_ip);
        http_respond_error(r, 429, "rate_limit_error",
                           "too many request body bytes in flight from %s (limit %zu); wait for "
                           "your other requests to finish",
                           c->ip, l->body_per_ip);
    } else {
        log_warnx("req=%llu %zu body bytes in flight (limits.body_bytes_in_flight %zu), refusing",
                  (unsigned long long)r->id, c->srv->body_reserved, l->body_in_flight);
        http_add_header(r, "Retry-After", "1", 1);
        http_respond_error(r, 503, "server_busy",
                           "the server is reading too many request bodies at once (limit %zu "
                           "bytes); retry shortly",
                           l->body_in_flight);
    }
    return -1;
}

/* The admit callback, with the request answering "Connection: close" should it refuse. */
static bool
admit(struct http_conn *c)
{
    struct http_request *r = &c->req;
    bool keep_alive = r->keep_alive, ok;

    if (c->srv->admit == NULL)
        return true;
    r->keep_alive = false;
    c->state = CONN_HANDLING;
    ok = c->srv->admit(r, c->srv->arg);
    if (ok) {
        r->keep_alive = keep_alive;
        c->state = CONN_READING;
    }
    return ok;
}

/* Arms the timer for the next body part: request_timeout for each, and the whole body at
 * BODY_MIN_RATE past that grace. */
static void
arm_body_timer(struct http_conn *c)
{
    uint64_t now = uv_now(c->srv->loop), part = c->srv->limits.header_ms;
    uint64_t end = c->t_body + part + (uint64_t)c->req.body.len * 1000 / BODY_MIN_RATE;

    arm_timer(c, end <= now ? 0 : end - now < part ? end - now : part);
}

/* The head is complete: route, method and key are decided here, before any body byte is read
 * or "100 Continue" sent, so a client without a key never makes us hold its body. */
static int
on_head(void *arg, struct http_request *r)
{
    struct http_conn *c = arg;
    int64_t len = h1_content_length(&c->h1);

    request_begin(c);
    c->body_unread = h1_has_body(&c->h1);
    if (!admit(c))
        return -1;
    if (len > 0) {
        int rc = body_reserve(c, (size_t)len);

        if (rc < 0)
            return refuse_body(c, rc);
    }
    expect_continue(c, r);
    c->t_body = uv_now(c->srv->loop);
    arm_body_timer(c);
    return 0;
}

/* n more body bytes: a chunked body reserves as it grows. */
static int
on_body(void *arg, size_t n)
{
    struct http_conn *c = arg;
    size_t want = c->req.body.len + n;

    if (want > c->body_reserved) {
        size_t more = want - c->body_reserved;
        int rc = body_reserve(c, more < READ_CHUNK * 4 ? READ_CHUNK * 4 : more);

        if (rc < 0)
            return refuse_body(c, rc);
    }
    arm_body_timer(c);
    return 0;
}

static const struct h1_hooks conn_hooks = {on_head, on_body};

/* Readies c->req for an error answer to bytes that never became a request. */
static struct http_request *
synthetic_request(struct http_conn *c)
{
    struct http_request *r = &c->req;

    r->id = next_request_id++;
    r->method_name = "-";
    if (r->path == NULL)
        r->path = xstrdup("-");
    r->keep_alive = false;
    r->started = r->ended = r->chunked = false;
    http_detach(r);
    r->route = NULL;
    r->n_extra = 0;
    r->status = 0;
    r->bytes_out = 0;
    r->t_first = 0;
    free(r->log_model); /* not the previous request's, in the log or the metrics */
    r->log_model = NULL;
    r->log_backend = NULL;
    r->key_name[0] = '\0';
    memset(&r->usage, 0, sizeof(r->usage));
    r->usage.cost_usd = -1;
    c->state = CONN_HANDLING;
    return r;
}

/* Answers a request that could not be assembled, then closes. */
static void
reject_unparsable(struct http_conn *c)
{
    struct http_request *r;

    if (c->h1.state == H1_ANSWERED)
        return;            /* answered by a hook; the connection is closing */
    c->body_unread = true; /* the client may still be sending: linger, so it reads the answer */
    r = synthetic_request(c);
    if (c->h1.state == H1_TOO_MANY)
        http_respond_error(r, 431, "invalid_request_error", "too many request headers (limit %d)",
                           HTTP_MAX_HEADERS);
    else if (c->h1.state == H1_TOO_LARGE)
        http_respond_error(r, 431, "invalid_request_error",
                           "request headers too large (limit %zu bytes)", c->h1.header_bytes);
    else if (c->h1.state == H1_BODY_LIMIT)
        http_respond_error(r, 413, "invalid_request_error",
                           "request body too large (limit %zu bytes)", c->req.body.max);
    else
        http_respond_error(r, 400, "invalid_request_error", "malformed HTTP request: %s",
                           h1_error(&c->h1));
}

/* Parses what it can; stops at the end of a request and keeps the rest in c->pending. */
static void
conn_feed(struct http_conn *c, const char *data, size_t len)
{
    size_t n;

    if (!h1_started(&c->h1) && len > 0 && c->state == CONN_READING) {
        c->req.t_start = uv_hrtime();
        arm_timer(c, c->srv->limits.header_ms);
    }
    n = h1_feed(&c->h1, data, len);
    if (c->h1.state == H1_COMPLETE) {
        if (n < len && buf_append(&c->pending, data + n, len - n) < 0) {
            conn_close(c);
            return;
        }
        c->body_unread = false;
        c->state = CONN_HANDLING;
        uv_timer_stop(&c->timer);
        c->srv->handler(&c->req, c->srv->arg);
        return;
    }
    if (c->h1.state != H1_READING) {
        reject_unparsable(c);
        return;
    }
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;

    if (c->state != CONN_LINGERING || status < 0)
        conn_close(c); /* a lingering one closes on the client's EOF or the timer */
}

/* Closes once queued output is written (uv_close would cancel it), bounded by a timer. */
static void
flush_and_close(struct http_conn *c)
{
    if (c->state >= CONN_FLUSHING)
        return;
    if (c->tls != NULL) {
        struct buf notify;

        buf_init(&notify, 4096);
        tls_conn_close_notify(c->tls, &notify);
        if (notify.len > 0)
            queue_write(c, wreq_new(c, notify.data, notify.len));
        buf_cleanup(&notify);
    }
    c->state = c->body_unread ? CONN_LINGERING : CONN_FLUSHING;
    if (c->state == CONN_FLUSHING)
        uv_read_stop((uv_stream_t *)&c->tcp);
    else if (c->read_paused)
        read_on(c);
    arm_timer(c, c->state == CONN_LINGERING && LINGER_MS < c->srv->limits.keepalive_ms
                     ? LINGER_MS
                     : c->srv->limits.keepalive_ms);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

/* Called when a response has ended: resets for the next request or closes. Pipelined bytes
 * are parsed from a zero timer, not here, so a burst of them cannot recurse. */
static void
request_finish(struct http_conn *c)
{
    if (c->state == CONN_CLOSED) /* the client left as it ended: conn_close did the rest */
        return;
    c->state = CONN_READING;
    c->stalled = false;
    body_release(c);
    if (c->req.body.cap > READ_CHUNK) /* an idle connection keeps no large buffer */
        buf_cleanup(&c->req.body);
    if (!c->req.keep_alive) {
        flush_and_close(c);
        return;
    }
    if (c->read_paused) {
        c->read_paused = false;
        read_on(c);
    }
    h1_next(&c->h1);
    if (c->pending.len > 0) {
        c->kick = true;
        arm_timer(c, 0);
        return;
    }
    arm_timer(c, c->srv->limits.keepalive_ms);
}

/* ---- accepting and reading ---- */

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    b->base = xmalloc(READ_CHUNK);
    b->len = READ_CHUNK;
}

/* Request bytes, decrypted when the listener is TLS. */
static void
on_plain(struct http_conn *c, const char *data, size_t len)
{
    if (c->state >= CONN_FLUSHING) /* lingering: what is left of a body nobody will read */
        return;
    if (c->up != NULL) {
        if (len > 0)
            c->up->on_data(c->up_arg, data, len);
    } else if (c->state == CONN_HANDLING || c->kick) {
        buf_append(&c->pending, data, len); /* max leaves room for one read */
        if (c->pending.len >= PENDING_MAX) {
            c->read_paused = true; /* resumed when the response in flight ends */
            uv_read_stop((uv_stream_t *)&c->tcp);
        }
    } else if (len > 0) {
        conn_feed(c, data, len);
    }
}

static void
on_cipher(struct http_conn *c, const char *data, size_t len)
{
    struct tls_stream io;
    char err[256];

    tls_io(c, &io);
    if (tls_stream_input(c->tls, &io, data, len, err, sizeof(err)) < 0) {
        log_info("conn %s: %s, closing", c->peer, err);
        conn_close(c);
    }
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct http_conn *c = s->data;

    if (nread < 0)
        conn_close(c);
    else if (nread > 0 && c->tls != NULL)
        on_cipher(c, b->base, (size_t)nread);
    else if (nread > 0)
        on_plain(c, b->base, (size_t)nread);
    free(b->base);
}

static void
peer_name(struct http_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
}

/* Past the limits a connection gets its answer at once and is closed; others are unaffected. */
static bool
over_conn_limits(struct http_conn *c)
{
    const struct http_limits *l = &c->srv->limits;
    size_t same = c->addr->conns;

    if (c->tls != NULL && ((l->max_conns && c->srv->n_conns > l->max_conns) ||
                           (l->max_conns_per_ip && same > l->max_conns_per_ip))) {
        conn_close(c); /* no TLS session yet to carry an answer */
        return true;
    }
    if (l->max_conns && c->srv->n_conns > l->max_conns) {
        log_warnx("conn %s: %zu connections open (max_connections %zu), refusing", c->peer,
                  c->srv->n_conns - 1, l->max_conns);
        http_respond_error(synthetic_request(c), 503, "server_busy",
                           "too many connections (limit %zu); retry shortly", l->max_conns);
        return true;
    }
    if (l->max_conns_per_ip && same > l->max_conns_per_ip) {
        log_warnx("conn %s: %zu connections from %s (max_connections_per_ip %zu), refusing",
                  c->peer, same - 1, c->ip, l->max_conns_per_ip);
        http_respond_error(synthetic_request(c), 429, "rate_limit_error",
                           "too many connections from %s (limit %zu); reuse connections", c->ip,
                           l->max_conns_per_ip);
        return true;
    }
    return false;
}

static void
on_connection(uv_stream_t *ls, int status)
{
    struct listener *l = ls->data;
    struct http_server *srv = l->srv;
    struct http_conn *c;

    if (status < 0) {
        log_warnx("accept failed: %s", uv_strerror(status));
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->services = l->services;
    c->req.srv = srv;
    c->req.tp = &conn_transport;
    c->req.tp_ctx = c;
    c->req.services = l->services;
    buf_init(&c->pending, PENDING_MAX + READ_CHUNK);
    buf_init(&c->head, 64 * 1024);
    buf_init(&c->req.body, srv->limits.body_bytes);
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    DLIST_PUSH(srv->conns, c);
    srv->n_conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1); /* best effort: only latency depends on it */
    peer_name(c);
    c->addr = addrtab_get(srv->addrs, c->ip);
    h1_init(&c->h1, srv->limits.header_bytes, &c->req, &conn_hooks, c);
    if (l->tls && srv->tls == NULL) { /* a reload left no certificate: never plaintext here */
        log_warnx("conn %s: a TLS listener with no certificate loaded; closing", c->peer);
        conn_close(c);
        return;
    }
    if (l->tls)
        c->tls = tls_conn_new(srv->tls);
    if (over_conn_limits(c))
        return;
    arm_timer(c, srv->limits.header_ms);
    read_on(c);
}

struct http_server *
http_server_new(uv_loop_t *loop, const struct http_limits *limits, http_handler_cb handler,
                void *arg)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));

    srv->loop = loop;
    srv->limits = *limits;
    srv->handler = handler;
    srv->arg = arg;
    srv->addrs = addrtab_new();
    return srv;
}

static struct listener *
listener_new(struct http_server *srv, unsigned services, bool tls)
{
    struct listener *l = xcalloc(1, sizeof(*l));

    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    l->srv = srv;
    l->services = services;
    l->tls = tls;
    l->next = srv->listeners;
    srv->listeners = l;
    return l;
}

static int
listener_start(struct listener *l, int *bound_port)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss), rc;

    rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
    if (rc == 0)
        *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port); /* same offset for v6 */
    return rc;
}

int
http_server_listen(struct http_server *srv, const char *host, int port, unsigned services, bool tls,
                   int *bound_port)
{
    struct sockaddr_storage ss;
    struct listener *l;
    int rc;

    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return UV_EINVAL;
    l = listener_new(srv, services, tls);
    rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
    return rc == 0 ? listener_start(l, bound_port) : rc;
}

int
http_server_listen_fd(struct http_server *srv, int fd, unsigned services, bool tls, int *bound_port)
{
    struct listener *l;
    int rc, flags = fcntl(fd, F_GETFD);

    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
        return uv_translate_sys_error(errno);
    l = listener_new(srv, services, tls);
    rc = uv_tcp_open(&l->tcp, fd);
    return rc == 0 ? listener_start(l, bound_port) : rc;
}

/* host:port as the kernel writes a bound address, for comparing with one. */
static bool
same_address(const struct sockaddr_storage *ss, const char *host, int port)
{
    char a[64], b[64];
    struct sockaddr_storage want;

    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&want) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&want) != 0)
        return false;
    if (ss->ss_family != want.ss_family ||
        ((const struct sockaddr_in *)ss)->sin_port != ((struct sockaddr_in *)&want)->sin_port)
        return false;
    return uv_ip_name((const struct sockaddr *)ss, a, sizeof(a)) == 0 &&
           uv_ip_name((const struct sockaddr *)&want, b, sizeof(b)) == 0 && strcmp(a, b) == 0;
}

int
http_server_listener_fd(const struct http_server *srv, const char *host, int port)
{
    for (const struct listener *l = srv->listeners; l != NULL; l = l->next) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        uv_os_fd_t fd;

        if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) == 0 &&
            same_address(&ss, host, port) && uv_fileno((const uv_handle_t *)&l->tcp, &fd) == 0)
            return fd;
    }
    return -1;
}

static void
on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Stops accepting; idle connections close. With keep_new, a connection whose first request
 * has not come yet (or came in part) is not idle: it gets its answer, then closes. */
static void
stop_accepting(struct http_server *srv, bool keep_new)
{
    struct http_conn *c, *next;

    srv->shutting_down = true;
    while (srv->listeners) {
        struct listener *l = srv->listeners;

        srv->listeners = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    }
    for (c = srv->conns; c != NULL; c = next) {
        next = c->next;
        if (c->up != NULL)
            continue; /* taken over (a tunnel): its owner drains and closes it */
        if (c->state == CONN_HANDLING ||
            (keep_new && c->state == CONN_READING && (!c->served || h1_started(&c->h1))))
            c->req.keep_alive = false;
        else
            conn_close(c);
    }
}

void
http_server_shutdown(struct http_server *srv)
{
    stop_accepting(srv, false);
}

void
http_server_hand_off(struct http_server *srv)
{
    stop_accepting(srv, true);
}

void
http_server_set_tls(struct http_server *srv, struct tls_ctx *ctx)
{
    srv->tls = ctx;
}

void
http_server_on_admit(struct http_server *srv, http_admit_cb cb)
{
    srv->admit = cb;
}

void
http_server_on_complete(struct http_server *srv, http_request_cb cb)
{
    srv->on_complete = cb;
}

size_t
http_server_active(const struct http_server *srv)
{
    return srv->n_conns + srv->n_local;
}

/* Forcibly closes what is left; call after shutdown, before the loop's last run. */
void
http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    http_server_shutdown(srv);
    while (srv->conns)
        conn_close(srv->conns);
    addrtab_free(srv->addrs);
    free(srv);
}

const char *
http_header_get(const struct http_request *req, const char *name, size_t *len)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < req->n_headers; i++) {
        if (req->headers[i].name_len == n && strncasecmp(req->headers[i].name, name, n) == 0) {
            if (len)
                *len = req->headers[i].value_len;
            return req->headers[i].value;
        }
    }
    return NULL;
}

const char *
http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}
