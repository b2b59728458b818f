#include "proxy.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/metrics.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/relay.h"
#include "router/select.h"

#define PROXY_MAX_EXTRA 8 /* a peer's headers: that are sent */

/* One request on its way to a local model's llama-server (through a swap lease) or to a peer
 * (no lease: the peer's URL, its key, its filters); from the fetch on, both take one road. */
struct proxy {
    struct http_request *req;
    const char *name;           /* the model, for metrics */
    const struct model_def *m;  /* a local model's; NULL for a peer */
    char *label;                /* "llama-server for model m", "peer p for model m": for messages */
    struct swap_lease lease;    /* a local model's; idle for a peer */
    struct http_client *client; /* a peer's; a local model's comes with its lease */
    struct http_remote *remote; /* an https:// peer's, instead of client */
    struct http_remote_opts ropts;
    char **extra_headers;             /* a peer's headers: ("Name: value"), borrowed */
    struct http_remote_fetch *rfetch; /* the fetch when remote */
    struct proxy_peer fallback;       /* conf NULL: none */
    char *base;                       /* a peer's URL; a local model's is its lease's */
    char *auth;                       /* "Bearer <a peer's key>", wiped when freed; or NULL */
    const char *api_key;              /* the peer's key for x-api-key (borrowed), or NULL */
    struct select_rewrite rw;         /* borrowed, but for strip_owned */
    char **strip_owned;
    struct http_fetch *fetch;
    char *path;
    char *body; /* the rewritten body the fetch borrows, or NULL */
    long idle_s;
    bool paused;
    bool streaming; /* the upstream answers an event stream: its first byte is the first token */
    struct swap *swap;
    struct swap_watch *watch; /* while a stream is told how its model's load goes */
    uint64_t waited_from;     /* uv_hrtime() when that began */
};

static void
proxy_free(struct proxy *p)
{
    swap_unwatch(p->watch);
    swap_release(&p->lease);
    if (p->auth != NULL)
        explicit_bzero(p->auth, strlen(p->auth));
    free(p->auth);
    free(p->base);
    free(p->label);
    strv_free(p->strip_owned);
    free(p->body);
    free(p->path);
    free(p);
}

/* The client went away: abort upstream at once so llama-server frees its slot. */
static void
on_client_abort(struct http_request *req, void *data)
{
    struct proxy *p = data;

    (void)req;
    http_fetch_cancel(p->fetch);
    http_remote_cancel(p->rfetch);
    proxy_free(p);
}

static void
on_client_drain(struct http_request *req, void *data)
{
    struct proxy *p = data;

    (void)req;
    if (p->paused) {
        p->paused = false;
        if (p->rfetch != NULL)
            http_remote_resume(p->rfetch);
        else
            http_fetch_resume(p->fetch);
    }
}

static const struct http_handler client_handler = {on_client_abort, on_client_drain};

static void
on_upstream_response(void *arg, long status, const struct http_header *h, size_t n)
{
    struct proxy *p = arg;
    int64_t length = -1;

    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == 12 && strncasecmp(h[i].name, "content-type", 12) == 0)
            p->streaming =
                h[i].value_len >= 17 && strncasecmp(h[i].value, "text/event-stream", 17) == 0;
    if (p->req->started) /* the loading state began the stream: the answer goes on in it */
        return;
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == 14 && strncasecmp(h[i].name, "content-length", 14) == 0)
            length = strtoll(h[i].value, NULL, 10);
    http_relay_start(p->req, (int)status, h, n, length);
}

static int
on_upstream_body(void *arg, const char *data, size_t len)
{
    struct proxy *p = arg;

    if (p->req->usage.t_first_byte == 0)
        p->req->usage.t_first_byte = uv_hrtime();
    metrics_scan_timings(p->req, p->name, data, len);
    if (http_stream_write(p->req, data, len) < 0)
        return -1;
    if (http_over_high_water(p->req)) { /* backpressure: read no more until it drains */
        p->paused = true;
        http_wait_drain(p->req);
        return HTTP_FETCH_PAUSE;
    }
    return 0;
}

/* Time to first token: a stream's first byte; a whole answer's arrival less the generation
 * time llama-server reported. */
