/*
 * The GPU end of a tunnel: on the connection dial.c keeps, an HTTP/2 server session whose
 * streams are the server's end users' requests, each run by our own handler in-process
 * (http_local_start) within the route table's inference routes; the control stream (register,
 * load, drain); bounds on the bodies held and the answers nobody takes.
 */
#include "tunnel_client.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/version.h"
#include "core/xmalloc.h"
#include "http/relay.h"
#include "http/server.h"
#include "http/tls.h"
#include "tunnel/client_conn.h"
#include "tunnel/control.h"
#include "tunnel/h2link.h"

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

void
tconn_stream_free(struct cstream *s)
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
void
tconn_on_flushed(void *arg)
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
    json_object_set_new(msg, "version", json_string(goinfer_version));
    json_object_set_new(msg, "slots", json_integer((json_int_t)tc->conf->slots));
    if (tc->conf->allow_admin) /* said only when on: other machines' lines stay as they were */
        json_object_set_new(msg, "admin", json_true());
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

void
tunnel_client_model_status(struct tunnel_client *tc, const char *model, const char *status,
                           json_t *progress)
{
    char *line = NULL;

    for (size_t i = 0; tc != NULL && i < tc->n_dials; i++) {
        struct tconn *c = tc->dials[i].conn;

        if (c == NULL || c->state != C_H2 || c->ctl == NULL)
            continue;
        if (line == NULL)
            line = tunnel_line_model(model, status, progress);
        control_send(c, line);
    }
    free(line);
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
            tconn_bounded_wait(m.ms > (uint64_t)MAX_WAIT_MS ? MAX_WAIT_MS : (long long)m.ms);
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
        tconn_stream_free(s);
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

nghttp2_session *
tconn_session_new(struct tconn *c)
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
            tconn_fail(c, tc->stopping ? "shutting down" : "the server asked us to leave", 0);
        else if (c->ctl == NULL && uv_now(tc->loop) - c->up_at > CONTROL_WAIT_MS)
            tconn_fail(c, "the server opened no control stream", 0);
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
        if (tdial_parse_url(d, d->peer->url) < 0) {
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
        tdial_start(&tc->dials[i]);
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
            tconn_fail(c, "shutting down", 1);
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
            tconn_fail(d->conn, "shutting down", 1);
        d->retry.data = d->deadline.data = tc;
        tc->closing_handles += 2;
        uv_close((uv_handle_t *)&d->retry, on_timer_closed);
        uv_close((uv_handle_t *)&d->deadline, on_timer_closed);
    }
    tls_ctx_free(tc->tls);
    free(tc->local_key);
    uv_close((uv_handle_t *)&tc->tick, on_timer_closed);
}
