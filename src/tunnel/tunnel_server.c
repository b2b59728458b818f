#include "tunnel_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "conf/yaml.h"
#include "core/xmalloc.h"
#include "http/tls.h"
#include "tunnel/h2link.h"
#include "tunnel/proof.h"

#define MAX_STREAMS_DEFAULT 100
#define REGISTER_MAX        (1 << 20) /* the client's model list */

struct tunnel_server {
    uv_loop_t *loop;
    const struct conf_tunnel_server *conf;
    struct tlink *links;
    bool freeing;
};

/* One connected GPU machine. */
struct tlink {
    struct tunnel_server *ts;
    struct http_conn *conn; /* NULL once closed */
    struct h2link h2;
    char pin[TLS_PIN_SIZE];
    char peer[64];
    char **models; /* NULL-terminated, from the client's /v1/models */
    bool registered, closed;
    unsigned in_flight;
    struct tstream *streams;
    struct tlink *prev, *next;
};

/* One request down the tunnel: an end user's, or our own GET /v1/models (req NULL). */
struct tstream {
    struct tlink *link;
    struct http_request *req;
    int32_t id;
    int status;
    char ctype[128], cache[64];
    long long length;
    size_t unconsumed; /* received, written to a slow end user, not yet credited */
    size_t body_off;
    bool started, own;
    struct buf collect; /* our own request's answer */
    struct tstream *prev, *next;
};

static void link_close(struct tlink *l, const char *why);

/* ---- streams ---- */

static void
stream_unlink(struct tstream *s)
{
    struct tlink *l = s->link;

    if (s->prev)
        s->prev->next = s->next;
    else
        l->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (!s->own)
        l->in_flight--;
    buf_cleanup(&s->collect);
    free(s);
}

static ssize_t
read_body(nghttp2_session *session, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
          nghttp2_data_source *src, void *user)
{
    struct tstream *s = src->ptr;
    size_t left, n;

    (void)session, (void)id, (void)user;
    if (s->req == NULL) { /* the end user left: the stream is being reset */
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    left = s->req->body.len - s->body_off;
    n = left < len ? left : len;
    if (n > 0)
        memcpy(out, s->req->body.data + s->body_off, n);
    s->body_off += n;
    if (s->body_off == s->req->body.len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void
on_user_abort(struct http_request *req)
{
    struct tstream *s = req->handler_data;
    struct tlink *l = s->link;

    s->req = NULL; /* the stream's close frees it */
    nghttp2_submit_rst_stream(l->h2.session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    h2link_flush(&l->h2);
}

static void
on_user_drain(struct http_request *req)
{
    struct tstream *s = req->handler_data;
    struct tlink *l = s->link;

    if (http_over_high_water(req))
        return;
    req->on_drain = NULL;
    nghttp2_session_consume(l->h2.session, s->id, s->unconsumed);
    s->unconsumed = 0;
    h2link_flush(&l->h2);
}

static int32_t
submit(struct tlink *l, struct tstream *s, const char *method, const char *path, size_t body,
       const struct http_request *req)
{
    nghttp2_nv nv[6];
    size_t n = 0, len;
    const char *v;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};

#define NV(name, value, vlen)                                                                  \
    nv[n++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, (vlen),    \
                           NGHTTP2_NV_FLAG_NONE}
    NV(":method", method, strlen(method));
    NV(":scheme", "https", 5);
    NV(":authority", "goinfer", 7);
    NV(":path", path, strlen(path));
    if (req && (v = http_header_get(req, "content-type", &len)) != NULL)
        NV("content-type", v, len);
    if (req && (v = http_header_get(req, "accept", &len)) != NULL)
        NV("accept", v, len);
#undef NV
    return nghttp2_submit_request(l->h2.session, NULL, nv, n, body || strcmp(method, "POST") == 0 ? &prd : NULL, s);
}

static struct tstream *
stream_new(struct tlink *l, struct http_request *req)
{
    struct tstream *s = xcalloc(1, sizeof(*s));

    s->link = l;
    s->req = req;
    s->own = req == NULL;
    s->length = -1;
    buf_init(&s->collect, REGISTER_MAX);
    s->next = l->streams;
    if (l->streams)
        l->streams->prev = s;
    l->streams = s;
    if (!s->own)
        l->in_flight++;
    return s;
}

/* ---- registration: the client's models, asked over the tunnel itself ---- */

static void
registered(struct tlink *l, struct tstream *s)
{
    json_t *root = json_loadb(s->collect.data, s->collect.len, 0, NULL);
    json_t *data = json_object_get(root, "data"), *m;
    size_t i;
    struct buf names;

    buf_init(&names, 4096);
    json_array_foreach(data, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));

        if (id == NULL)
            continue;
        ylist_add(&l->models, id, strlen(id));
        buf_printf(&names, "%s%s", names.len ? ", " : "", id);
    }
    json_decref(root);
    l->registered = s->status == 200;
    if (l->registered)
        log_info("tunnel: client %s (%.19s...) registered: %s", l->peer, l->pin,
                 names.len ? buf_cstr(&names) : "no models");
    else
        log_warnx("tunnel: client %s answered %d to GET /v1/models; it gets no requests",
                  l->peer, s->status);
    buf_cleanup(&names);
}

/* ---- nghttp2 callbacks ---- */

static int
on_header(nghttp2_session *session, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct tstream *s = nghttp2_session_get_stream_user_data(session, f->hd.stream_id);

    (void)flags, (void)user;
    if (s == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0)
        s->status = atoi((const char *)value);
    else if (nlen == 12 && memcmp(name, "content-type", 12) == 0)
        snprintf(s->ctype, sizeof(s->ctype), "%.*s", (int)vlen, value);
    else if (nlen == 13 && memcmp(name, "cache-control", 13) == 0)
        snprintf(s->cache, sizeof(s->cache), "%.*s", (int)vlen, value);
    else if (nlen == 14 && memcmp(name, "content-length", 14) == 0)
        s->length = strtoll((const char *)value, NULL, 10);
    return 0;
}

static void
start_response(struct tstream *s)
{
    struct http_header h[3];
    size_t n = 0;

    if (s->ctype[0])
        h[n++] = (struct http_header){"Content-Type", 12, s->ctype, strlen(s->ctype)};
    if (s->cache[0])
        h[n++] = (struct http_header){"Cache-Control", 13, s->cache, strlen(s->cache)};
    h[n++] = (struct http_header){"X-Accel-Buffering", 17, "no", 2};
    s->started = true;
    http_stream_start(s->req, s->status, h, n, s->length);
    if (strncmp(s->ctype, "text/event-stream", 17) == 0)
        http_stream_flush(s->req); /* an event stream shows it is alive at once */
}

static int
on_frame(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct tlink *l = user;
    struct tstream *s;

    h2link_frame(&l->h2, f);
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_RESPONSE)
        return 0;
    s = nghttp2_session_get_stream_user_data(session, f->hd.stream_id);
    if (s != NULL && s->req != NULL && !s->started && s->status >= 200)
        start_response(s);
    return 0;
}