static void
usage_ttft(struct http_usage *u, uint64_t t_start, bool streaming)
{
    double first = u->t_first_byte ? (double)(u->t_first_byte - t_start) / 1e6 : -1;

    u->ttft_ms = -1;
    if (first < 0 || !u->reported)
        return;
    if (streaming)
        u->ttft_ms = first;
    else if (u->predicted_ms >= 0)
        u->ttft_ms = first > u->predicted_ms ? first - u->predicted_ms : 0;
}

static void
on_upstream_done(void *arg, int err, const char *msg)
{
    struct proxy *p = arg;
    struct http_request *req = p->req;

    p->fetch = NULL;
    p->rfetch = NULL;
    http_detach(req); /* p is freed below, whatever the answer does */
    if (err == 0)
        usage_ttft(&req->usage, req->t_start, p->streaming);
    if (err == 0) {
        http_stream_end(req);
    } else if (!req->started && err == HTTP_FETCH_ETIMEDOUT) {
        http_respond_error(req, 504, "timeout",
                           "%s sent nothing for %ld s (limits.upstream_timeout in goinfer.yml)",
                           p->label, p->idle_s);
    } else if (!req->started) {
        http_respond_error(req, 502, "upstream_error", "%s failed before answering: %s", p->label,
                           msg);
    } else {
        log_warnx("req=%llu %s failed mid-response: %s", (unsigned long long)req->id, p->label,
                  msg);
        http_abort(req);
    }
    proxy_free(p);
}

static void
start_upstream(struct proxy *p)
{
    static const struct http_fetch_cb cb = {on_upstream_response, on_upstream_body,
                                            on_upstream_done};
    struct http_request *req = p->req;
    struct http_header h[5 + PROXY_MAX_EXTRA];
    size_t nh = 0, n;
    const char *v, *base = p->base ? p->base : swap_lease_url(&p->lease);
    char *url, *rewritten = NULL;
    struct http_fetch_opts o = {0};

    v = http_header_get(req, "content-type", &n);
    h[nh++] = v ? (struct http_header){"Content-Type", 12, v, n}
                : (struct http_header){"Content-Type", 12, "application/json", 16};
    v = http_header_get(req, "accept", &n);
    if (v)
        h[nh++] = (struct http_header){"Accept", 6, v, n};
    v = http_header_get(req, "accept-encoding", &n); /* llama-server's page is gzip only */
    if (v)
        h[nh++] = (struct http_header){"Accept-Encoding", 15, v, n};
    if (p->auth != NULL) { /* a peer's key, in both places llama-swap puts it */
        h[nh++] = (struct http_header){"Authorization", 13, p->auth, strlen(p->auth)};
        h[nh++] = (struct http_header){"x-api-key", 9, p->api_key, strlen(p->api_key)};
    }
    for (char **e = p->extra_headers; e && *e && nh < sizeof(h) / sizeof(h[0]); e++) {
        const char *colon = strchr(*e, ':');

        h[nh++] = (struct http_header){*e, (size_t)(colon - *e), colon + 2, strlen(colon + 2)};
    }
    url = req->query ? xasprintf("%s%s?%s", base, p->path, req->query)
                     : xasprintf("%s%s", base, p->path);
    o.method = req->method_name;
    o.url = url;
    o.headers = h;
    o.n_headers = nh;
    o.idle_s = p->idle_s;
    if (req->body.len > 0 || strcmp(req->method_name, "POST") == 0) {
        o.body = req->body.len ? req->body.data : "";
        o.body_len = req->body.len;
    }
    if (req->body.len > 0 &&
        select_rewrite_body(req->body.data, req->body.len, &p->rw, &rewritten, &o.body_len) == 1)
        o.body = rewritten;
    p->body = rewritten;
    if (p->remote != NULL)
        p->rfetch = http_remote_start(p->remote, &o, &p->ropts, &cb, p);
    else
        p->fetch =
            http_fetch_start(p->client ? p->client : swap_lease_client(&p->lease), &o, &cb, p);
    free(url);
}

/* ---- llama-swap's sendLoadingState: a streaming chat request that waits for its model to load
 * is answered at once with an event stream whose chunks tell, in the reasoning field (which chat
 * UIs show as thinking), how the load goes; the model's answer follows in the same stream ---- */

