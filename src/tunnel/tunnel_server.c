#include "tunnel_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/list.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/relay.h"
#include "http/tls.h"
#include "http/usage.h"
#include "tunnel/fleet.h"
#include "tunnel/h2link.h"
#include "tunnel/proof.h"

#define MAX_STREAMS_DEFAULT 100
#define CONTROL_MAX         (1 << 20) /* one control line, at most */
#define QUEUE_WAIT_MS       30000     /* a queued request waits this long for a free client */
#define CONTROL_PATH        "/.goinfer/control"
#define NAMES_LOGGED        16 /* model names in a registration's log line; then "and N more" */

struct tunnel_server {
    uv_loop_t *loop;
    const struct conf_tunnel_server *conf;
    struct tlink *links;
    struct waiter *queue, **queue_tail; /* requests waiting for a free client, oldest first */
    size_t queued;
    uv_timer_t queue_timer;
    bool draining;
    json_t *fleet;            /* model name -> how many registered clients serve it */
    struct buf listing;       /* tunnel_server_models_json's answer, kept while it holds */
    struct buf listing_key;   /* created and the hidden names the listing was made for */
    bool listing_stale;       /* a name came or went since */
    struct fleet_cand *cands; /* pick's scratch, one per link */
    size_t n_cands;
    struct tunnel_watch *watches; /* told of the clients' model loads (/models/sse) */
    int dispatching;              /* unwatched entries wait for the dispatch to end */
};

struct tunnel_watch {
    struct tunnel_server *ts;
    tunnel_model_cb cb;
    void *arg;
    bool dead;
    struct tunnel_watch *prev, *next;
};

/* An end user's request waiting for a client with a free slot. */
struct waiter {
    struct http_request *req;
    char model[TUNNEL_MODEL_ID_MAX + 1]; /* what it asks for (no longer can be served) */
    bool vision;
    uint64_t since;
    struct waiter *next;
};

/* One connected GPU machine. */
struct tlink {
    struct tunnel_server *ts;
    struct http_conn *conn; /* NULL once closed */
    struct h2link h2;
    char pin[TLS_PIN_SIZE];
    char peer[64];
    struct tunnel_model *models; /* from the client's register line */
    size_t n_models;
    json_t *index;        /* model name -> its position in models */
    size_t over, bad_id;  /* what its registration left out, as last logged */
    unsigned slots, busy; /* its admission limit and its load, as it reports them */
    char version[64];
    bool registered, closed, draining;
    bool admin;          /* it lets us load and unload its models (its client.allow_admin) */
    unsigned in_flight;  /* our streams on it now */
    struct tstream *ctl; /* the control stream (NDJSON both ways) */
    struct buf ctl_in, ctl_out;
    struct tstream *streams;
    struct tlink *prev, *next;
};

/* One request down the tunnel: an end user's, or the control stream (own, req NULL). */
struct tstream {
    struct tlink *link;
    struct http_request *req;
    int32_t id;
    int status;
    struct http_relay_head head; /* the response headers that pass */
    long long length;
    size_t unconsumed; /* received, written to a slow end user, not yet credited */
    size_t body_off;
    bool started, own;
    unsigned tries; /* clients tried for it: a retry only while no byte reached the user */
    char model[TUNNEL_MODEL_ID_MAX + 1]; /* what its request asks for, for a retry */
    bool vision;                         /* it carries images (found once: bodies can be large) */
    uint64_t heard; /* loop time of the last frame its GPU machine sent about it */
    struct tstream *prev, *next;
};

static void link_close(struct tlink *l, const char *why);

/* ---- streams ---- */

