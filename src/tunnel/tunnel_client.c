#include "tunnel_client.h"

#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "http/client.h" /* http_url_split */
#include "http/relay.h"
#include "http/server.h"
#include "http/tls.h"
#include "tunnel/control.h"
#include "tunnel/fleet.h"
#include "tunnel/h2link.h"
#include "tunnel/proof.h"

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS  60000
#define STABLE_MS       60000  /* a connection this old resets the backoff */
#define REFUSED_WAIT_MS 30000  /* identity refused: someone must fix the allowlist first */
#define MAX_WAIT_MS     300000 /* the longest Retry-After or reconnect-after honoured */
#define MAX_ADDRS       8      /* addresses of one server name dialled, each its own tunnel */
#define CONTROL_PATH    "/.goinfer/control"
#define TICK_MS         250   /* how often register and load are reconsidered */
#define CONTROL_WAIT_MS 10000 /* a server that opens no control stream in this time is odd */
#define LOAD_EVERY_MS   5000  /* a load report at least this often */
#define USER_TIMEOUT_MS 30000 /* TCP_USER_TIMEOUT: unacknowledged data this long kills it */

struct tunnel_client {
    uv_loop_t *loop;
    struct conf_tunnel_client conf_copy; /* a reload must not change what a dial points at */
    const struct conf_tunnel_client *conf;
    struct tls_ctx *tls;
    struct http_server *srv; /* runs the streams' requests, as our listeners would */
    unsigned services;
    char *local_key;
    struct tdial *dials;
    size_t n_dials;
    int closing_handles; /* at free: freed when the last timer has closed */
    tunnel_describe_cb describe;
    void *describe_arg;
    uv_timer_t tick; /* register and load reports */
    bool stopping;   /* draining for shutdown: no new streams, no reconnects */
    size_t bodies;   /* request-body bytes its streams hold, all servers together */
    size_t bodies_max;
};

/* One address of a configured server, dialled again and again. Slot 0 of each server resolves
 * its name; every further address the name has gets a slot of its own (HA behind one name). */
struct tdial {
    struct tunnel_client *tc;
    const struct conf_tunnel_peer *peer;
    char host[256];
    int port;
    struct tdial *first;          /* slot 0 of this server (itself for slot 0) */
    struct sockaddr_storage addr; /* the address this slot dials (slots past 0) */
    char addr_name[INET6_ADDRSTRLEN];
    char label[320];     /* for the log: the URL, and the address for slots past 0 */
    bool active;         /* a slot past 0 is in use while the name has that many addresses */
    uv_timer_t retry;    /* the wait before the next attempt */
    uv_timer_t deadline; /* connecting, TLS and the upgrade must be done by then */
    unsigned attempt;
    uint64_t come_back_ms; /* the server's reconnect-after, for the next wait */
    struct tconn *conn;    /* the current attempt, or NULL while waiting */
};

enum tconn_state { C_CONNECTING, C_TLS, C_UPGRADE, C_H2 };

struct tconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_getaddrinfo_t resolve;
    struct tdial *d;
    struct tls_conn *tls;
    enum tconn_state state;
    struct buf head; /* the server's answer to our upgrade */
    struct h2link h2;
    bool h2_started, closing;
    int pending; /* libuv callbacks still to come; freed at 0 */
    uint64_t up_at;
    struct cstream *streams;
    struct cstream *ctl; /* the server's control stream */
    struct buf ctl_in, ctl_out;
    char *registered;   /* the register line last sent */
    unsigned busy_sent; /* the load last reported, and when */
    uint64_t load_at;
    bool drain_asked; /* the server asked us to leave once idle */
};

/* One end user's request, run against our own listener. */
struct cstream {
    struct tconn *c;
    int32_t id;
    char method[16], ctype[128], accept[128];
    char *path;
    struct buf body, out;
    size_t body_held;         /* counted in the client's total until the stream ends (the request
                                 it runs takes the buffer over, and frees it with itself) */
    size_t out_sent;          /* bytes of out already handed to nghttp2 */
    uint64_t waiting;         /* since when out has held bytes the server did not take */
    struct http_request *req; /* while our handler answers it */
    bool started, eof, responded;
    struct cstream *prev, *next;
};

static void dial_start(struct tdial *d);
static void on_plain(struct tconn *c, const char *data, size_t len);
static void conn_fail(struct tconn *c, const char *why, uint64_t wait_ms);

/* ---- the wire: TLS over the TCP connection ---- */

static void
on_written(uv_write_t *w, int status)
{
    (void)status; /* a failed write shows up as a read error too */
    free(w);
}