static int
on_data(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
        void *user)
{
    struct tstream *s = nghttp2_session_get_stream_user_data(session, id);

    (void)flags, (void)user;
    if (s == NULL || s->own || s->req == NULL) {
        if (s != NULL && s->own && buf_append(&s->collect, data, len) < 0)
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        nghttp2_session_consume(session, id, len);
        return 0;
    }
    if (http_stream_write(s->req, (const char *)data, len) < 0)
        return 0; /* the end user is gone: on_user_abort resets the stream */
    if (http_over_high_water(s->req)) { /* credit the window once the end user reads */
        s->unconsumed += len;
        s->req->on_drain = on_user_drain;
    } else {
        nghttp2_session_consume(session, id, len);
    }
    return 0;
}

static int
on_close(nghttp2_session *session, int32_t id, uint32_t code, void *user)
{
    struct tlink *l = user;
    struct tstream *s = nghttp2_session_get_stream_user_data(session, id);
    struct http_request *req;

    if (s == NULL)
        return 0;
    req = s->req;
    if (s->own) {
        registered(l, s);
    } else if (req != NULL) {
        req->on_abort = req->on_drain = NULL;
        if (code == NGHTTP2_NO_ERROR && s->started)
            http_stream_end(req);
        else if (s->started)
            http_abort(req);
        else
            http_respond_error(req, 502, "upstream_error",
                               "the GPU machine %s reset the request (HTTP/2 error %u: %s)",
                               l->peer, code, nghttp2_http2_strerror(code));
    }
    stream_unlink(s);
    return 0;
}

static ssize_t
send_nothing(nghttp2_session *s, const uint8_t *d, size_t n, int f, void *u)
{
    (void)s, (void)d, (void)n, (void)f, (void)u;
    return NGHTTP2_ERR_WOULDBLOCK; /* h2link sends with mem_send */
}

/* ---- the link ---- */

static int
link_send(void *arg, const char *data, size_t len)
{
    struct tlink *l = arg;

    return l->conn && http_conn_send(l->conn, data, len) == 0 ? 0 : -1;
}