/* nghttp2 forgets the stream's pointer, and gets back the window its unread bytes held. */
static void
stream_unlink(struct tstream *s)
{
    struct tlink *l = s->link;

    if (l->h2.session != NULL && s->id > 0) {
        nghttp2_session_set_stream_user_data(l->h2.session, s->id, NULL);
        if (s->unconsumed > 0)
            nghttp2_session_consume_connection(l->h2.session, s->unconsumed);
    }
    DLIST_UNLINK(l->streams, s);
    if (!s->own)
        l->in_flight--;
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
on_user_abort(struct http_request *req, void *data)
{
    struct tstream *s = data;
    struct tlink *l = s->link;

    (void)req;
    s->req = NULL; /* the stream's close frees it */
    nghttp2_session_consume(l->h2.session, s->id, s->unconsumed);
    s->unconsumed = 0;
    nghttp2_submit_rst_stream(l->h2.session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    h2link_flush(&l->h2);
}

static void
on_user_drain(struct http_request *req, void *data)
{
    struct tstream *s = data;
    struct tlink *l = s->link;

    (void)req;
    nghttp2_session_consume(l->h2.session, s->id, s->unconsumed);
    s->unconsumed = 0;
    s->heard = uv_now(l->ts->loop); /* its silence until now was our end user's doing */
    h2link_flush(&l->h2);
}

static const struct http_handler user_handler = {on_user_abort, on_user_drain};

static int32_t
submit(struct tlink *l, struct tstream *s, const char *method, const char *path, size_t body,
       const struct http_request *req)
{
    nghttp2_nv nv[6];
    size_t n = 0, len;
    const char *v;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};

#define NV(name, value, vlen)                                                                      \
    nv[n++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, (vlen),        \
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
    return nghttp2_submit_request(l->h2.session, NULL, nv, n,
                                  body || strcmp(method, "POST") == 0 ? &prd : NULL, s);
}

static struct tstream *
stream_new(struct tlink *l, struct http_request *req)
{
    struct tstream *s = xcalloc(1, sizeof(*s));

    s->link = l;
    s->req = req;
    s->own = req == NULL;
    s->length = -1;
    DLIST_PUSH(l->streams, s);
    if (!s->own)
        l->in_flight++;
    return s;
}

/* ---- the control stream: NDJSON lines both ways ---- */

static void dispatch_queue(struct tunnel_server *ts);

/* Counts each of models once more (delta 1) or once less (-1) in the fleet's set; a name
 * that comes or goes makes the cached listing stale. */
static void
fleet_count(struct tunnel_server *ts, const struct tunnel_model *models, size_t n, int delta)
{
    for (size_t i = 0; i < n; i++) {
        json_t *have = json_object_get(ts->fleet, models[i].id);
        json_int_t count = (have ? json_integer_value(have) : 0) + delta;

        if (have != NULL && count > 0) {
            json_integer_set(have, count);
            continue;
        }
        if (count > 0)
            json_object_set_new(ts->fleet, models[i].id, json_integer(count));
        else
            json_object_del(ts->fleet, models[i].id);
        ts->listing_stale = true;
    }
}

static void
models_free(struct tunnel_model *models, size_t n, json_t *index)
{
    for (size_t i = 0; i < n; i++) {
        free(models[i].id);
        json_decref(models[i].progress);
    }
    free(models);
    json_decref(index);
}

/* Leaves the fleet: its models are no longer listed or routed to. */
static void
link_unregister(struct tlink *l)
{
    if (l->registered)
        fleet_count(l->ts, l->models, l->n_models, -1);
    l->registered = false;
}

/* "a (hot), b, c and 97 more": a registration's log line stays short. */
static void
names_line(struct buf *out, const struct tunnel_model *models, size_t n)
{
    for (size_t i = 0; i < n && i < NAMES_LOGGED; i++)
        buf_printf(out, "%s%s%s", i ? ", " : "", models[i].id, models[i].hot ? " (hot)" : "");
    if (n > NAMES_LOGGED)
        buf_printf(out, " and %zu more", n - NAMES_LOGGED);
    if (n == 0)
        buf_printf(out, "no models");
}

/* What a registration left out is logged when it changes, not at every re-registration. */
static void
log_left_out(struct tlink *l, const struct tunnel_msg *m)
{
    if (m->over > 0 && m->over != l->over)
        log_warnx("tunnel: client %s registered %zu models, over the %d allowed: the first %d "
                  "are kept",
                  l->peer, m->n_models + m->over, TUNNEL_MAX_MODELS, TUNNEL_MAX_MODELS);
    if (m->bad_id > 0 && m->bad_id != l->bad_id)
        log_warnx("tunnel: client %s: %zu model names refused (empty, over %d bytes or with "
                  "control characters)",
                  l->peer, m->bad_id, TUNNEL_MODEL_ID_MAX);
    l->over = m->over;
    l->bad_id = m->bad_id;
}

static const struct tunnel_model *find_model(const struct tlink *l, const char *model);

/* Whether the models' state the listing shows (loaded, vision) differs from what l had. */
static bool
state_changed(const struct tlink *l, const struct tunnel_msg *m)
{
    if (!l->registered || m->n_models != l->n_models)
        return true;
    for (size_t i = 0; i < m->n_models; i++) {
        const struct tunnel_model *was = find_model(l, m->models[i].id);

        if (was == NULL || was->hot != m->models[i].hot || was->vision != m->models[i].vision)
            return true;
    }
    return false;
}

/* Takes the models of m. The new names are counted before the old ones are let go; the cached
 * listing is rebuilt when a name comes or goes, or a model loads or unloads. */
static void
on_register(struct tlink *l, struct tunnel_msg *m)
{
    struct tunnel_model *old = l->models;
    size_t n_old = l->n_models;
    json_t *old_index = l->index;
    struct buf names;

    log_left_out(l, m);
    if (state_changed(l, m))
        l->ts->listing_stale = true;
    fleet_count(l->ts, m->models, m->n_models, 1);
    if (l->registered)
        fleet_count(l->ts, old, n_old, -1);
    for (size_t i = 0; old_index != NULL && i < m->n_models; i++) { /* loads go on */
        json_t *at = json_object_get(old_index, m->models[i].id);

        if (at != NULL && !m->models[i].hot) {
            m->models[i].progress = old[json_integer_value(at)].progress;
            old[json_integer_value(at)].progress = NULL;
        }
    }
    models_free(old, n_old, old_index);
    l->models = m->models;
    l->n_models = m->n_models;
    l->index = m->index;
    m->models = NULL, m->n_models = 0, m->index = NULL;
    l->slots = m->slots;
    l->admin = m->admin;
    memcpy(l->version, m->version, sizeof(l->version));
    if (!l->registered) {
        buf_init(&names, 4096);
        names_line(&names, l->models, l->n_models);
        log_info("tunnel: client %s (%.19s...) registered: %s; %u slots, version %s", l->peer,
                 l->pin, buf_cstr(&names), l->slots, l->version);
        buf_cleanup(&names);
    }
    l->registered = true;
}

static void
watches_sweep(struct tunnel_server *ts)
{
    struct tunnel_watch *w = ts->watches, *next;

    for (; w != NULL; w = next) {
        next = w->next;
        if (w->dead) {
            DLIST_UNLINK(ts->watches, w);
            free(w);
        }
    }
}

struct tunnel_watch *
tunnel_server_watch(struct tunnel_server *ts, tunnel_model_cb cb, void *arg)
{
    struct tunnel_watch *w;

    if (ts == NULL)
        return NULL;
    w = xcalloc(1, sizeof(*w));
    w->ts = ts;
    w->cb = cb;
    w->arg = arg;
    DLIST_PUSH(ts->watches, w);
    return w;
}

void
tunnel_server_unwatch(struct tunnel_watch *w)
{
    if (w == NULL)
        return;
    w->dead = true;
    if (w->ts->dispatching == 0)
        watches_sweep(w->ts);
}

static void
tell_watches(struct tunnel_server *ts, const struct tunnel_model *tm, bool loading)
{
    ts->dispatching++;
    for (struct tunnel_watch *w = ts->watches; w != NULL; w = w->next)
        if (!w->dead)
            w->cb(tm->id,
                  loading   ? "loading"
                  : tm->hot ? "loaded"
                            : "unloaded",
                  tm->progress != NULL && json_object_size(tm->progress) > 0 ? tm->progress : NULL,
                  w->arg);
    if (--ts->dispatching == 0)
        watches_sweep(ts);
}

/* One of its registered models loads (progress kept for /running), or no longer does. */
static void
on_model(struct tlink *l, struct tunnel_msg *m)
{
    json_t *at = m->model ? json_object_get(l->index, m->model) : NULL;
    struct tunnel_model *tm;

    if (at == NULL) /* not a model it registered: nothing to keep */
        return;
    tm = &l->models[json_integer_value(at)];
    if ((tm->progress != NULL) != m->loading) /* a load began or ended: the listing says so */
        l->ts->listing_stale = true;
    json_decref(tm->progress);
    tm->progress = NULL;
    if (m->loading)
        tm->progress = m->progress ? m->progress : json_object();
    m->progress = NULL;
    if (!m->loading) /* what its next registration will say */
        tm->hot = m->loaded;
    tell_watches(l->ts, tm, m->loading);
}

static void
on_control_line(void *arg, const char *line, size_t len)
{
    struct tlink *l = arg;
    struct tunnel_msg m;

    tunnel_msg_parse(&m, line, len);
    if (m.type == TUNNEL_MSG_INVALID) {
        log_warnx("tunnel: client %s sent a control line that is not a JSON message; ignored",
                  l->peer);
    } else if (m.type == TUNNEL_MSG_REGISTER && !l->closed) {
        on_register(l, &m);
    } else if (m.type == TUNNEL_MSG_LOAD) {
        l->busy = m.busy;
    } else if (m.type == TUNNEL_MSG_MODEL && l->registered) {
        on_model(l, &m);
    } else if (m.type == TUNNEL_MSG_DRAINING) {
        log_info("tunnel: client %s is draining: no new requests go to it", l->peer);
        l->draining = true;
    }
    tunnel_msg_cleanup(&m);
    dispatch_queue(l->ts); /* a register or a lighter load may free a slot */
}

static void
control_input(struct tlink *l, const uint8_t *data, size_t len)
{
    if (h2link_lines_input(&l->ctl_in, data, len, on_control_line, l) < 0)
        nghttp2_submit_rst_stream(l->h2.session, NGHTTP2_FLAG_NONE, l->ctl->id,
                                  NGHTTP2_ENHANCE_YOUR_CALM);
}

/* Our side of the control stream: lines queued in ctl_out, sent as the request body. */
static ssize_t
read_control(nghttp2_session *session, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
             nghttp2_data_source *src, void *user)
{
    (void)session, (void)id, (void)flags, (void)user;
    return h2link_lines_read(&((struct tlink *)src->ptr)->ctl_out, out, len);
}

static void
control_send(struct tlink *l, const char *line)
{
    if (l->ctl != NULL && !l->closed)
        h2link_lines_send(&l->h2, &l->ctl_out, l->ctl->id, line);
}

static void
control_open(struct tlink *l)
{
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)"goinfer", 10, 7, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)CONTROL_PATH, 5, sizeof(CONTROL_PATH) - 1,
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/x-ndjson", 12, 20,
         NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd = {.source.ptr = l, .read_callback = read_control};

    l->ctl = stream_new(l, NULL);
    l->ctl->id = nghttp2_submit_request(l->h2.session, NULL, nv, 5, &prd, l->ctl);
}

