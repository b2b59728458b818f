#include "proxy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/metrics.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/relay.h"
#include "router/select.h"

/* One request on its way to a local model's llama-server (through a swap lease) or to a peer
 * (no lease: the peer's URL, its key, its filters); from the fetch on, both take one road. */
struct proxy {
    struct http_request *req;
    const char *name;           /* the model, for metrics */
    char *label;                /* "llama-server for model m", "peer p for model m": for messages */
    struct swap_lease lease;    /* a local model's; idle for a peer */
    struct http_client *client; /* a peer's; a local model's comes with its lease */
    char *base;                 /* a peer's URL; a local model's is its lease's */
    char *auth;                 /* "Bearer <a peer's key>", wiped when freed; or NULL */
    const char *api_key;        /* the peer's key for x-api-key (borrowed), or NULL */
    struct select_rewrite rw;   /* borrowed, but for strip_owned */
    char **strip_owned;
    struct http_fetch *fetch;
    char *path;
    char *body; /* the rewritten body the fetch borrows, or NULL */
    long idle_s;
    bool paused;
};

static void
proxy_free(struct proxy *p)
{
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
    proxy_free(p);
}

static void
on_client_drain(struct http_request *req, void *data)
{
    struct proxy *p = data;

    (void)req;
    if (p->paused) {
        p->paused = false;
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
        if (h[i].name_len == 14 && strncasecmp(h[i].name, "content-length", 14) == 0)
            length = strtoll(h[i].value, NULL, 10);
    http_relay_start(p->req, (int)status, h, n, length);
}

static int
on_upstream_body(void *arg, const char *data, size_t len)
{
    struct proxy *p = arg;

    metrics_scan_timings(p->name, data, len);
    if (http_stream_write(p->req, data, len) < 0)
        return -1;
    if (http_over_high_water(p->req)) { /* backpressure: read no more until it drains */
        p->paused = true;
        http_wait_drain(p->req);
        return HTTP_FETCH_PAUSE;
    }
    return 0;
}

static void
on_upstream_done(void *arg, int err, const char *msg)
{
    struct proxy *p = arg;
    struct http_request *req = p->req;

    p->fetch = NULL;
    http_detach(req); /* p is freed below, whatever the answer does */
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
    struct http_header h[5];
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
    p->fetch = http_fetch_start(p->client ? p->client : swap_lease_client(&p->lease), &o, &cb, p);
    free(url);
}

static void
on_model_ready(struct swap_lease *lease, int err, const char *msg, void *arg)
{
    struct proxy *p = arg;

    (void)lease;
    if (err == 0) {
        start_upstream(p);
        return;
    }
    http_detach(p->req);
    if (err == -EBUSY)
        http_respond_error(p->req, 429, "rate_limit_error", "%s", msg);
    else
        http_respond_error(p->req, err == -ESHUTDOWN ? 503 : 502, "upstream_error", "%s", msg);
    proxy_free(p); /* the lease is idle again: its release does nothing */
}

void
proxy_forward(struct http_request *req, struct swap *swap, const struct model_def *m,
              const char *path, long idle_s)
{
    struct proxy *p = xcalloc(1, sizeof(*p));

    p->idle_s = idle_s;
    p->path = xstrdup(path);
    p->req = req;
    p->name = m->name;
    p->label = xasprintf("llama-server for model %s", m->name);
    p->rw = (struct select_rewrite){m->strip_params, m->use_model_name, m->set_params,
                                    m->set_params_by_id, req->log_model};
    http_attach(req, &client_handler, p);
    req->log_backend = "local";
    swap_acquire(swap, &p->lease, m, on_model_ready, p);
}

void
proxy_forward_peer(struct http_request *req, const struct proxy_peer *peer, long idle_s)
{
    struct proxy *p = xcalloc(1, sizeof(*p));
    const struct conf_filters *f = &peer->conf->filters;
    size_t n = strlen(peer->conf->proxy);

    while (n > 0 && peer->conf->proxy[n - 1] == '/')
        n--;
    p->idle_s = idle_s;
    p->path = xstrdup(req->path);
    p->req = req;
    p->name = req->log_model;
    p->label = xasprintf("peer %s for model %s", peer->conf->name, peer->model);
    p->client = peer->client;
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
    req->log_backend = "peer";
    start_upstream(p);
}