static int
send_cipher(struct tconn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    uv_write_t *w;

    if (n == (int)len)
        return 0;
    n = n > 0 ? n : 0;
    w = xmalloc(sizeof(*w) + len - (size_t)n);
    memcpy((char *)(w + 1), data + n, len - (size_t)n);
    b = uv_buf_init((char *)(w + 1), (unsigned)(len - (size_t)n));
    n = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (n < 0)
        free(w); /* no callback will */
    return n < 0 ? n : 0;
}

static int
send_cipher_cb(void *arg, const char *data, size_t len)
{
    return send_cipher(arg, data, len);
}

static void on_plain(struct tconn *c, const char *data, size_t len);

static void
deliver_plain(void *arg, const char *data, size_t len)
{
    struct tconn *c = arg;

    if (!c->closing)
        on_plain(c, data, len);
}

static int
send_plain(void *arg, const char *data, size_t len)
{
    struct tconn *c = arg;
    const struct tls_stream io = {send_cipher_cb, deliver_plain, c};

    if (c->closing)
        return -EPIPE;
    return tls_stream_output(c->tls, &io, data, len);
}

/* ---- streams: a request from the server, answered by our own handler ---- */

static ssize_t
read_out(nghttp2_session *session, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
         nghttp2_data_source *src, void *user)
{
    struct cstream *s = src->ptr;
    size_t n = buf_take(&s->out, &s->out_sent, out, len);

    (void)session, (void)id, (void)user;
    if (n > 0)
        s->waiting = uv_now(s->c->d->tc->loop);
    if (s->out.len == 0 && s->eof)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

/* A body no request will read any more gives its bytes back to the total. */
static void
body_release(struct cstream *s)
{
    s->c->d->tc->bodies -= s->body_held;
    s->body_held = 0;
    buf_cleanup(&s->body);
}

/* An answer of our own (no local request): status and a JSON error body. */
static void
stream_refuse(struct cstream *s, const char *status, const char *msg)
{
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/json", 12, 16, NGHTTP2_NV_FLAG_NONE}};
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_out};
    json_t *err = json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg, "type",
                            "upstream_error", "code", (int)strtol(status, NULL, 10));
    char *body = json_dumps(err, JSON_COMPACT);

    buf_append(&s->out, body, strlen(body));
    free(body);
    json_decref(err);
    s->eof = s->responded = true;
    nghttp2_submit_response(s->c->h2.session, s->id, nv, 2, &prd);
}

static void
on_local_head(void *arg, int status, const struct http_header *h, size_t n, int64_t content_length)
{
    struct cstream *s = arg;
    nghttp2_nv nv[HTTP_RELAY_MAX + 2];
    size_t k = 0;
    char st[8], len[24];
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_out};

    snprintf(st, sizeof(st), "%d", status);
    nv[k++] =
        (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < n && k < HTTP_RELAY_MAX + 1; i++) {
        const char *name = http_relay_canonical(h[i].name, h[i].name_len); /* lower case */

        if (name != NULL)
            nv[k++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)h[i].value, h[i].name_len,
                                   h[i].value_len, NGHTTP2_NV_FLAG_NONE};
    }
    if (content_length >= 0) {
        snprintf(len, sizeof(len), "%lld", (long long)content_length);
        nv[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len),
                               NGHTTP2_NV_FLAG_NONE};
    }
    s->responded = true;
    nghttp2_submit_response(s->c->h2.session, s->id, nv, k, &prd);
    h2link_flush(&s->c->h2);
}

static int
on_local_body(void *arg, const char *data, size_t len)
{
    struct cstream *s = arg;

    if (s->out.len == s->out_sent) /* nothing was waiting: the clock starts now */
        s->waiting = uv_now(s->c->d->tc->loop);
    buf_append(&s->out, data, len);
    nghttp2_session_resume_data(s->c->h2.session, s->id);
    h2link_flush(&s->c->h2);
    return 0; /* past the high-water mark the handler waits for on_flushed */
}

static void
on_local_end(void *arg, bool cut)
{
    struct cstream *s = arg;
    nghttp2_session *session = s->c->h2.session;

    s->req = NULL;
    if (cut && !s->responded)
        stream_refuse(s, "502", "the GPU machine's Goinfer ended the request without an answer");
    else if (cut)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    else {
        s->eof = true;
        nghttp2_session_resume_data(session, s->id);
    }
    h2link_flush(&s->c->h2);
}

static size_t
on_local_queued(void *arg)
{
    struct cstream *s = arg;

    return s->out.len - s->out_sent;
}