/* ---- nghttp2 callbacks ---- */

/* Each header block before the answer starts afresh: what an interim (1xx) block said is not
 * the final answer's. */
static int
on_begin_headers(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct tstream *s = nghttp2_session_get_stream_user_data(session, f->hd.stream_id);

    (void)user;
    if (s != NULL && f->hd.type == NGHTTP2_HEADERS && !s->started) {
        s->status = 0;
        http_relay_head_reset(&s->head);
        s->length = -1;
    }
    return 0;
}

static int
on_header(nghttp2_session *session, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct tstream *s = nghttp2_session_get_stream_user_data(session, f->hd.stream_id);

    (void)flags, (void)user;
    if (s == NULL || f->hd.type != NGHTTP2_HEADERS || s->started) /* started: trailers */
        return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0)
        s->status = (int)strtol((const char *)value, NULL, 10);
    else if (nlen == 14 && memcmp(name, "content-length", 14) == 0)
        s->length = strtoll((const char *)value, NULL, 10);
    else
        http_relay_head_add(&s->head, (const char *)name, nlen, (const char *)value, vlen);
    return 0;
}

static void
start_response(struct tstream *s)
{
    s->started = true;
    http_relay_start(s->req, s->status, s->head.h, s->head.n, s->length);
}

static int
on_frame(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct tlink *l = user;
    struct tstream *s;

    h2link_frame(&l->h2, f);
    if (f->hd.type == NGHTTP2_GOAWAY)
        l->draining = true; /* it takes no new streams */
    s = f->hd.stream_id > 0 ? nghttp2_session_get_stream_user_data(session, f->hd.stream_id) : NULL;
    if (s != NULL) /* headers, body, or window for the body we upload: it is alive */
        s->heard = uv_now(l->ts->loop);
    /* After interim answers (1xx), nghttp2 files the final one under HCAT_HEADERS. */
    if (f->hd.type != NGHTTP2_HEADERS ||
        (f->headers.cat != NGHTTP2_HCAT_RESPONSE && f->headers.cat != NGHTTP2_HCAT_HEADERS))
        return 0;
    if (s == NULL || s->started || s->status < 200)
        return 0; /* trailers, or an interim answer: the final one follows */
    if (s == l->ctl && s->status != 200)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    else if (s != l->ctl && s->status > 599) /* not an HTTP status: no byte of it passes */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
    else if (s->req != NULL)
        start_response(s);
    return 0;
}