/* One chunk, {"choices":[{"delta":{"reasoning_content":text}}]}, as llama-swap sends them. */
static void
loading_say(struct proxy *p, const char *text)
{
    json_t *o = json_pack("{s:[{s:{s:s}}]}", "choices", "delta", "reasoning_content", text);
    char *j = json_dumps(o, JSON_COMPACT);

    http_stream_write(p->req, "data: ", 6);
    http_stream_write(p->req, j, strlen(j));
    http_stream_write(p->req, "\n\n", 2);
    free(j);
    json_decref(o);
}

/* ", about 12 s left" from the model's past loads, or "". */
static void
loading_eta(const struct swap_load *load, char *out, size_t n)
{
    out[0] = '\0';
    if (load != NULL && load->remaining_ms > 0)
        snprintf(out, n, ", about %lld s left", (long long)((load->remaining_ms + 999) / 1000));
}

/* A stage as llama.cpp's web UI names it. */
static const char *
stage_label(const struct proc_progress *pr)
{
    static const char *const labels[][2] = {{"text_model", "Loading weights"},
                                            {"mmproj_model", "Loading projector"},
                                            {"spec_model", "Loading draft"}};
    const char *stage = pr->current >= 0 ? pr->stages[pr->current] : "";

    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (strcmp(stage, labels[i][0]) == 0)
            return labels[i][1];
    return "Loading";
}

static void
on_load_event(const struct swap_event *ev, void *arg)
{
    struct proxy *p = arg;
    char line[160], eta[48];

    if (strcmp(ev->model->name, p->m->name) != 0 || ev->state != SWAP_MODEL_LOADING ||
        http_over_high_water(p->req))
        return;
    loading_eta(ev->load, eta, sizeof(eta));
    if (ev->started || !ev->load->has_progress)
        snprintf(line, sizeof(line), "\nStarting llama-server%s", eta);
    else
        snprintf(line, sizeof(line), "\n%s %.0f%%%s", stage_label(&ev->load->progress),
                 ev->load->progress.value * 100, eta);
    loading_say(p, line);
}

/* Whether req waits on a load it should be told about: a streaming chat request for a model
 * with sendLoadingState that is not ready (llama-swap's rule). */
static bool
loading_wanted(struct http_request *req, struct swap *swap, const struct model_def *m,
               const char *path)
{
    return m->send_loading_state && strcmp(path, "/v1/chat/completions") == 0 &&
           select_wants_stream(req->body.data, req->body.len) && !swap_is_ready(swap, m->name);
}

static void
loading_begin(struct proxy *p)
{
    static const struct http_header h[3] = {{"Content-Type", 12, "text/event-stream", 17},
                                            {"Cache-Control", 13, "no-cache", 8},
                                            {"X-Accel-Buffering", 17, "no", 2}};
    struct swap_load load;
    char *line;

    http_stream_start(p->req, 200, h, 3, -1);
    http_stream_flush(p->req);
    p->waited_from = uv_hrtime();
    loading_say(p, "━━━━━\n");
    line = xasprintf("goinfer loading model: %s\n", p->m->name);
    loading_say(p, line);
    free(line);
    if (swap_model_load(p->swap, p->m, &load)) { /* under way already: where it is */
        struct swap_event ev = {p->m, SWAP_MODEL_LOADING, false, &load, 0};

        on_load_event(&ev, p);
    }
    p->watch = swap_watch(p->swap, on_load_event, p);
}

/* The wait is over: "Done!" (llama-swap's words), or why not, as an error event. */
static void
loading_end(struct proxy *p, int err, const char *msg)
{
    char line[64];
    json_t *o;
    char *j;

    swap_unwatch(p->watch);
    p->watch = NULL;
    if (err == 0) {
        snprintf(line, sizeof(line), "\nDone! (%.2fs)\n",
                 (double)(uv_hrtime() - p->waited_from) / 1e9);
        loading_say(p, line);
        loading_say(p, "━━━━━\n");
        loading_say(p, " \n");
        return;
    }
    o = json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg, "type", "upstream_error", "code",
                  err == -EBUSY       ? 429
                  : err == -EPERM     ? 404
                  : err == -ESHUTDOWN ? 503
                                      : 502);
    j = json_dumps(o, JSON_COMPACT);
    http_stream_write(p->req, "data: ", 6);
    http_stream_write(p->req, j, strlen(j));
    http_stream_write(p->req, "\n\n", 2);
    free(j);
    json_decref(o);
}

/* The model cannot take the request and nothing was sent yet: its fallback (a cloud model)
 * answers instead. */