static void
stream_run(struct cstream *s)
{
    static const struct http_sink sink = {on_local_head, on_local_body, on_local_end,
                                          on_local_queued};
    struct tunnel_client *tc = s->c->d->tc;
    struct http_header h[3];
    size_t n = 0;
    char *bearer;

    if (s->path == NULL) {
        stream_refuse(s, "400", "a request without a :path");
        h2link_flush(&s->c->h2);
        return;
    }
    bearer = tc->local_key ? xasprintf("Bearer %s", tc->local_key) : NULL;

    if (s->ctype[0])
        h[n++] = (struct http_header){"Content-Type", 12, s->ctype, strlen(s->ctype)};
    if (s->accept[0])
        h[n++] = (struct http_header){"Accept", 6, s->accept, strlen(s->accept)};
    if (bearer)
        h[n++] = (struct http_header){"Authorization", 13, bearer, strlen(bearer)};
    /* the same key check, limits and routes as on our listeners, without their sockets */
    struct http_local_opts o = {tc->services, s->method, s->path, h, n, &s->body, s->c->d->label};
    s->started = true;
    s->req = http_local_start(tc->srv, &o, &sink, s);
    free(bearer);
}

static void
stream_free(struct cstream *s)
{
    struct tconn *c = s->c;

    if (s->req != NULL) /* the end user left: llama-server stops at once */
        http_local_cancel(s->req);
    if (c->h2_started && c->h2.session != NULL)
        nghttp2_session_set_stream_user_data(c->h2.session, s->id, NULL);
    if (c->ctl == s)
        c->ctl = NULL;
    DLIST_UNLINK(c->streams, s);
    free(s->path);
    body_release(s);
    buf_cleanup(&s->out);
    free(s);
}

/* After a send: handlers waiting for room go on where the window opened. */
static void
on_flushed(void *arg)
{
    struct tconn *c = arg;

    for (struct cstream *s = c->streams; s != NULL; s = s->next)
        if (s->req != NULL)
            http_local_drained(s->req);
}

/* ---- the control stream: register and load up, drain and reconnect-after down ---- */

static unsigned
conn_busy(const struct tconn *c)
{
    unsigned n = 0;

    for (const struct cstream *s = c->streams; s != NULL; s = s->next)
        n += s != c->ctl;
    return n;
}

static ssize_t
read_control(nghttp2_session *session, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
             nghttp2_data_source *src, void *user)
{
    (void)session, (void)id, (void)flags, (void)user;
    return h2link_lines_read(&((struct tconn *)src->ptr)->ctl_out, out, len);
}

static void
control_send(struct tconn *c, const char *line)
{
    if (c->ctl != NULL && !c->closing)
        h2link_lines_send(&c->h2, &c->ctl_out, c->ctl->id, line);
}

/* {"type":"register","version","slots","models":[{"id","hot","vision"}]}, when it changed. */
static void
send_register(struct tconn *c)
{
    struct tunnel_client *tc = c->d->tc;
    json_t *msg = tc->describe(tc->describe_arg);
    char *line;

    json_object_set_new(msg, "type", json_string("register"));
    json_object_set_new(msg, "version", json_string(GOINFER_VERSION));
    json_object_set_new(msg, "slots", json_integer((json_int_t)tc->conf->slots));
    line = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(msg);
    if (c->registered != NULL && strcmp(c->registered, line) == 0) {
        free(line);
        return;
    }
    control_send(c, line);
    free(c->registered);
    c->registered = line;
}

/* {"type":"load","busy","slots","queue"}: on a change, and at least every LOAD_EVERY_MS. */
static void
send_load(struct tconn *c)
{
    uint64_t now = uv_now(c->d->tc->loop);
    unsigned busy = conn_busy(c);
    char line[96];

    if (busy == c->busy_sent && now - c->load_at < LOAD_EVERY_MS)
        return;
    tunnel_line_load(line, sizeof(line), busy, (unsigned)c->d->tc->conf->slots);
    control_send(c, line);
    c->busy_sent = busy;
    c->load_at = now;
}

/* A server's wait for us is honoured, within reason: it can't send us away for good. */
static uint64_t
bounded_wait(long long ms)
{
    return ms <= 0 ? 0 : ms > MAX_WAIT_MS ? MAX_WAIT_MS : (uint64_t)ms;
}

static void
on_control_line(void *arg, const char *line, size_t len)
{
    struct tconn *c = arg;
    struct tunnel_msg m;

    tunnel_msg_parse(&m, line, len);
    if (m.type == TUNNEL_MSG_DRAIN) {
        log_info("tunnel: %s asks us to leave once our requests are done", c->d->label);
        c->drain_asked = true;
    } else if (m.type == TUNNEL_MSG_RECONNECT_AFTER) {
        c->d->come_back_ms =
            bounded_wait(m.ms > (uint64_t)MAX_WAIT_MS ? MAX_WAIT_MS : (long long)m.ms);
    }
    tunnel_msg_cleanup(&m);
}