static int
on_data(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
        void *user)
{
    struct tlink *l = user;
    struct tstream *s = nghttp2_session_get_stream_user_data(session, id);
    double predicted_n;

    (void)flags;
    if (s == NULL || s->req == NULL || !s->started) {
        if (s != NULL && s == l->ctl)
            control_input(l, data, len);
        else if (s != NULL && s->req != NULL) /* a body before the final headers: never raw */
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
        nghttp2_session_consume(session, id, len);
        return 0;
    }
    /* the GPU machine relays llama-server's answer as is: its usage settles virtual keys */
    http_usage_scan(&s->req->usage, (const char *)data, len, &predicted_n);
    if (http_stream_write(s->req, (const char *)data, len) < 0) {
        nghttp2_session_consume(session, id, len); /* the user is gone: on_user_abort resets */
        return 0;
    }
    if (http_over_high_water(s->req)) { /* credit the window once the end user reads */
        s->unconsumed += len;
        http_wait_drain(s->req);
    } else {
        nghttp2_session_consume(session, id, len);
    }
    return 0;
}

static bool forward_to(struct tunnel_server *ts, struct http_request *req, const char *model,
                       unsigned tries, bool vision);

/* A request no byte of which reached its end user may try another client. */
static void
retry_or_fail(struct tlink *l, struct tstream *s, const char *why)
{
    struct http_request *req = s->req;

    http_detach(req); /* another client's stream may take it */
    if (s->started) {
        http_abort(req);
        return;
    }
    if (s->tries < 2 && forward_to(l->ts, req, s->model, s->tries + 1, s->vision)) {
        log_info("req=%llu: the GPU machine %s failed before answering (%s); retried on another",
                 (unsigned long long)req->id, l->peer, why);
        return;
    }
    http_respond_error(req, 502, "upstream_error", "the GPU machine %s failed before answering: %s",
                       l->peer, why);
}

static int
on_close(nghttp2_session *session, int32_t id, uint32_t code, void *user)
{
    struct tlink *l = user;
    struct tstream *s = nghttp2_session_get_stream_user_data(session, id);
    char why[96];

    if (s == NULL)
        return 0;
    if (s == l->ctl) { /* inside nghttp2: the link closes from the loop */
        l->ctl = NULL;
        stream_unlink(s);
        h2link_fail(&l->h2, "its control stream ended");
        return 0;
    }
    if (s->req != NULL && code == NGHTTP2_NO_ERROR && s->started) {
        http_stream_end(s->req);
    } else if (s->req != NULL) {
        snprintf(why, sizeof(why), "stream reset with %s", nghttp2_http2_strerror(code));
        retry_or_fail(l, s, why);
    }
    stream_unlink(s);
    dispatch_queue(l->ts);
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

    models_free(l->models, l->n_models, l->index);
    buf_cleanup(&l->ctl_in);
    buf_cleanup(&l->ctl_out);
    free(l);
}

static const struct http_upgrade_cb link_cb = {on_link_data, NULL, on_link_closed};

static void
link_unlink(struct tlink *l)
{
    struct tunnel_server *ts = l->ts;

    if (l->prev != NULL || ts->links == l) /* not when it was unlinked already */
        DLIST_UNLINK(ts->links, l);
}

/* Requests still on the link go to another client when none of their bytes reached the end
 * user, else end in an error; the link is then freed. */
static void
link_close(struct tlink *l, const char *why)
{
    if (l->closed)
        return;
    l->closed = true;
    log_info("tunnel: client %s disconnected: %s", l->peer, why);
    link_unlink(l);
    link_unregister(l);
    h2link_stop(&l->h2); /* its last flush still sees every stream; nothing is sent after */
    while (l->streams != NULL) {
        struct tstream *s = l->streams;

        if (s->req != NULL)
            retry_or_fail(l, s, why);
        stream_unlink(s);
    }
    l->ctl = NULL;
    if (l->conn != NULL) {
        http_conn_close(l->conn);
        l->conn = NULL;
    }
}

static nghttp2_session *
session_new(struct tlink *l)
{
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session *s;

    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, send_nothing);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
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