static bool
try_fallback(struct proxy *p, int err, const char *msg)
{
    struct http_request *req = p->req;
    struct proxy_peer fb = p->fallback;
    long idle_s = p->idle_s;

    if (fb.conf == NULL || req->started || err == -ESHUTDOWN || err == -EPERM)
        return false;
    log_info("req=%llu model %s cannot answer (%s): falling back to peer %s model %s",
             (unsigned long long)req->id, p->m->name, msg, fb.conf->name, fb.model);
    http_detach(req);
    proxy_free(p);
    proxy_forward_peer(req, &fb, idle_s);
    return true;
}

static void
on_model_ready(struct swap_lease *lease, int err, const char *msg, void *arg)
{
    struct proxy *p = arg;

    (void)lease;
    if (err != 0 && p->watch == NULL && try_fallback(p, err, msg))
        return;
    if (p->watch != NULL)
        loading_end(p, err, msg);
    if (err == 0) {
        start_upstream(p);
        return;
    }
    http_detach(p->req);
    if (p->req->started) { /* told in the stream the loading state began */
        http_stream_end(p->req);
        free(p->path);
        free(p);
        return;
    }
    if (err == -EBUSY)
        http_respond_error(p->req, 429, "rate_limit_error", "%s", msg);
    else if (err == -EPERM) /* disabled on the admin page */
        http_respond_error(p->req, 404, "model_disabled", "%s", msg);
    else
        http_respond_error(p->req, err == -ESHUTDOWN ? 503 : 502, "upstream_error", "%s", msg);
    proxy_free(p); /* the lease is idle again: its release does nothing */
}

void
proxy_forward(struct http_request *req, struct swap *swap, const struct model_def *m,
              const char *path, long idle_s, const struct proxy_peer *fallback)
{
    struct proxy *p = xcalloc(1, sizeof(*p));

    if (fallback != NULL)
        p->fallback = *fallback;
    p->idle_s = idle_s;
    p->path = xstrdup(path);
    p->req = req;
    p->name = m->name;
    p->label = xasprintf("llama-server for model %s", m->name);
    p->rw = (struct select_rewrite){m->strip_params, m->use_model_name, m->set_params,
                                    m->set_params_by_id, req->log_model};
    p->m = m;
    p->swap = swap;
    http_attach(req, &client_handler, p);
    req->log_backend = "local";
    if (loading_wanted(req, swap, m, path))
        loading_begin(p);
    swap_acquire(swap, &p->lease, m, on_model_ready, p);
}

void
proxy_forward_peer(struct http_request *req, const struct proxy_peer *peer, long idle_s)
{
    struct proxy *p = xcalloc(1, sizeof(*p));
    const struct conf_filters *f = &peer->conf->filters;
    size_t n = strlen(peer->conf->proxy);
    bool https = strncmp(peer->conf->proxy, "https://", 8) == 0;

    while (n > 0 && peer->conf->proxy[n - 1] == '/')
        n--;
    p->idle_s = idle_s;
    p->path = xstrdup(req->path);
    p->req = req;
    p->name = req->log_model;
    p->label = xasprintf("peer %s for model %s", peer->conf->name, peer->model);
    p->client = https ? NULL : peer->client;
    if (https) {
        p->remote = peer->remote;
        p->ropts = (struct http_remote_opts){peer->conf->ca_file, (int)peer->conf->retries};
    }
    p->extra_headers = peer->conf->headers;
    p->base = xstrndup(peer->conf->proxy, n);
    if (peer->conf->api_key != NULL) {
        p->auth = xasprintf("Bearer %s", peer->conf->api_key);
        p->api_key = peer->conf->api_key;
    }
    p->strip_owned = strv_split(f->strip_params);
    /* the peer knows the model by its own id, not "peer/model" */
    p->rw = (struct select_rewrite){p->strip_owned,
                                    strcmp(req->log_model, peer->model) != 0 ? peer->model : NULL,
                                    f->set_params, f->set_params_by_id, req->log_model};
    http_attach(req, &client_handler, p);
    req->log_backend = https ? "cloud" : "peer";
    if (p->remote == NULL && p->client == NULL) {
        http_detach(req);
        http_respond_error(req, 503, "upstream_error", "goinfer is shutting down");
        proxy_free(p);
        return;
    }
    start_upstream(p);
}