static void
control_input(struct tconn *c, const uint8_t *data, size_t len)
{
    if (h2link_lines_input(&c->ctl_in, data, len, on_control_line, c) < 0)
        log_warnx("tunnel: %s sent a control line over 1 MiB; dropped", c->d->label);
}

static void
control_start(struct tconn *c, struct cstream *s)
{
    nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
                       {(uint8_t *)"content-type", (uint8_t *)"application/x-ndjson", 12, 20,
                        NGHTTP2_NV_FLAG_NONE}};
    nghttp2_data_provider prd = {.source.ptr = c, .read_callback = read_control};

    c->ctl = s;
    s->responded = true;
    nghttp2_submit_response(c->h2.session, s->id, nv, 2, &prd);
    send_register(c);
    c->load_at = 0;
    send_load(c);
}

/* ---- nghttp2 server-session callbacks ---- */

static int
on_begin_headers(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct tconn *c = user;
    struct cstream *s;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    s = xcalloc(1, sizeof(*s));
    s->c = c;
    s->id = f->hd.stream_id;
    buf_init(&s->body, c->d->tc->conf->body_bytes);
    buf_init(&s->out, SIZE_MAX);
    DLIST_PUSH(c->streams, s);
    nghttp2_session_set_stream_user_data(session, s->id, s);
    return 0;
}

static int
on_header(nghttp2_session *session, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct cstream *s = nghttp2_session_get_stream_user_data(session, f->hd.stream_id);

    (void)flags, (void)user;
    if (s == NULL)
        return 0;
    if (nlen == 7 && memcmp(name, ":method", 7) == 0)
        snprintf(s->method, sizeof(s->method), "%.*s", (int)vlen, value);
    else if (nlen == 5 && memcmp(name, ":path", 5) == 0)
        s->path = xstrndup((const char *)value, vlen);
    else if (nlen == 12 && memcmp(name, "content-type", 12) == 0)
        snprintf(s->ctype, sizeof(s->ctype), "%.*s", (int)vlen, value);
    else if (nlen == 6 && memcmp(name, "accept", 6) == 0)
        snprintf(s->accept, sizeof(s->accept), "%.*s", (int)vlen, value);
    return 0;
}

/*
 * A body is held whole until its request ends. Past limits.body_bytes_in_flight for all
 * streams together, the stream that would go over is refused with 503 and its bytes let go:
 * 32 streams of 70 MiB from a server took a GPU machine to 2.1 GB.
 */
static void
body_input(struct cstream *s, const uint8_t *data, size_t len)
{
    struct tunnel_client *tc = s->c->d->tc;

    if (len > tc->bodies_max - tc->bodies) {
        log_warnx("tunnel: %s: request bodies held from servers would pass "
                  "limits.body_bytes_in_flight (%zu bytes): stream %d refused with 503",
                  s->c->d->label, tc->bodies_max, s->id);
        body_release(s);
        stream_refuse(s, "503",
                      "this GPU machine holds as many request bodies as its "
                      "limits.body_bytes_in_flight allows; retry shortly");
    } else if (buf_append(&s->body, data, len) < 0) {
        body_release(s);
        stream_refuse(s, "413",
                      "the request body is larger than this GPU machine's limits.body_bytes");
    } else {
        tc->bodies += len;
        s->body_held += len;
    }
}

static int
on_data(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
        void *user)
{
    struct cstream *s = nghttp2_session_get_stream_user_data(session, id);

    (void)flags;
    if (s != NULL && s == ((struct tconn *)user)->ctl)
        control_input(user, data, len);
    else if (s != NULL && !s->responded && !s->started)
        body_input(s, data, len);
    return 0;
}

static int
on_frame(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct tconn *c = user;
    struct cstream *s;

    h2link_frame(&c->h2, f);
    if (f->hd.type == NGHTTP2_GOAWAY)
        c->drain_asked = true; /* leave once our streams are done */
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    s = nghttp2_session_get_stream_user_data(session, f->hd.stream_id);
    if (s == NULL || s->responded || s->started)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && c->ctl == NULL && s->path != NULL &&
        strcmp(s->path, CONTROL_PATH) == 0)
        control_start(c, s);
    else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM && (c->d->tc->stopping || c->drain_asked))
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
    else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
        stream_run(s);
    return 0;
}

static int
on_close(nghttp2_session *session, int32_t id, uint32_t code, void *user)
{
    struct cstream *s = nghttp2_session_get_stream_user_data(session, id);

    struct tconn *c = user;
    bool was_control = s != NULL && s == c->ctl;

    (void)code;
    if (s != NULL)
        stream_free(s);
    if (was_control) /* from the loop: we are inside nghttp2 here */
        c->drain_asked = true;
    return 0;
}