/* Checks the upgrade request; answers the refusal and returns false, or fills pin. */
static bool
admit(struct tunnel_server *ts, struct http_request *req, char pin[TLS_PIN_SIZE])
{
    const struct tls_conn *tls = http_conn_tls(req);
    size_t n;
    const char *up = http_header_get(req, "upgrade", &n);

    if (up == NULL || n != 4 || strncasecmp(up, "ptth", 4) != 0) {
        http_respond_error(req, 400, "invalid_request_error",
                           "this is the Goinfer tunnel endpoint: it needs Upgrade: ptth");
    } else if (tls == NULL || !tls_conn_is_tunnel(tls) || tls_conn_peer_pin(tls, pin) < 0) {
        http_respond_error(req, 400, "invalid_request_error",
                           "a tunnel needs TLS with ALPN %s and a client certificate",
                           TLS_ALPN_TUNNEL);
    } else if (!pin_allowed(ts, pin)) {
        log_warnx("tunnel: refused client %s: its key %s is not in server.clients",
                  http_request_peer(req), pin);
        http_respond_error(req, 403, "permission_error",
                           "this client's key %s is not allowed: add it to server.clients in "
                           "the server's goinfer.yml",
                           pin);
    } else if (!proof_ok(ts, req, tls)) {
        log_warnx("tunnel: refused client %s (%s): wrong or missing token proof",
                  http_request_peer(req), pin);
        http_respond_error(req, 401, "authentication_error",
                           "the token proof is wrong: check the client's token for this server");
    } else if (ts->draining) {
        http_add_header(req, "Retry-After", "5", 1);
        http_respond_error(req, 503, "overloaded", "this server is shutting down");
    } else {
        return true;
    }
    return false;
}

void
tunnel_server_accept(struct tunnel_server *ts, struct http_request *req)
{
    char pin[TLS_PIN_SIZE];
    struct tlink *l;

    if (!admit(ts, req, pin))
        return;
    for (l = ts->links; l != NULL; l = l->next)
        if (strcmp(l->pin, pin) == 0) { /* make before break: the new one replaces it */
            link_close(l, "replaced by a new connection from the same client");
            break;
        }
    l = xcalloc(1, sizeof(*l));
    l->ts = ts;
    memcpy(l->pin, pin, sizeof(pin));
    snprintf(l->peer, sizeof(l->peer), "%s", http_request_peer(req));
    buf_init(&l->ctl_in, CONTROL_MAX);
    buf_init(&l->ctl_out, CONTROL_MAX);
    l->h2 = (struct h2link){.send = link_send,
                            .on_dead = on_link_dead,
                            .on_closed = on_link_freed,
                            .arg = l,
                            .ping_ms = ts->conf->ping_interval * 1000,
                            .timeout_ms = ts->conf->ping_timeout * 1000};
    l->h2.session = session_new(l);
    DLIST_PUSH(ts->links, l);
    h2link_init(&l->h2, ts->loop);
    control_open(l);
    h2link_start(&l->h2, MAX_STREAMS_DEFAULT);
    l->conn = http_upgrade(req, "ptth", &link_cb, l); /* may deliver the client's preface */
}

/* ---- routing ---- */

static const struct tunnel_model *
find_model(const struct tlink *l, const char *model)
{
    json_t *at = l->index != NULL ? json_object_get(l->index, model) : NULL;

    return at != NULL ? &l->models[json_integer_value(at)] : NULL;
}

/* Busy slots: what it reports (requests from every server) or our own streams, the larger. */
static unsigned
load_of(const struct tlink *l)
{
    return l->busy > l->in_flight ? l->busy : l->in_flight;
}

static bool
candidate(const struct tlink *l, const char *model, bool vision, bool hot_only)
{
    const struct tunnel_model *m =
        l->registered && !l->closed && !l->draining ? find_model(l, model) : NULL;

    return m != NULL && (!vision || m->vision) && (!hot_only || m->hot);
}

/* The fleet's facts for this request, then fleet_pick's choice. */
static struct tlink *
pick(struct tunnel_server *ts, const char *model, bool vision, bool *known)
{
    size_t n = 0, i;
    struct tlink *l;
    int k;

    for (l = ts->links; l != NULL; l = l->next)
        n++;
    if (n > ts->n_cands) {
        ts->cands = xrealloc(ts->cands, n * sizeof(*ts->cands));
        ts->n_cands = n;
    }
    for (l = ts->links, i = 0; l != NULL; l = l->next, i++)
        ts->cands[i] = (struct fleet_cand){candidate(l, model, vision, false),
                                           candidate(l, model, vision, true), load_of(l), l->slots};
    k = fleet_pick(ts->cands, n, fleet_rand_system, NULL, known);
    for (l = ts->links; l != NULL && k > 0; l = l->next)
        k--;
    return k < 0 ? NULL : l;
}

/*
 * Images need a client whose model has a projector. One pass from quote to quote at memchr
 * speed (6 ms over a 64 MiB upload, where two memmem calls held the loop for 20 ms).
 */
static bool
wants_vision(const struct http_request *req)
{
    const char *p = req->body.data, *end;

    if (req->body.len == 0)
        return false;
    for (end = p + req->body.len; p != NULL && p < end;) {
        size_t left = (size_t)(end - p);

        if ((left >= 11 && memcmp(p, "\"image_url\"", 11) == 0) ||
            (left >= 13 && memcmp(p, "\"input_image\"", 13) == 0))
            return true;
        p = memchr(p + 1, '"', left - 1);
    }
    return false;
}