static void
on_link_data(void *arg, const char *data, size_t len)
{
    struct tlink *l = arg;

    h2link_input(&l->h2, data, len);
}

static void
on_link_closed(void *arg)
{
    struct tlink *l = arg;

    l->conn = NULL; /* closing already */
    link_close(l, "the connection closed");
}

static void
on_link_dead(void *arg, const char *why)
{
    link_close(arg, why);
}

static void
on_link_freed(void *arg)
{
    struct tlink *l = arg;

    ylist_free(l->models);
    free(l);
}

static const struct http_upgrade_cb link_cb = {on_link_data, NULL, on_link_closed};

/* Every request still on the link fails cleanly; the end users not yet answered get a 502. */
static void
link_close(struct tlink *l, const char *why)
{
    struct tunnel_server *ts = l->ts;

    if (l->closed)
        return;
    l->closed = true;
    log_info("tunnel: client %s disconnected: %s", l->peer, why);
    while (l->streams != NULL) {
        struct tstream *s = l->streams;
        struct http_request *req = s->req;

        if (req != NULL) {
            req->on_abort = req->on_drain = NULL;
            if (s->started)
                http_abort(req);
            else
                http_respond_error(req, 502, "upstream_error",
                                   "the GPU machine %s went away before answering: %s", l->peer, why);
        }
        stream_unlink(s);
    }
    if (l->prev)
        l->prev->next = l->next;
    else if (ts->links == l)
        ts->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
    if (l->conn != NULL) {
        http_conn_close(l->conn);
        l->conn = NULL;
    }
    h2link_stop(&l->h2);
}

static nghttp2_session *
session_new(struct tlink *l)
{
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session *s;

    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, send_nothing);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (nghttp2_session_client_new2(&s, cb, l, opt) != 0)
        fatalx("out of memory creating an HTTP/2 session");
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return s;
}

/* ---- accepting ---- */

static bool
pin_allowed(const struct tunnel_server *ts, const char *pin)
{
    for (char **p = ts->conf->clients; p && *p; p++)
        if (strcmp(*p, pin) == 0)
            return true;
    return false;
}

/* "Goinfer proof=<base64>" */
static bool
proof_ok(struct tunnel_server *ts, struct http_request *req, const struct tls_conn *tls)
{
    size_t n;
    const char *v = http_header_get(req, "authorization", &n);

    if (v == NULL || n < 14 || strncmp(v, "Goinfer proof=", 14) != 0)
        return false;
    return tunnel_proof_ok(tls, ts->conf->token, v + 14, n - 14);
}

void
tunnel_server_accept(struct tunnel_server *ts, struct http_request *req)
{
    const struct tls_conn *tls = http_conn_tls(req);
    char pin[TLS_PIN_SIZE];
    size_t n;
    const char *up = http_header_get(req, "upgrade", &n);
    struct tlink *l;

    if (up == NULL || n != 4 || strncasecmp(up, "ptth", 4) != 0) {
        http_respond_error(req, 400, "invalid_request_error",
                           "this is the Goinfer tunnel endpoint: it needs Upgrade: ptth");
        return;
    }
    if (tls == NULL || !tls_conn_is_tunnel(tls) || tls_conn_peer_pin(tls, pin) < 0) {
        http_respond_error(req, 400, "invalid_request_error",
                           "a tunnel needs TLS with ALPN %s and a client certificate",
                           TLS_ALPN_TUNNEL);
        return;
    }
    if (!pin_allowed(ts, pin)) {
        log_warnx("tunnel: refused client %s: its key %s is not in server.clients",
                  http_request_peer(req), pin);
        http_respond_error(req, 403, "permission_error",
                           "this client's key %s is not allowed: add it to server.clients in "
                           "the server's goinfer.yml", pin);
        return;
    }
    if (!proof_ok(ts, req, tls)) {
        log_warnx("tunnel: refused client %s (%s): wrong or missing token proof",
                  http_request_peer(req), pin);
        http_respond_error(req, 401, "authentication_error",
                           "the token proof is wrong: check the client's token for this server");
        return;
    }
    for (l = ts->links; l != NULL; l = l->next)
        if (strcmp(l->pin, pin) == 0) { /* make before break: the new one replaces it */
            link_close(l, "replaced by a new connection from the same client");
            break;
        }
    l = xcalloc(1, sizeof(*l));
    l->ts = ts;
    memcpy(l->pin, pin, sizeof(pin));
    snprintf(l->peer, sizeof(l->peer), "%s", http_request_peer(req));
    l->h2 = (struct h2link){.send = link_send, .on_dead = on_link_dead, .on_closed = on_link_freed,
                            .arg = l, .ping_ms = ts->conf->ping_interval * 1000,
                            .timeout_ms = ts->conf->ping_timeout * 1000};
    l->h2.session = session_new(l);
    l->next = ts->links;
    if (ts->links)
        ts->links->prev = l;
    ts->links = l;
    l->conn = http_upgrade(req, "ptth", &link_cb, l); /* may deliver the client's preface */
    h2link_start(&l->h2, ts->loop, MAX_STREAMS_DEFAULT);
    submit(l, stream_new(l, NULL), "GET", "/v1/models", 0, NULL);
    h2link_flush(&l->h2);
}