static ssize_t
send_nothing(nghttp2_session *s, const uint8_t *d, size_t n, int f, void *u)
{
    (void)s, (void)d, (void)n, (void)f, (void)u;
    return NGHTTP2_ERR_WOULDBLOCK; /* h2link sends with mem_send */
}

static nghttp2_session *
session_new(struct tconn *c)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session *s;

    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, send_nothing);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    if (nghttp2_session_server_new(&s, cb, c) != 0)
        fatalx("out of memory creating an HTTP/2 session");
    nghttp2_session_callbacks_del(cb);
    return s;
}

/* ---- connection life ---- */

static void
conn_free_maybe(struct tconn *c)
{
    if (c->pending > 0)
        return;
    tls_conn_free(c->tls);
    buf_cleanup(&c->head);
    buf_cleanup(&c->ctl_in);
    buf_cleanup(&c->ctl_out);
    free(c->registered);
    free(c);
}

static void
on_conn_closed(uv_handle_t *h)
{
    struct tconn *c = h->data;

    c->pending--;
    conn_free_maybe(c);
}

static void
on_h2_closed(void *arg)
{
    struct tconn *c = arg;

    c->pending--;
    conn_free_maybe(c);
}

static void
on_retry(uv_timer_t *t)
{
    dial_start(t->data);
}

/* Full jitter: a random wait up to min(cap, base * 2^attempt). */
static uint64_t
backoff_ms(struct tdial *d)
{
    return fleet_backoff_ms(d->attempt++, BACKOFF_BASE_MS, BACKOFF_CAP_MS, fleet_rand_system, NULL);
}

/* Ends this attempt and schedules the next: wait_ms 0 means the backoff decides. */
static void
conn_fail(struct tconn *c, const char *why, uint64_t wait_ms)
{
    struct tdial *d = c->d;
    uint64_t now = uv_now(d->tc->loop);

    if (c->closing)
        return;
    c->closing = true;
    if (c->h2_started) { /* its last flush still sees every stream; nothing is sent after */
        c->pending++;
        h2link_stop(&c->h2);
    }
    while (c->streams != NULL)
        stream_free(c->streams);
    if (c->up_at && now - c->up_at >= STABLE_MS)
        d->attempt = 0;
    if (wait_ms == 0 && d->come_back_ms > 0)
        wait_ms = d->come_back_ms; /* the server said when */
    if (wait_ms == 0)
        wait_ms = backoff_ms(d);
    d->come_back_ms = 0;
    if (d->tc->stopping)
        log_info("tunnel: connection to %s closed: %s", d->label, why);
    else
        log_warnx("tunnel: connection to %s lost: %s; reconnecting in %llu ms", d->label, why,
                  (unsigned long long)wait_ms);
    c->pending++;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    d->conn = NULL;
    uv_timer_stop(&d->deadline);
    if (!d->tc->stopping && (d == d->first || d->active))
        uv_timer_start(&d->retry, on_retry, wait_ms, 0);
}

static void
on_h2_dead(void *arg, const char *why)
{
    conn_fail(arg, why, 0);
}

static void
send_upgrade(struct tconn *c)
{
    char pin[TLS_PIN_SIZE], proof[TUNNEL_PROOF_SIZE], req[512];
    struct tdial *d = c->d;
    int n;

    if (tls_conn_peer_pin(c->tls, pin) < 0 || strcmp(pin, d->peer->pin) != 0) {
        log_warnx("tunnel: %s presented key %s, not the pin configured for it (%s): refusing "
                  "to talk to it",
                  d->label, pin, d->peer->pin);
        conn_fail(c, "server pin mismatch", REFUSED_WAIT_MS);
        return;
    }
    if (tunnel_proof(c->tls, d->peer->token, proof) < 0) {
        conn_fail(c, "TLS exporter unavailable", 0);
        return;
    }
    n = snprintf(req, sizeof(req),
                 "GET /.well-known/goinfer-tunnel HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\n"
                 "Upgrade: ptth\r\nAuthorization: Goinfer proof=%s\r\n\r\n",
                 d->host, proof);
    c->state = C_UPGRADE;
    if (send_plain(c, req, (size_t)n) < 0)
        conn_fail(c, "write failed", 0);
}

/* Retry-After in seconds among the head's lines (head_len bytes, not the body's), in ms. */
static uint64_t
retry_after_ms(const char *head, size_t head_len)
{
    for (const char *p = head, *end = head + head_len; p != NULL && p < end;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);

        if (eol == NULL)
            break;
        p = eol + 2;
        if ((size_t)(end - p) > 12 && strncasecmp(p, "retry-after:", 12) == 0)
            return bounded_wait(strtoll(p + 12, NULL, 10) * 1000);
    }
    return 0;
}