/* Sends req down l, to its own path (with its query) or, for admin actions, to path. */
static bool
send_down_to(struct tlink *l, struct http_request *req, const char *model, unsigned tries,
             bool vision, const char *to)
{
    struct tstream *s = stream_new(l, req);
    char *path = to           ? xstrdup(to)
                 : req->query ? xasprintf("%s?%s", req->path, req->query)
                              : xstrdup(req->path);

    s->tries = tries;
    s->vision = vision;
    snprintf(s->model, sizeof(s->model), "%s", model);
    s->id = submit(l, s, req->method_name, path, req->body.len, req);
    free(path);
    if (s->id < 0) {
        stream_unlink(s);
        return false;
    }
    http_attach(req, &user_handler, s);
    req->log_backend = "tunnel";
    s->heard = uv_now(l->ts->loop);
    h2link_flush(&l->h2);
    return true;
}

static bool
send_down(struct tlink *l, struct http_request *req, const char *model, unsigned tries, bool vision)
{
    return send_down_to(l, req, model, tries, vision, NULL);
}

/* Sends req to a client; false when no client serves its model. */
static bool
forward_to(struct tunnel_server *ts, struct http_request *req, const char *model, unsigned tries,
           bool vision)
{
    bool known = false;
    struct tlink *l = pick(ts, model, vision, &known);

    if (l != NULL)
        return send_down(l, req, model, tries, vision);
    return false;
}

static void
on_waiter_abort(struct http_request *req, void *data)
{
    struct tunnel_server *ts = data;

    for (struct waiter **pp = &ts->queue; *pp; pp = &(*pp)->next)
        if ((*pp)->req == req) {
            struct waiter *w = *pp;

            *pp = w->next;
            if (ts->queue_tail == &w->next)
                ts->queue_tail = pp;
            ts->queued--;
            free(w);
            return;
        }
}

static const struct http_handler waiter_handler = {on_waiter_abort, NULL};

static void
busy_error(struct http_request *req, const char *model, const char *what)
{
    http_add_header(req, "Retry-After", "1", 1);
    http_respond_error(req, 503, "overloaded", "every GPU machine serving %s is %s; retry shortly",
                       model, what);
}

/* Waiting requests, oldest first, go where a slot opened; the too old get 503. One model's
 * busy clients hold up no other model's requests. */
static void
dispatch_queue(struct tunnel_server *ts)
{
    uint64_t now = uv_now(ts->loop);
    struct waiter **pp = &ts->queue;

    while (*pp != NULL) {
        struct waiter *w = *pp;
        struct http_request *req = w->req;
        bool known = false;
        bool vision = w->vision;
        struct tlink *l = pick(ts, w->model, vision, &known);

        if (l == NULL && known && now - w->since < QUEUE_WAIT_MS) {
            pp = &w->next; /* still waiting */
            continue;
        }
        *pp = w->next;
        if (ts->queue_tail == &w->next)
            ts->queue_tail = pp;
        ts->queued--;
        http_detach(req);
        if (l == NULL || !send_down(l, req, w->model, 1, vision))
            busy_error(req, w->model, known ? "busy" : "gone");
        free(w);
    }
}

/* A stream its GPU machine said nothing about for limits.upstream_timeout (it may answer
 * PINGs and never the stream) is reset, and its end user gets 504, or a cut answer once it
 * has started. */