/* ---- routing ---- */

static bool
serves(const struct tlink *l, const char *model)
{
    if (!l->registered || l->h2.dead)
        return false;
    for (char **m = l->models; m && *m; m++)
        if (strcmp(*m, model) == 0)
            return true;
    return false;
}

/* Power of two choices: two random candidates, the less loaded wins. */
static struct tlink *
pick(struct tunnel_server *ts, const char *model)
{
    struct tlink *a = NULL, *b = NULL;
    unsigned n = 0;

    for (struct tlink *l = ts->links; l != NULL; l = l->next) {
        if (!serves(l, model))
            continue;
        n++; /* reservoir sampling keeps two uniformly chosen candidates */
        if (a == NULL)
            a = l;
        else if (b == NULL)
            b = l;
        else if ((unsigned)rand() % n < 2)
            *((unsigned)rand() % 2 ? &a : &b) = l;
    }
    if (b != NULL && b->in_flight < a->in_flight)
        return b;
    return a;
}

bool
tunnel_server_forward(struct tunnel_server *ts, struct http_request *req, const char *model)
{
    struct tlink *l = ts ? pick(ts, model) : NULL;
    struct tstream *s;
    char *path;

    if (l == NULL)
        return false;
    if (l->in_flight >= nghttp2_session_get_remote_settings(l->h2.session,
                                                            NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)) {
        http_respond_error(req, 503, "overloaded",
                           "every GPU machine serving %s is busy; retry shortly", model);
        return true;
    }
    s = stream_new(l, req);
    path = req->query ? xasprintf("%s?%s", req->path, req->query) : xstrdup(req->path);
    s->id = submit(l, s, req->method_name, path, req->body.len, req);
    free(path);
    if (s->id < 0) {
        stream_unlink(s);
        http_respond_error(req, 503, "overloaded", "the tunnel to %s refused a new stream",
                           l->peer);
        return true;
    }
    req->handler_data = s;
    req->on_abort = on_user_abort;
    req->log_backend = "tunnel";
    h2link_flush(&l->h2);
    return true;
}

void
tunnel_server_models(struct tunnel_server *ts, json_t *data, json_int_t created)
{
    for (struct tlink *l = ts ? ts->links : NULL; l != NULL; l = l->next) {
        if (!l->registered)
            continue;
        for (char **m = l->models; m && *m; m++) {
            bool seen = false;
            size_t i;
            json_t *o;

            json_array_foreach(data, i, o) {
                const char *id = json_string_value(json_object_get(o, "id"));

                seen |= id != NULL && strcmp(id, *m) == 0;
            }
            if (!seen)
                json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s}", "id", *m, "object",
                                                      "model", "created", created, "owned_by",
                                                      "goinfer-tunnel"));
        }
    }
}

json_t *
tunnel_server_clients(struct tunnel_server *ts)
{
    json_t *list = json_array();

    for (struct tlink *l = ts ? ts->links : NULL; l != NULL; l = l->next) {
        json_t *models = json_array();

        for (char **m = l->models; m && *m; m++)
            json_array_append_new(models, json_string(*m));
        json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:i, s:b}", "peer", l->peer, "pin",
                                              l->pin, "models", models, "in_flight",
                                              (int)l->in_flight, "registered", l->registered));
    }
    return list;
}

struct tunnel_server *
tunnel_server_new(uv_loop_t *loop, const struct conf_tunnel_server *conf)
{
    struct tunnel_server *ts = xcalloc(1, sizeof(*ts));

    ts->loop = loop;
    ts->conf = conf;
    return ts;
}

void
tunnel_server_free(struct tunnel_server *ts)
{
    if (ts == NULL)
        return;
    while (ts->links != NULL)
        link_close(ts->links, "the server is shutting down");
    free(ts);
}