/* The status of "HTTP/1.x SSS ...", or 0 when the line is not that. */
static int
status_of(const char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
        line[8] != ' ' || !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]))
        return 0;
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

/* The server's answer to our upgrade; on 101 the rest of the bytes are HTTP/2. */
static void
upgrade_answer(struct tconn *c, const char *data, size_t len)
{
    struct tdial *d = c->d;
    const char *end;
    int status = 0;
    size_t used;

    if (buf_append(&c->head, data, len) < 0) {
        conn_fail(c, "the server's answer to the upgrade is over 64 KiB", 0);
        return;
    }
    buf_cstr(&c->head);
    end = strstr(c->head.data, "\r\n\r\n");
    if (end == NULL)
        return;
    status = status_of(c->head.data, (size_t)(end - c->head.data));
    if (status != 101) {
        const char *body = end + 4;
        uint64_t wait = retry_after_ms(c->head.data, (size_t)(end + 2 - c->head.data));

        log_warnx("tunnel: %s refused the tunnel with %d: %.300s", d->label, status, body);
        conn_fail(c, "refused", wait ? wait : status == 401 || status == 403 ? REFUSED_WAIT_MS : 0);
        return;
    }
    used = (size_t)(end + 4 - c->head.data);
    c->state = C_H2;
    uv_timer_stop(&d->deadline);
    c->up_at = uv_now(d->tc->loop);
    c->h2 = (struct h2link){.send = send_plain,
                            .on_dead = on_h2_dead,
                            .on_closed = on_h2_closed,
                            .on_flushed = on_flushed,
                            .arg = c,
                            .ping_ms = d->tc->conf->ping_interval * 1000,
                            .timeout_ms = d->tc->conf->ping_timeout * 1000};
    c->h2.session = session_new(c);
    c->h2_started = true;
    h2link_init(&c->h2, d->tc->loop);
    h2link_start(&c->h2, (uint32_t)d->tc->conf->slots + 1); /* and the control stream */
    log_info("tunnel: connected to %s; serving its users", d->label);
    if (c->head.len > used)
        on_plain(c, c->head.data + used, c->head.len - used);
    buf_reset(&c->head);
}

static void
on_plain(struct tconn *c, const char *data, size_t len)
{
    if (c->state == C_H2) {
        h2link_input(&c->h2, data, len);
    } else if (c->state == C_UPGRADE)
        upgrade_answer(c, data, len);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char chunk[64 * 1024];

    (void)h, (void)suggested;
    *b = uv_buf_init(chunk, sizeof(chunk));
}

static void
on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct tconn *c = st->data;
    const struct tls_stream io = {send_cipher_cb, deliver_plain, c};
    char err[256];

    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "the server closed the connection" : uv_strerror((int)nread),
                  0);
        return;
    }
    if (tls_stream_input(c->tls, &io, b->base, (size_t)nread, err, sizeof(err)) < 0)
        conn_fail(c, err, 0);
    else if (c->state == C_TLS && tls_conn_ready(c->tls)) /* nothing to deliver before it */
        send_upgrade(c);
}

/* A peer that stops acknowledging what we send is dead after USER_TIMEOUT_MS, even when our
 * PINGs are stuck behind unacknowledged data. */
static void
set_user_timeout(struct tconn *c)
{
    uv_os_fd_t fd;
    unsigned ms = USER_TIMEOUT_MS;

    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct tconn *c = req->data;
    struct buf hello;

    c->pending--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_fail(c, uv_strerror(status), 0);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1); /* best effort: only latency depends on it */
    set_user_timeout(c);
    status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (status < 0) {
        conn_fail(c, uv_strerror(status), 0);
        return;
    }
    c->tls = tls_conn_new_client(c->d->tc->tls, c->d->host);
    c->state = C_TLS;
    buf_init(&hello, SIZE_MAX);
    if (tls_conn_start(c->tls, &hello) < 0 || send_cipher(c, hello.data, hello.len) < 0)
        conn_fail(c, "TLS handshake could not start", 0);
    buf_cleanup(&hello);
}

static void
connect_to(struct tconn *c, const struct sockaddr *addr)
{
    c->pending++;
    if (uv_tcp_connect(&c->connect, &c->tcp, addr, on_connected) < 0) {
        c->pending--;
        conn_fail(c, "connect failed", 0);
    }
}

/* The name's other addresses (after the first, which slot 0 dials) go to slots 1 and up: a
 * new address starts a tunnel, a changed one is dialled at its slot's next reconnect, and a
 * slot whose address is gone ends with its connection. */