static void
stream_expire(struct tlink *l, struct tstream *s, uint64_t timeout_s)
{
    struct http_request *req = s->req;

    s->req = NULL; /* the stream's close frees it */
    http_detach(req);
    nghttp2_submit_rst_stream(l->h2.session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    if (s->started) {
        log_warnx("req=%llu: the GPU machine %s sent nothing more for %llu s "
                  "(limits.upstream_timeout); the answer is cut",
                  (unsigned long long)req->id, l->peer, (unsigned long long)timeout_s);
        http_abort(req);
        return;
    }
    http_respond_error(req, 504, "timeout",
                       "the GPU machine %s sent no answer for %llu s (limits.upstream_timeout in "
                       "goinfer.yml)",
                       l->peer, (unsigned long long)timeout_s);
}

/* Streams held back for a slow end user are not counted: that silence is not the machine's. */
static void
expire_silent_streams(struct tunnel_server *ts)
{
    uint64_t now = uv_now(ts->loop), limit_s = ts->conf->stream_timeout;

    for (struct tlink *l = limit_s > 0 ? ts->links : NULL; l != NULL; l = l->next) {
        bool reset = false;

        for (struct tstream *s = l->streams; s != NULL; s = s->next) {
            if (s->own || s->req == NULL || s->unconsumed > 0 || now - s->heard < limit_s * 1000)
                continue;
            stream_expire(l, s, limit_s);
            reset = true;
        }
        if (reset)
            h2link_flush(&l->h2);
    }
}

static void
on_queue_tick(uv_timer_t *t)
{
    dispatch_queue(t->data);
    expire_silent_streams(t->data);
}

static bool
served_without_vision(const struct tunnel_server *ts, const char *model)
{
    for (const struct tlink *l = ts->links; l != NULL; l = l->next) {
        if (candidate(l, model, false, false))
            return true;
    }
    return false;
}

void
tunnel_server_admin(struct tunnel_server *ts, struct http_request *req, const char *machine,
                    const char *model, const char *path)
{
    struct tlink *l = ts ? ts->links : NULL;

    while (l != NULL && !(l->registered && strcmp(l->pin, machine) == 0))
        l = l->next;
    if (l == NULL) {
        http_respond_error(req, 404, "not_found",
                           "no GPU machine with pin %s is connected (see GET /running)", machine);
    } else if (!l->admin) {
        http_respond_error(req, 403, "permission_error",
                           "the GPU machine %s does not let servers load or unload its models: "
                           "its owner sets client.allow_admin: true in its goinfer.yml",
                           l->peer);
    } else if (find_model(l, model) == NULL) {
        http_respond_error(req, 404, "model_not_found", "the GPU machine %s has no model '%s'",
                           l->peer, model);
    } else if (!send_down_to(l, req, model, 2, false, path)) { /* 2: never retried elsewhere */
        busy_error(req, model, "refusing new streams");
    }
}

bool
tunnel_server_forward(struct tunnel_server *ts, struct http_request *req, const char *model)
{
    bool known = false, vision;
    struct tlink *l;
    struct waiter *w;

    if (ts == NULL || strlen(model) > TUNNEL_MODEL_ID_MAX) /* no client registers such a name */
        return false;
    vision = wants_vision(req);
    l = pick(ts, model, vision, &known);
    if (l != NULL) {
        if (!send_down(l, req, model, 1, vision))
            busy_error(req, model, "refusing new streams");
        return true;
    }
    if (!known && vision && served_without_vision(ts, model)) {
        http_respond_error(req, 400, "invalid_request_error",
                           "the request has images, and no GPU machine serving %s has a "
                           "projector for it; put its mmproj-*.gguf beside the model on one",
                           model);
        return true;
    }
    if (!known)
        return false;
    if (ts->queued >= ts->conf->max_queue) {
        busy_error(req, model, "busy and the queue is full");
        return true;
    }
    w = xcalloc(1, sizeof(*w));
    w->req = req;
    snprintf(w->model, sizeof(w->model), "%s", model);
    w->vision = vision;
    w->since = uv_now(ts->loop);
    *ts->queue_tail = w;
    ts->queue_tail = &w->next;
    ts->queued++;
    http_attach(req, &waiter_handler, ts);
    req->log_backend = "tunnel";
    return true;
}

const char *
tunnel_server_any_model(const struct tunnel_server *ts)
{
    void *first = ts != NULL ? json_object_iter(ts->fleet) : NULL;

    return first != NULL ? json_object_iter_key(first) : NULL;
}

bool
tunnel_server_serves(const struct tunnel_server *ts, const char *model)
{
    return ts != NULL && json_object_get(ts->fleet, model) != NULL;
}

size_t
tunnel_server_some_models(const struct tunnel_server *ts, const char **names, size_t max)
{
    size_t n = 0;

    if (ts == NULL)
        return 0;
    for (void *it = json_object_iter(ts->fleet); it != NULL && n < max;
         it = json_object_iter_next(ts->fleet, it))
        names[n++] = json_object_iter_key(it);
    return json_object_size(ts->fleet);
}

/* What a listing depends on besides the fleet: created, and the hidden names. */
static void
listing_key(struct buf *key, const char *const *hidden, size_t n_hidden, json_int_t created)
{
    buf_reset(key);
    buf_printf(key, "%lld", (long long)created);
    for (size_t i = 0; i < n_hidden; i++)
        buf_append(key, hidden[i], strlen(hidden[i]) + 1); /* the NUL separates them */
}

/* A tunnelled model as the listings show it: loaded when a GPU machine has it loaded, and the
 * modalities it can take there. */
static json_t *
tunnel_model_entry(struct tunnel_server *ts, const char *id, json_int_t created, bool progress)
{
    bool hot = false, vision = false;
    json_t *loading = NULL, *status;

    for (struct tlink *l = ts->links; l != NULL; l = l->next) {
        const struct tunnel_model *m = l->registered ? find_model(l, id) : NULL;

        hot |= m != NULL && m->hot;
        vision |= m != NULL && m->vision;
        if (m != NULL && m->progress != NULL && loading == NULL)
            loading = m->progress;
    }
    status = json_pack("{s:s}", "value", hot ? "loaded" : loading ? "loading" : "unloaded");
    if (!hot && loading != NULL && progress && json_object_size(loading) > 0)
        json_object_set(status, "progress", loading);
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:{s:o, s:[s]}}", "id", id, "object", "model",
                     "created", created, "owned_by", "goinfer-tunnel", "status", status,
                     "architecture", "input_modalities",
                     vision ? json_pack("[s,s]", "text", "image") : json_pack("[s]", "text"),
                     "output_modalities", "text");
}

json_t *
tunnel_server_model(struct tunnel_server *ts, const char *id, json_int_t created)
{
    return ts != NULL && tunnel_server_serves(ts, id) ? tunnel_model_entry(ts, id, created, true)
                                                      : NULL;
}

static void
listing_build(struct tunnel_server *ts, const char *const *hidden, size_t n_hidden,
              json_int_t created)
{
    json_t *skip = json_object(), *count;
    const char *id;

    for (size_t i = 0; i < n_hidden; i++)
        json_object_set_new(skip, hidden[i], json_true());
    buf_reset(&ts->listing);
    json_object_foreach (ts->fleet, id, count) {
        json_t *o;
        char *s;

        if (json_object_get(skip, id) != NULL)
            continue;
        o = tunnel_model_entry(ts, id, created, false); /* live progress: /models/sse */
        s = json_dumps(o, JSON_COMPACT);
        buf_printf(&ts->listing, "%s%s", ts->listing.len ? "," : "", s);
        free(s);
        json_decref(o);
    }
    json_decref(skip);
}

