/*
 * Requests that arrive by another road than a socket: a GPU machine runs its tunnel's streams
 * through its own handler this way, where it once replayed each one into its own listener
 * over loopback (two more copies through the kernel, and a second parse, per request).
 */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "http/server.h"

struct http_local {
    struct http_server *srv;
    const struct http_sink *sink;
    void *arg;
    char *store; /* the copied header names and values */
    char peer[64];
    bool in_handler, done; /* done within the handler: freed once it returns */
    struct http_request req;
};

static int
method_from_name(const char *name)
{
    for (int m = 0; strcmp(http_method_str((enum http_method)m), "<unknown>") != 0; m++)
        if (strcmp(http_method_str((enum http_method)m), name) == 0)
            return m;
    return -1;
}

static void
copy_headers(struct http_local *l, const struct http_header *h, size_t n)
{
    size_t need = 1, at = 0;

    n = n < HTTP_MAX_HEADERS ? n : HTTP_MAX_HEADERS;
    for (size_t i = 0; i < n; i++)
        need += h[i].name_len + h[i].value_len + 2;
    l->store = xmalloc(need);
    for (size_t i = 0; i < n; i++) {
        struct http_header *d = &l->req.headers[i];

        d->name = memcpy(l->store + at, h[i].name, h[i].name_len);
        d->name_len = h[i].name_len;
        at += h[i].name_len;
        l->store[at++] = '\0';
        d->value = memcpy(l->store + at, h[i].value, h[i].value_len);
        d->value_len = h[i].value_len;
        at += h[i].value_len;
        l->store[at++] = '\0';
    }
    l->req.n_headers = n;
}

static void
local_free(struct http_local *l)
{
    http_server_count_local(l->srv, -1);
    free(l->store);
    free(l->req.path);
    free(l->req.query);
    free(l->req.log_model);
    buf_cleanup(&l->req.body);
    free(l);
}

/* ---- the sink as a transport ---- */

static void
local_finish(struct http_local *l)
{
    if (l->in_handler)
        l->done = true; /* freed once the handler returns */
    else
        local_free(l);
}

static int
local_head(struct http_request *req, const struct http_header *h, size_t n, int64_t content_length)
{
    struct http_local *l = req->tp_ctx;
    struct http_header all[HTTP_MAX_HEADERS + HTTP_MAX_EXTRA];
    size_t k = 0;

    for (size_t i = 0; i < n && k < HTTP_MAX_HEADERS; i++)
        all[k++] = h[i];
    for (size_t i = 0; i < req->n_extra; i++)
        all[k++] = req->extra[i];
    l->sink->head(l->arg, req->status, all, k, content_length);
    return 0;
}

static int
local_body(struct http_request *req, const char *data, size_t len)
{
    struct http_local *l = req->tp_ctx;

    return l->sink->body(l->arg, data, len);
}

static void
local_flush(struct http_request *req)
{
    (void)req; /* the head went to the sink when it started */
}

static void
local_end(struct http_request *req, bool cut)
{
    struct http_local *l = req->tp_ctx;

    l->sink->end(l->arg, cut);
    local_finish(l);
}

static size_t
local_queued(const struct http_request *req)
{
    const struct http_local *l = req->tp_ctx;

    return l->sink->queued(l->arg);
}

static const char *
local_peer(const struct http_request *req)
{
    return ((const struct http_local *)req->tp_ctx)->peer;
}

static const struct tls_conn *
local_tls(const struct http_request *req)
{
    (void)req;
    return NULL;
}

static const struct http_transport local_transport = {
    local_head, local_body, local_flush, local_end, local_queued, local_peer, local_tls,
};

/* ---- the API ---- */

struct http_request *
http_local_start(struct http_server *srv, const struct http_local_opts *o,
                 const struct http_sink *sink, void *arg)
{
    struct http_local *l = xcalloc(1, sizeof(*l));
    struct http_request *r = &l->req;
    const char *q = strchr(o->target, '?');

    l->srv = srv;
    http_server_count_local(srv, +1);
    l->sink = sink;
    l->arg = arg;
    snprintf(l->peer, sizeof(l->peer), "%s", o->peer ? o->peer : "local");
    copy_headers(l, o->headers, o->n_headers);
    r->srv = srv;
    r->tp = &local_transport;
    r->tp_ctx = l;
    r->id = http_next_request_id();
    r->services = o->services;
    r->method = method_from_name(o->method);
    r->method_name = http_method_str((enum http_method)r->method);
    r->path = q ? xstrndup(o->target, (size_t)(q - o->target)) : xstrdup(o->target);
    r->query = q ? xstrdup(q + 1) : NULL;
    r->body = *o->body;
    buf_init(o->body, o->body->max);
    r->t_start = uv_hrtime();
    l->in_handler = true;
    http_server_dispatch(srv, r);
    l->in_handler = false;
    if (l->done) {
        local_free(l);
        return NULL;
    }
    return r;
}

void
http_local_cancel(struct http_request *req)
{
    http_request_gone(req);
    local_finish(req->tp_ctx);
}

void
http_local_drained(struct http_request *req)
{
    if (local_queued(req) <= http_server_write_high(req->srv) / 2)
        http_drained(req);
}