static void
spread_addresses(struct tdial *first, const struct addrinfo *ai)
{
    size_t k = 1;

    for (; ai != NULL && k < MAX_ADDRS; ai = ai->ai_next, k++) {
        struct tdial *d = first + k;
        bool was = d->active;

        memcpy(&d->addr, ai->ai_addr, ai->ai_addrlen);
        uv_ip_name(ai->ai_addr, d->addr_name, sizeof(d->addr_name));
        snprintf(d->label, sizeof(d->label), "%s (%s)", first->peer->url, d->addr_name);
        d->active = true;
        if (!was && !d->tc->stopping) {
            log_info("tunnel: %s has another address, %s: dialling it too", first->peer->url,
                     d->addr_name);
            dial_start(d);
        }
    }
    for (; k < MAX_ADDRS; k++)
        first[k].active = false;
}

static void
on_resolved(uv_getaddrinfo_t *r, int status, struct addrinfo *res)
{
    struct tconn *c = r->data;

    c->pending--;
    if (c->closing) {
        uv_freeaddrinfo(res);
        conn_free_maybe(c);
        return;
    }
    if (status < 0 || res == NULL) {
        conn_fail(c, uv_strerror(status), 0);
    } else {
        spread_addresses(c->d, res->ai_next);
        connect_to(c, res->ai_addr);
    }
    uv_freeaddrinfo(res);
}

/* Connecting, TLS and the upgrade must be done within ping_timeout, like a PING's answer:
 * a server that takes the connection and says nothing would hold us forever. */
static void
on_dial_timeout(uv_timer_t *t)
{
    struct tdial *d = t->data;
    char why[96];

    if (d->conn == NULL || d->conn->state == C_H2)
        return;
    snprintf(why, sizeof(why), "no answer within %llu ms",
             (unsigned long long)d->tc->conf->ping_timeout * 1000);
    conn_fail(d->conn, why, 0);
}

static void
dial_start(struct tdial *d)
{
    struct tconn *c = xcalloc(1, sizeof(*c));
    char port[8];

    c->d = d;
    d->conn = c;
    buf_init(&c->head, 64 * 1024);
    buf_init(&c->ctl_in, 1 << 20);
    buf_init(&c->ctl_out, SIZE_MAX);
    uv_tcp_init(d->tc->loop, &c->tcp);
    c->tcp.data = c->connect.data = c->resolve.data = c;
    uv_timer_start(&d->deadline, on_dial_timeout, d->tc->conf->ping_timeout * 1000, 0);
    if (d != d->first) {
        connect_to(c, (struct sockaddr *)&d->addr);
        return;
    }
    snprintf(port, sizeof(port), "%d", d->port);
    c->pending++;
    if (uv_getaddrinfo(d->tc->loop, &c->resolve, on_resolved, d->host, port,
                       &(struct addrinfo){.ai_socktype = SOCK_STREAM}) < 0) {
        c->pending--;
        conn_fail(c, "cannot resolve", 0);
    }
}

/* https://host[:port][/...] */
static int
parse_url(struct tdial *d, const char *url)
{
    const char *path;

    return strncmp(url, "https://", 8) == 0
               ? http_url_split(url, d->host, sizeof(d->host), &d->port, &path)
               : -1;
}

/* Reports, and the end of connections the server asked us to leave (once idle). */
/*
 * A server that takes nothing of an answer holds a llama-server slot: as a listener cuts a
 * client that reads nothing (limits.write_stall_timeout), the stream is reset, and its
 * request cancelled as the stream closes.
 */