const char *
tunnel_server_models_json(struct tunnel_server *ts, const char *const *hidden, size_t n_hidden,
                          json_int_t created, size_t *len)
{
    struct buf key;

    *len = 0;
    if (ts == NULL)
        return "";
    buf_init(&key, SIZE_MAX);
    listing_key(&key, hidden, n_hidden, created);
    if (ts->listing_stale || key.len != ts->listing_key.len ||
        memcmp(key.data, ts->listing_key.data, key.len) != 0) {
        listing_build(ts, hidden, n_hidden, created);
        buf_reset(&ts->listing_key);
        buf_append(&ts->listing_key, key.data, key.len);
        ts->listing_stale = false;
    }
    buf_cleanup(&key);
    *len = ts->listing.len;
    return ts->listing.len > 0 ? ts->listing.data : "";
}

void
tunnel_server_metrics(struct tunnel_server *ts, struct buf *out)
{
    size_t n = 0;

    for (struct tlink *l = ts->links; l != NULL; l = l->next)
        n += l->registered;
    buf_printf(out,
               "# HELP goinfer_tunnel_clients GPU machines connected and registered.\n"
               "# TYPE goinfer_tunnel_clients gauge\ngoinfer_tunnel_clients %zu\n"
               "# HELP goinfer_tunnel_queued Requests waiting for a free GPU machine.\n"
               "# TYPE goinfer_tunnel_queued gauge\ngoinfer_tunnel_queued %zu\n"
               "# HELP goinfer_tunnel_busy Busy slots of each GPU machine, as it reports.\n"
               "# TYPE goinfer_tunnel_busy gauge\n",
               n, ts->queued);
    for (struct tlink *l = ts->links; l != NULL; l = l->next)
        if (l->registered) /* the pin is the identity; the peer address changes */
            buf_printf(out, "goinfer_tunnel_busy{client=\"%.19s\"} %u\n", l->pin, load_of(l));
}

json_t *
tunnel_server_clients(struct tunnel_server *ts)
{
    json_t *list = json_array();

    for (struct tlink *l = ts ? ts->links : NULL; l != NULL; l = l->next) {
        json_t *models = json_array();

        for (size_t i = 0; i < l->n_models; i++) {
            json_t *o = json_pack("{s:s, s:b, s:b}", "id", l->models[i].id, "hot", l->models[i].hot,
                                  "vision", l->models[i].vision);

            if (l->models[i].progress != NULL) { /* loading there, and how far */
                json_object_set_new(o, "loading", json_true());
                if (json_object_size(l->models[i].progress) > 0)
                    json_object_set(o, "progress", l->models[i].progress);
            }
            json_array_append_new(models, o);
        }
        json_array_append_new(list,
                              json_pack("{s:s, s:s, s:s, s:o, s:i, s:i, s:i, s:b, s:b, s:b}",
                                        "peer", l->peer, "pin", l->pin, "version", l->version,
                                        "models", models, "slots", (int)l->slots, "busy",
                                        (int)l->busy, "in_flight", (int)l->in_flight, "registered",
                                        l->registered, "draining", l->draining, "admin", l->admin));
    }
    return list;
}

struct tunnel_server *
tunnel_server_new(uv_loop_t *loop, const struct conf_tunnel_server *conf)
{
    struct tunnel_server *ts = xcalloc(1, sizeof(*ts));

    ts->loop = loop;
    ts->conf = conf;
    ts->queue_tail = &ts->queue;
    ts->fleet = json_object();
    buf_init(&ts->listing, SIZE_MAX);
    buf_init(&ts->listing_key, SIZE_MAX);
    uv_timer_init(loop, &ts->queue_timer);
    ts->queue_timer.data = ts;
    uv_timer_start(&ts->queue_timer, on_queue_tick, 250, 250);
    return ts;
}

void
tunnel_server_recheck(struct tunnel_server *ts)
{
    struct tlink *l, *next;

    for (l = ts ? ts->links : NULL; l != NULL; l = next) {
        next = l->next;
        if (!pin_allowed(ts, l->pin))
            link_close(l, "its key is no longer in server.clients");
    }
}

/* Planned shutdown: clients finish what they run, then reconnect (to us once we are back). */
void
tunnel_server_drain(struct tunnel_server *ts, uint64_t back_in_ms)
{
    char line[96];

    if (ts == NULL)
        return;
    ts->draining = true;
    tunnel_line_goodbye(line, sizeof(line), back_in_ms);
    for (struct tlink *l = ts->links; l != NULL; l = l->next)
        control_send(l, line);
    while (ts->queue != NULL) {
        struct http_request *req = ts->queue->req;
        char model[TUNNEL_MODEL_ID_MAX + 1];

        snprintf(model, sizeof(model), "%s", ts->queue->model);
        on_waiter_abort(req, ts);
        http_detach(req);
        busy_error(req, model, "unreachable: this server is shutting down");
    }
}

static void
on_queue_timer_closed(uv_handle_t *h)
{
    struct tunnel_server *ts = h->data;

    json_decref(ts->fleet);
    buf_cleanup(&ts->listing);
    buf_cleanup(&ts->listing_key);
    free(ts->cands);
    while (ts->watches != NULL) {
        struct tunnel_watch *w = ts->watches;

        DLIST_UNLINK(ts->watches, w);
        free(w);
    }
    free(ts);
}

void
tunnel_server_free(struct tunnel_server *ts)
{
    if (ts == NULL)
        return;
    tunnel_server_drain(ts, 1000);
    while (ts->links != NULL)
        link_close(ts->links, "the server is shutting down");
    uv_close((uv_handle_t *)&ts->queue_timer, on_queue_timer_closed);
}