static void
drop_stalled(struct tconn *c, uint64_t now)
{
    uint64_t limit = c->d->tc->conf->stall_ms;
    bool reset = false;

    for (struct cstream *s = c->streams; s != NULL && limit > 0; s = s->next) {
        if (s->req == NULL || s->out.len == s->out_sent || now - s->waiting < limit)
            continue;
        log_info("tunnel: %s took nothing of stream %d's answer for %llu ms; dropped", c->d->label,
                 s->id, (unsigned long long)limit);
        nghttp2_submit_rst_stream(c->h2.session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        s->waiting = now; /* once */
        reset = true;
    }
    if (reset)
        h2link_flush(&c->h2);
}

static void
on_tick(uv_timer_t *t)
{
    struct tunnel_client *tc = t->data;

    for (size_t i = 0; i < tc->n_dials; i++) {
        struct tconn *c = tc->dials[i].conn;

        if (c == NULL || c->state != C_H2 || c->closing)
            continue;
        if (c->ctl != NULL && !tc->stopping) {
            send_register(c);
            send_load(c);
        }
        drop_stalled(c, uv_now(tc->loop));
        if ((c->drain_asked || tc->stopping) && conn_busy(c) == 0)
            conn_fail(c, tc->stopping ? "shutting down" : "the server asked us to leave", 0);
        else if (c->ctl == NULL && uv_now(tc->loop) - c->up_at > CONTROL_WAIT_MS)
            conn_fail(c, "the server opened no control stream", 0);
    }
}

struct tunnel_client *
tunnel_client_new(uv_loop_t *loop, const struct conf_tunnel_client *conf, struct http_server *srv,
                  unsigned services, const char *local_key, tunnel_describe_cb describe,
                  void *describe_arg, char *err, size_t errlen)
{
    struct tunnel_client *tc = xcalloc(1, sizeof(*tc));

    tc->loop = loop;
    tc->conf_copy = *conf;
    for (size_t i = 0; i < conf->n_servers; i++)
        tc->conf_copy.servers[i] =
            (struct conf_tunnel_peer){xstrdup(conf->servers[i].url), xstrdup(conf->servers[i].pin),
                                      xstrdup(conf->servers[i].token)};
    tc->conf_copy.cert = tc->conf_copy.key = NULL; /* read once, below */
    tc->conf = &tc->conf_copy;
    uv_timer_init(loop, &tc->tick); /* first: tunnel_client_free closes it */
    tc->tick.data = tc;
    tc->describe = describe;
    tc->describe_arg = describe_arg;
    tc->tls = tls_client_ctx_new(conf->cert, conf->key, err, errlen);
    if (tc->tls == NULL) {
        tunnel_client_free(tc);
        return NULL;
    }
    tc->srv = srv;
    tc->services = services;
    /* never below one largest body, or such a request could never be taken */
    tc->bodies_max =
        conf->body_in_flight > conf->body_bytes ? conf->body_in_flight : conf->body_bytes;
    tc->local_key = local_key ? xstrdup(local_key) : NULL;
    tc->dials = xcalloc(conf->n_servers * MAX_ADDRS, sizeof(*tc->dials));
    tc->n_dials = conf->n_servers * MAX_ADDRS;
    uv_timer_start(&tc->tick, on_tick, TICK_MS, TICK_MS);
    for (size_t i = 0; i < tc->n_dials; i++) {
        struct tdial *d = &tc->dials[i];

        d->tc = tc;
        d->first = &tc->dials[i - i % MAX_ADDRS];
        d->peer = &tc->conf_copy.servers[i / MAX_ADDRS];
        if (parse_url(d, d->peer->url) < 0) {
            snprintf(err, errlen, "client.servers: bad url %s (https://host:port)", d->peer->url);
            tunnel_client_free(tc);
            return NULL;
        }
        snprintf(d->label, sizeof(d->label), "%s", d->peer->url);
        uv_timer_init(loop, &d->retry);
        uv_timer_init(loop, &d->deadline);
        d->retry.data = d->deadline.data = d;
    }
    for (size_t i = 0; i < tc->n_dials; i += MAX_ADDRS)
        dial_start(&tc->dials[i]);
    return tc;
}

/* The timers close in any order: the last one frees the client. */
static void
on_timer_closed(uv_handle_t *h)
{
    struct tunnel_client *tc = h->data;

    if (--tc->closing_handles > 0)
        return;
    tunnelconf_cleanup(&(struct conf_tunnel_server){0}, &tc->conf_copy);
    free(tc->dials);
    free(tc);
}

void
tunnel_client_drain(struct tunnel_client *tc)
{
    nghttp2_settings_entry none = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 0};

    if (tc == NULL)
        return;
    tc->stopping = true;
    for (size_t i = 0; i < tc->n_dials; i++) {
        struct tconn *c = tc->dials[i].conn;

        uv_timer_stop(&tc->dials[i].retry);
        uv_timer_stop(&tc->dials[i].deadline);
        if (c == NULL || c->closing)
            continue;
        if (c->state != C_H2) {
            conn_fail(c, "shutting down", 1);
            continue;
        }
        control_send(c, "{\"type\":\"draining\"}");
        nghttp2_submit_settings(c->h2.session, NGHTTP2_FLAG_NONE, &none, 1);
        h2link_flush(&c->h2);
    }
}

void
tunnel_client_free(struct tunnel_client *tc)
{
    if (tc == NULL)
        return;
    tc->stopping = true;
    tc->closing_handles = 1;
    for (size_t i = 0; i < tc->n_dials; i++) {
        struct tdial *d = &tc->dials[i];

        if (d->retry.loop == NULL)
            continue; /* never started */
        if (d->conn != NULL)
            conn_fail(d->conn, "shutting down", 1);
        d->retry.data = d->deadline.data = tc;
        tc->closing_handles += 2;
        uv_close((uv_handle_t *)&d->retry, on_timer_closed);
        uv_close((uv_handle_t *)&d->deadline, on_timer_closed);
    }
    tls_ctx_free(tc->tls);
    free(tc->local_key);
    uv_close((uv_handle_t *)&tc->tick, on_timer_closed);
}
