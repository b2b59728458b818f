#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "admin/api_models.h"
#include "admin/audit.h"
#include "admin/download.h"
#include "admin/engine.h"
#include "admin/files.h"
#include "admin/handlers.h"
#include "admin/keys_api.h"
#include "admin/metrics.h"
#include "admin/settings.h"
#include "admin/static.h"
#include "admin/store.h"
#include "admin/ui.h"
#include "admin/upload.h"
#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/version.h"
#include "core/xmalloc.h"
#include "http/cors.h"
#include "http/errors.h"
#include "keys/broker.h"
#include "router/events.h"
#include "router/listing.h"
#include "router/openapi.h"
#include "router/peerlist.h"
#include "router/peers.h"
#include "router/proxy.h"
#include "router/select.h"
#include "tunnel/tunnel_server.h"

#define SVC_ANY (ROUTER_SVC_GOINFER | ROUTER_SVC_OPENAI)

struct router {
    struct router_deps d;
    struct peers_extra px; /* the peers' fetched models, from d.peer_lists */
    time_t started;
    struct admin_logstreams streams; /* open /logs/stream responses, ended at shutdown */
    struct events_streams events;    /* open /models/sse feeds, the same */
    struct admin_files_env files;    /* what the files API works with, refreshed at reloads */
    struct admin_uploads *uploads;
    struct admin_downloads *downloads;
};

typedef void (*route_cb)(struct router *r, struct http_request *req);

enum access { PUBLIC, USER, ADMIN };

_Static_assert(PUBLIC == (int)OPENAPI_PUBLIC && USER == (int)OPENAPI_USER &&
                   ADMIN == (int)OPENAPI_ADMIN,
               "the OpenAPI description reads the route table's access as its own");

struct route {
    const char *method;
    const char *path;
    unsigned services;
    enum access access;
    route_cb handle;
};

/* Public: says only that the process serves. What runs, with its PIDs and ports, is told to a
 * caller with a key (and at GET /running). */
static void
handle_health(struct router *r, struct http_request *req)
{
    size_t len = 0;
    char scratch[AUTH_BASIC_MAX];
    const char *key = auth_request_key(req, scratch, &len);

    if (key == NULL || auth_open(r->d.auth) || !auth_check(r->d.auth, key, len)) {
        http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
        return;
    }
    http_respond_json(req, 200,
                      json_pack("{s:s, s:i, s:o}", "status", "ok", "models", (int)r->d.cat->n,
                                "running", swap_running(r->d.swap)));
}

static json_t *model_status(struct router *r, const struct model_def *m);

/* Not disabled on the admin page (the store keeps the set in memory: no file access). */
static bool
enabled(const struct router *r, const struct model_def *m)
{
    return api_model_enabled(r->d.store, m);
}

/* 404 for a model disabled on the admin page, saying how to enable it. */
static void
respond_disabled(struct router *r, struct http_request *req, const struct model_def *m)
{
    const char *by = api_model_disabled_by(r->d.store, m);

    http_respond_error(req, 404, "model_disabled",
                       "model %s is disabled; enable it on /ui or POST /api/models/%s/enable",
                       by ? by : m->name, by ? by : m->name);
}

#define NAMES_SHOWN 32 /* model names in an error message; then "and N more" */

/* "a, b, c and 19900 more" for error messages that tell the user what they could have asked
 * for: bounded, whatever the size of the catalog or of the fleet behind tunnels. */
static char *
model_names(const struct router *r, const struct catalog *l, struct tunnel_server *ts)
{
    const char *remote[2 * NAMES_SHOWN]; /* a tunnelled name may be a local one: skipped */
    size_t shown = 0, total = 0, n_remote, i;
    struct buf b;
    char *s;

    buf_init(&b, 64 * 1024);
    for (i = 0; i < l->n; i++) {
        if (l->v[i].unlisted || !enabled(r, &l->v[i]))
            continue;
        total += !tunnel_server_serves(ts, l->v[i].name); /* the fleet's count has it */
        if (shown == NAMES_SHOWN)
            continue;
        buf_printf(&b, "%s%s", b.len ? ", " : "", l->v[i].name);
        shown++;
    }
    n_remote = tunnel_server_some_models(ts, remote, 2 * NAMES_SHOWN);
    total += n_remote;
    for (i = 0; i < n_remote && i < 2 * NAMES_SHOWN && shown < NAMES_SHOWN; i++) {
        if (catalog_find(l, remote[i], strlen(remote[i])) != NULL)
            continue;
        buf_printf(&b, "%s%s", b.len ? ", " : "", remote[i]);
        shown++;
    }
    if (total > shown)
        buf_printf(&b, " and %zu more", total - shown);
    if (b.len == 0)
        buf_printf(&b, "(none: put *.gguf files under GI_MODELS_DIR)");
    s = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return s;
}

/* The model a request names: JSON "model" (whatever the Content-Type), a multipart "model"
 * field, ?model=, else the default. Sets *name (owned by the caller) even when unknown. */
static int
requested_model(struct router *r, struct http_request *req, char **name, char *err, size_t errlen)
{
    size_t ct_len = 0, i = 0;
    const char *ct = http_header_get(req, "content-type", &ct_len);
    int rc = 0;

    *name = NULL;
    while (i < req->body.len && strchr(" \t\r\n", req->body.data[i]) != NULL)
        i++;
    if (ct && ct_len >= 19 && strncasecmp(ct, "multipart/form-data", 19) == 0)
        rc = select_model_from_multipart(req->body.data, req->body.len, ct, ct_len, name);
    else if (i < req->body.len)
        rc = select_model_from_json(req->body.data, req->body.len, name, err, errlen);
    if (rc == 0 && *name == NULL && req->query)
        rc = select_model_from_query(req->query, name);
    if (rc == 0 && *name == NULL && r->d.default_model)
        *name = xstrdup(r->d.default_model);
    for (size_t k = 0; rc == 0 && *name == NULL && k < r->d.cat->n; k++)
        if (!r->d.cat->v[k].unlisted && enabled(r, &r->d.cat->v[k]))
            *name = xstrdup(r->d.cat->v[k].name);
    if (rc == 0 && *name == NULL && tunnel_server_any_model(r->d.tunnels) != NULL)
        *name = xstrdup(tunnel_server_any_model(r->d.tunnels));
    return rc;
}

/* ---- backends: whatever can answer a request for a model ---- */

/* Asked in order; the first that serves the model takes the request and answers it, one way
 * or another: local models, GPU machines behind tunnels, then llama-swap's peers. */
struct backend {
    const char *name;
    bool (*serves)(struct router *r, const char *model);
    void (*forward)(struct router *r, struct http_request *req, const char *model);
    /* Appends its models to a /v1/models listing as OpenAI model objects joined by commas,
     * leaving out those an earlier backend listed; returns how many bytes it appended. */
    size_t (*list)(struct router *r, struct buf *out);
};

/* Appends "," when out already holds an item past start. */
static void
list_sep(struct buf *out, size_t start)
{
    if (out->len > start)
        buf_append(out, ",", 1);
}

/* llama.cpp's router shape: {"value":"unloaded|loading|loaded"}, "failed" and "exit_code"
 * when the last start failed. */
static json_t *
model_status(struct router *r, const struct model_def *m)
{
    static const char *const values[] = {"unloaded", "loading", "loaded", "unloaded", "unloaded"};
    int code = 0;
    enum swap_model_state st = swap_model_state(r->d.swap, m, &code);
    json_t *o = json_pack("{s:s}", "value", values[st]);

    if (st == SWAP_MODEL_FAILED) {
        json_object_set_new(o, "failed", json_true());
        json_object_set_new(o, "exit_code", json_integer(code));
    }
    swap_add_progress(o, r->d.swap, m); /* while loading: "progress", llama.cpp's shape */
    return o;
}

static void
list_append(struct buf *out, size_t start, json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);

    list_sep(out, start);
    buf_append(out, text, strlen(text));
    free(text);
    json_decref(o);
}

/* Every listed model, then (with includeAliasesInList) each of its aliases as a model. */
static size_t
local_entries(struct router *r, struct buf *out, bool gguf)
{
    size_t start = out->len;

    for (size_t i = 0; i < r->d.cat->n; i++) {
        const struct model_def *m = &r->d.cat->v[i];

        if (m->unlisted || !enabled(r, m))
            continue;
        list_append(out, start,
                    listing_model(m, m->name, model_status(r, m), (json_int_t)r->started, gguf));
        for (char **a = m->aliases; r->d.cat->include_aliases_in_list && a && *a; a++)
            list_append(out, start,
                        listing_model(m, *a, model_status(r, m), (json_int_t)r->started, gguf));
    }
    return out->len - start;
}

static size_t
local_list(struct router *r, struct buf *out)
{
    return local_entries(r, out, false);
}

/* GET /models: the same entries with the files' fields (path, size, GGUF header...). */
static size_t
local_list_gguf(struct router *r, struct buf *out)
{
    return local_entries(r, out, true);
}

/* As the tunnel server keeps them serialized: a fleet of tens of thousands costs a copy here,
 * not a merge (a local model of the same name was listed already). */
static size_t
tunnel_list(struct router *r, struct buf *out)
{
    const char **hidden = xcalloc(r->d.cat->n + 1, sizeof(*hidden));
    size_t n_hidden = 0, len = 0;
    const char *text;

    for (size_t i = 0; i < r->d.cat->n; i++)
        if (!r->d.cat->v[i].unlisted && enabled(r, &r->d.cat->v[i]) &&
            tunnel_server_serves(r->d.tunnels, r->d.cat->v[i].name))
            hidden[n_hidden++] = r->d.cat->v[i].name;
    text = tunnel_server_models_json(r->d.tunnels, hidden, n_hidden, (json_int_t)r->started, &len);
    free(hidden);
    buf_append(out, text, len);
    return len;
}

/* A disabled model is served by nobody here (a GPU machine or a peer may still have it). */
static bool
local_serves(struct router *r, const char *model)
{
    const struct model_def *m = catalog_find(r->d.cat, model, strlen(model));

    return m != NULL && enabled(r, m);
}

/* The peer model that answers for m when it cannot (its fallback:); false when none. */
static bool
fallback_peer(struct router *r, const struct model_def *m, struct proxy_peer *out)
{
    *out = (struct proxy_peer){r->d.peer_client, r->d.peer_remote, NULL, NULL};
    if (m == NULL || m->fallback == NULL)
        return false;
    out->conf = peers_find(r->d.cat->peers, r->d.cat->n_peers, &r->px, m->fallback, &out->model);
    return out->conf != NULL;
}

static void
local_forward(struct router *r, struct http_request *req, const char *model)
{
    const struct model_def *m = catalog_find(r->d.cat, model, strlen(model));
    struct proxy_peer fb;
    bool has_fb = fallback_peer(r, m, &fb);

    proxy_forward(req, r->d.swap, m, req->path, r->d.upstream_idle_s, has_fb ? &fb : NULL);
}

static bool
tunnel_serves(struct router *r, const char *model)
{
    return r->d.tunnels != NULL && tunnel_server_serves(r->d.tunnels, model);
}

static void
tunnel_forward(struct router *r, struct http_request *req, const char *model)
{
    if (!tunnel_server_forward(r->d.tunnels, req, model))
        http_respond_error(req, 503, "server_busy", "no GPU machine serves %s any more", model);
}

static bool
peer_serves(struct router *r, const char *model)
{
    const char *id;

    return peers_find(r->d.cat->peers, r->d.cat->n_peers, &r->px, model, &id) != NULL;
}

static void
peer_forward(struct router *r, struct http_request *req, const char *model)
{
    struct proxy_peer p = {r->d.peer_client, r->d.peer_remote, NULL, NULL};

    p.conf = peers_find(r->d.cat->peers, r->d.cat->n_peers, &r->px, model, &p.model);
    proxy_forward_peer(req, &p, r->d.upstream_idle_s); /* 503 when shutting down */
}

static size_t
peer_list(struct router *r, struct buf *out)
{
    return peers_list(r->d.cat->peers, r->d.cat->n_peers, &r->px, (long long)r->started, out);
}

static const struct backend backends[] = {
    {"local", local_serves, local_forward, local_list},
    {"tunnel", tunnel_serves, tunnel_forward, tunnel_list},
    {"peer", peer_serves, peer_forward, peer_list},
};

/* Every backend's models, once each, in one list: OpenAI's shape, which llama.cpp's router
 * also gives GET /models. That one adds the local files' fields. */
static void
respond_listing(struct router *r, struct http_request *req, bool gguf)
{
    struct buf body;

    buf_init(&body, SIZE_MAX);
    buf_printf(&body, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0, start = body.len; i < sizeof(backends) / sizeof(backends[0]); i++) {
        size_t mark = body.len;
        size_t (*list)(struct router *, struct buf *) = backends[i].list;

        if (gguf && list == local_list)
            list = local_list_gguf;
        if (mark > start) /* a separator, taken back if this backend lists nothing */
            buf_append(&body, ",", 1);
        if (list(r, &body) == 0)
            body.len = mark;
    }
    buf_append(&body, "]}", 2);
    http_respond(req, 200, "application/json", body.data, body.len);
    buf_cleanup(&body);
}

static void
handle_models(struct router *r, struct http_request *req)
{
    respond_listing(r, req, false);
}

static void
handle_gguf_models(struct router *r, struct http_request *req)
{
    respond_listing(r, req, true);
}

/* Resolves the model a request names and hands it to the first backend that serves it, or
 * answers 400 (unreadable) or 404 (nobody serves it, with the names that exist). */
static void
handle_proxy(struct router *r, struct http_request *req)
{
    char err[512], *name = NULL, *names;
    const struct model_def *m;
    struct proxy_peer fb;

    if (requested_model(r, req, &name, err, sizeof(err)) < 0) {
        http_respond_error(req, 400, "invalid_request_error", "%s", err);
        return;
    }
    req->log_model = name; /* owned by the request from here */
    if (name != NULL && req->grant != NULL) {
        struct broker_refusal why;

        if (broker_reserve(r->d.keys, req, name, (int64_t)time(NULL), &why) < 0) {
            api_keys_refuse(req, &why);
            return;
        }
    }
    for (size_t i = 0; name != NULL && i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (backends[i].serves(r, name)) {
            backends[i].forward(r, req, name);
            return;
        }
    }
    m = name ? catalog_find(r->d.cat, name, strlen(name)) : NULL;
    if (fallback_peer(r, m, &fb)) { /* disabled here, and nobody else has it: its fallback */
        log_info("req=%llu model %s is disabled: falling back to peer %s model %s",
                 (unsigned long long)req->id, m->name, fb.conf->name, fb.model);
        proxy_forward_peer(req, &fb, r->d.upstream_idle_s);
        return;
    }
    if (m != NULL) { /* here, but disabled */
        respond_disabled(r, req, m);
        return;
    }
    names = model_names(r, r->d.cat, r->d.tunnels);
    http_respond_error(req, 404, "model_not_found", "model '%s' not found; available models: %s",
                       name ? name : "", names);
    free(names);
}

static bool
has_dot_segment(const char *p)
{
    return strstr(p, "/../") || strstr(p, "/./") || strcasestr(p, "%2e") ||
           (strlen(p) >= 3 && strcmp(p + strlen(p) - 3, "/..") == 0) ||
           (strlen(p) >= 2 && strcmp(p + strlen(p) - 2, "/.") == 0);
}

/* /upstream/<model>/<path>: straight to that model's llama-server (its web UI, /slots...). */
static void
handle_upstream(struct router *r, struct http_request *req)
{
    const char *sub = req->path + strlen("/upstream/"), *rest;
    const char **names = xcalloc(r->d.cat->n + 1, sizeof(*names));
    int i;

    for (size_t k = 0; k < r->d.cat->n; k++)
        names[k] = r->d.cat->v[k].name;
    i = select_upstream_prefix(sub, names, &rest);
    free(names);
    if (i < 0) {
        char *all = model_names(r, r->d.cat, NULL);

        http_respond_error(req, 404, "model_not_found",
                           "no model prefixes %s; use /upstream/<model>/<path> with one of: %s",
                           req->path, all);
        free(all);
        return;
    }
    if (has_dot_segment(rest)) {
        http_respond_error(req, 400, "invalid_request_error",
                           "path segments '.' and '..' are not allowed in /upstream/");
        return;
    }
    req->log_model = xstrdup(r->d.cat->v[i].name);
    if (!enabled(r, &r->d.cat->v[i]))
        respond_disabled(r, req, &r->d.cat->v[i]);
    else
        proxy_forward(req, r->d.swap, &r->d.cat->v[i], *rest ? rest : "/", r->d.upstream_idle_s,
                      NULL);
}

static void
handle_tunnel(struct router *r, struct http_request *req)
{
    if (r->d.tunnels == NULL)
        http_respond_error(req, 404, "not_found",
                           "this Goinfer accepts no tunnels: add a server: section to its "
                           "goinfer.yml");
    else
        tunnel_server_accept(r->d.tunnels, req);
}

static void
handle_running(struct router *r, struct http_request *req)
{
    admin_running(req, r->d.swap, r->d.tunnels, r->d.cat->warnings);
}

static void
handle_unload(struct router *r, struct http_request *req)
{
    admin_unload(req, r->d.swap);
}

/* The local model a control request names (JSON "model", else the path past prefix), or
 * NULL after answering 400/404. */
static const struct model_def *
controlled_model(struct router *r, struct http_request *req, const char *prefix)
{
    char err[256], *name = NULL;
    const struct model_def *m = NULL;

    if (prefix != NULL && strncmp(req->path, prefix, strlen(prefix)) == 0)
        name = xstrdup(req->path + strlen(prefix));
    else if (select_model_from_json(req->body.data, req->body.len, &name, err, sizeof(err)) < 0) {
        http_respond_error(req, 400, "invalid_request_error", "%s", err);
        return NULL;
    }
    if (name == NULL || *name == '\0') {
        http_respond_error(req, 400, "invalid_request_error",
                           "name the model: {\"model\":\"<id>\"} (see GET /v1/models)");
    } else if ((m = catalog_find(r->d.cat, name, strlen(name))) == NULL) {
        http_respond_error(req, 404, "model_not_found",
                           "model '%s' is not a model of this machine (see GET /v1/models)", name);
    }
    free(req->log_model);
    req->log_model = name;
    return m;
}

static void
handle_unload_model(struct router *r, struct http_request *req)
{
    const struct model_def *m = controlled_model(r, req, "/api/models/unload/");

    if (m != NULL)
        admin_unload_model(req, r->d.swap, m);
}

static void
handle_load_model(struct router *r, struct http_request *req)
{
    const struct model_def *m = controlled_model(r, req, NULL);

    if (m != NULL)
        admin_load_model(req, r->d.swap, m);
}

/* GET /v1/models/<id>: the openai SDK's models.retrieve. */
static void
handle_model_one(struct router *r, struct http_request *req)
{
    const char *id = req->path + strlen("/v1/models/"), *peer_model = NULL;
    const struct model_def *m = catalog_find(r->d.cat, id, strlen(id));
    const struct conf_peer *peer;

    if (m != NULL && !m->unlisted && !enabled(r, m) && !tunnel_serves(r, id)) {
        respond_disabled(r, req, m);
    } else if (m != NULL && !m->unlisted && enabled(r, m)) {
        http_respond_json(req, 200,
                          listing_model(m, id, model_status(r, m), (json_int_t)r->started, false));
    } else if (tunnel_serves(r, id)) {
        http_respond_json(req, 200, tunnel_server_model(r->d.tunnels, id, (json_int_t)r->started));
    } else if ((peer = peers_find(r->d.cat->peers, r->d.cat->n_peers, &r->px, id, &peer_model)) !=
               NULL) {
        http_respond_json(req, 200, peers_model(peer, peer_model, (long long)r->started));
    } else {
        http_respond_error(req, 404, "model_not_found", "model '%s' not found", id);
    }
}

/* /tools: llama.cpp's router answers it itself (403 unless it was started with tools), and its
 * web UI asks at every page load; a model starts for it only when the request names one. */
static void
handle_tools(struct router *r, struct http_request *req)
{
    char *name = NULL;

    if (req->query != NULL)
        select_model_from_query(req->query, &name);
    if (name != NULL || (req->services & ROUTER_SVC_INFER) != 0)
        handle_proxy(r, req);
    else
        http_respond_error(req, 403, "feature_disabled",
                           "server tools run in each model's llama-server: ask "
                           "/tools?model=<id> (it answers 403 unless started with --tools)");
    free(name);
}

/* POST /v1/streams/lookup (llama.cpp's web UI asks which of its conversations still stream,
 * at every page load): asked of the model the body names, else of the model running now; with
 * none running there is nothing to resume, and no model is started to say so. */
static void
handle_streams_lookup(struct router *r, struct http_request *req)
{
    char err[64], *name = NULL;

    if (select_model_from_json(req->body.data, req->body.len, &name, err, sizeof(err)) == 0 &&
        name != NULL) {
        free(name);
        handle_proxy(r, req);
        return;
    }
    for (size_t i = 0; i < r->d.cat->n; i++) {
        int code;

        if (swap_model_state(r->d.swap, &r->d.cat->v[i], &code) == SWAP_MODEL_LOADED) {
            req->log_model = xstrdup(r->d.cat->v[i].name);
            local_forward(r, req, r->d.cat->v[i].name);
            return;
        }
    }
    http_respond(req, 200, "application/json", "[]", 2);
}

/* GET /props: llama.cpp's router answer when no model is named (its web UI then offers every
 * model); with ?model=<id>, that model's own /props, loading it unless ?autoload=false. */
static void
handle_props(struct router *r, struct http_request *req)
{
    char *name = NULL, *autoload = NULL;
    const struct model_def *m;
    int code;

    if (req->query != NULL) {
        select_model_from_query(req->query, &name);
        select_query_value(req->query, "autoload", &autoload);
    }
    if (name == NULL && (req->services & ROUTER_SVC_INFER) == 0) { /* a GPU machine proxies */
        free(autoload);
        http_respond_json(req, 200, listing_router_props());
        return;
    }
    m = name ? catalog_find(r->d.cat, name, strlen(name)) : NULL;
    if (m != NULL && autoload != NULL && (!strcmp(autoload, "false") || !strcmp(autoload, "0")) &&
        swap_model_state(r->d.swap, m, &code) != SWAP_MODEL_LOADED) {
        req->log_model = name; /* the request owns it from here */
        http_respond_error(req, 400, "invalid_request_error",
                           "model '%s' is not loaded (load it with POST /models/load, or ask "
                           "without autoload=false)",
                           name);
        name = NULL;
    } else {
        handle_proxy(r, req);
    }
    free(autoload);
    free(name);
}

static void
handle_logs(struct router *r, struct http_request *req)
{
    (void)r;
    admin_logs(req);
}

static void
handle_logs_stream(struct router *r, struct http_request *req)
{
    admin_logs_stream(&r->streams, req);
}

void
router_shutdown(struct router *r)
{
    admin_logs_end(&r->streams);
    events_end(&r->events);
    admin_downloads_shutdown(r->downloads);
}

/* POST /api/fleet/load|unload {"machine": pin, "model": id}: through that machine's tunnel. */
static void
fleet_control(struct router *r, struct http_request *req, const char *path)
{
    json_t *body = json_loadb(req->body.data, req->body.len, 0, NULL);
    const char *machine = json_string_value(json_object_get(body, "machine"));
    const char *model = json_string_value(json_object_get(body, "model"));
    const char *action = strcmp(path, "/models/load") == 0 ? "fleet.load" : "fleet.unload";

    /* audited before anything answers (an answered request may be gone): 202, sent on */
    if (machine == NULL || model == NULL) {
        audit_record(req, action, NULL, 400);
        http_respond_error(req, 400, "invalid_request_error",
                           "send {\"machine\": \"<its pin, see GET /running>\", \"model\": "
                           "\"<id>\"}");
    } else if (r->d.tunnels == NULL) {
        audit_record(req, action, model, 404);
        http_respond_error(req, 404, "not_found",
                           "this Goinfer accepts no tunnels: add a server: section to its "
                           "goinfer.yml");
    } else {
        req->log_model = xstrdup(model);
        audit_record(req, action, model, 202);
        tunnel_server_admin(r->d.tunnels, req, machine, model, path);
    }
    json_decref(body);
}

static void
handle_fleet_load(struct router *r, struct http_request *req)
{
    fleet_control(r, req, "/models/load");
}

static void
handle_fleet_unload(struct router *r, struct http_request *req)
{
    fleet_control(r, req, "/models/unload");
}

/* GET /api/events: the admin app's one feed (model states and the log), instead of polling. */
static void
handle_admin_events(struct router *r, struct http_request *req)
{
    events_stream(&r->events, r->d.swap, r->d.tunnels, req, true);
}

/* ---- admin API: engine (src/admin/engine.c) ---- */

static struct engine_ctx
engine_ctx_of(struct router *r)
{
    return (struct engine_ctx){r->d.conf, r->d.llama_exe, r->d.cat};
}

static void
handle_engine_get(struct router *r, struct http_request *req)
{
    struct engine_ctx x = engine_ctx_of(r);

    engine_get(r->d.engine, req, &x);
}

static void
handle_engine_build(struct router *r, struct http_request *req)
{
    struct engine_ctx x = engine_ctx_of(r);

    engine_build(r->d.engine, req, &x);
}

static void
handle_engine_cancel(struct router *r, struct http_request *req)
{
    engine_cancel(r->d.engine, req);
}

static void
handle_engine_use(struct router *r, struct http_request *req)
{
    struct engine_ctx x = engine_ctx_of(r);

    engine_use(r->d.engine, req, &x);
}

static void
handle_models_sse(struct router *r, struct http_request *req)
{
    events_stream(&r->events, r->d.swap, r->d.tunnels, req, false);
}

static void
handle_reload(struct router *r, struct http_request *req)
{
    admin_reload(req, r->d.reload, r->d.reload_arg);
}

/* The settings handlers need the application's loader: 501 on a road that has none. */
static bool
settings_here(struct router *r, struct http_request *req)
{
    if (r->d.settings != NULL)
        return true;
    http_respond_error(req, 501, "not_implemented", "%s is not available here", req->path);
    return false;
}

static void
handle_config_get(struct router *r, struct http_request *req)
{
    if (settings_here(r, req))
        admin_config_get(req, r->d.settings);
}

static void
handle_config_validate(struct router *r, struct http_request *req)
{
    if (settings_here(r, req))
        admin_config_validate(req, r->d.settings);
}

static void
handle_config_diff(struct router *r, struct http_request *req)
{
    if (settings_here(r, req))
        admin_config_diff(req, r->d.settings);
}

static void
handle_config_put(struct router *r, struct http_request *req)
{
    if (settings_here(r, req))
        admin_config_put(req, r->d.settings);
}

static void
handle_model_args(struct router *r, struct http_request *req)
{
    if (settings_here(r, req))
        admin_model_args(req, r->d.settings, r->d.cat);
}

static void
handle_restart(struct router *r, struct http_request *req)
{
    if (settings_here(r, req))
        admin_restart(req, r->d.settings);
}

static void
handle_metrics(struct router *r, struct http_request *req)
{
    admin_metrics(req, r->d.server, r->d.swap, r->d.tunnels);
}

/* ---- the admin API over the store (admin/api_models.c) ---- */

/* GET /models' object of m, with its status: what /api/models adds its settings to. */
static json_t *
api_describe(const struct model_def *m, void *arg)
{
    struct router *r = arg;

    return listing_model(m, m->name, model_status(r, m), (json_int_t)r->started, true);
}

static void
api_ctx_of(struct router *r, struct api_ctx *c)
{
    *c = (struct api_ctx){r->d.cat, r->d.swap, r->d.store, api_describe, r};
}

static void
api_query_read(const struct http_request *req, struct api_query *q)
{
    memset(q, 0, sizeof(*q));
    if (req->query == NULL)
        return;
    select_query_value(req->query, "limit", &q->limit);
    select_query_value(req->query, "before", &q->before);
    select_query_value(req->query, "model", &q->model);
    select_query_value(req->query, "minutes", &q->minutes);
    select_query_value(req->query, "step", &q->step);
}

static void
api_query_free(struct api_query *q)
{
    free(q->limit);
    free(q->before);
    free(q->model);
    free(q->minutes);
    free(q->step);
}

static void
handle_api_models(struct router *r, struct http_request *req)
{
    struct api_ctx c;

    api_ctx_of(r, &c);
    api_models(req, &c);
}

static void
handle_api_model_action(struct router *r, struct http_request *req)
{
    struct api_ctx c;

    api_ctx_of(r, &c);
    api_model_action(req, &c, req->path + strlen("/api/models/"));
}

static void
handle_api_activity(struct router *r, struct http_request *req)
{
    struct api_query q;

    api_query_read(req, &q);
    api_activity(req, r->d.store, &q);
    api_query_free(&q);
}

static void
handle_api_series(struct router *r, struct http_request *req)
{
    struct api_query q;

    api_query_read(req, &q);
    api_activity_series(req, r->d.store, &q);
    api_query_free(&q);
}

static void
handle_api_audit(struct router *r, struct http_request *req)
{
    struct api_query q;

    api_query_read(req, &q);
    api_audit(req, r->d.store, &q);
    api_query_free(&q);
}

static const char *
key_which(const struct http_request *req)
{
    return req->path + strlen("/api/keys/");
}

static void
handle_keys_list(struct router *r, struct http_request *req)
{
    api_keys_list(req, r->d.keys);
}

static void
handle_keys_create(struct router *r, struct http_request *req)
{
    api_keys_create(req, r->d.keys);
}

static void
handle_keys_get(struct router *r, struct http_request *req)
{
    api_keys_get(req, r->d.keys, key_which(req));
}

static void
handle_keys_update(struct router *r, struct http_request *req)
{
    api_keys_update(req, r->d.keys, key_which(req));
}

static void
handle_keys_revoke(struct router *r, struct http_request *req)
{
    api_keys_revoke(req, r->d.keys, key_which(req));
}

static void
handle_tokens_mint(struct router *r, struct http_request *req)
{
    api_tokens_mint(req, r->d.keys);
}

static void
handle_ui(struct router *r, struct http_request *req)
{
    (void)r;
    admin_ui_page(req);
}

static void
handle_files(struct router *r, struct http_request *req)
{
    admin_files_list(req, &r->files, r->uploads, r->downloads);
}

static void
handle_file_delete(struct router *r, struct http_request *req)
{
    admin_files_delete(req, &r->files);
}

static void
handle_upload_create(struct router *r, struct http_request *req)
{
    admin_uploads_create(r->uploads, req);
}

static void
handle_upload_chunk(struct router *r, struct http_request *req)
{
    admin_uploads_chunk(r->uploads, req);
}

static void
handle_upload_status(struct router *r, struct http_request *req)
{
    admin_uploads_status(r->uploads, req);
}

static void
handle_upload_cancel(struct router *r, struct http_request *req)
{
    admin_uploads_cancel(r->uploads, req);
}

static void
handle_download_start(struct router *r, struct http_request *req)
{
    admin_downloads_start(r->downloads, req);
}

static void
handle_downloads(struct router *r, struct http_request *req)
{
    admin_downloads_list(r->downloads, req);
}

static void
handle_download_cancel(struct router *r, struct http_request *req)
{
    admin_downloads_cancel(r->downloads, req);
}

#define GI     ROUTER_SVC_GOINFER
#define INFER  ROUTER_SVC_INFER
#define LSWAP  ROUTER_SVC_SWAP         /* llama-swap's API beside /v1 */
#define TADMIN ROUTER_SVC_TUNNEL_ADMIN /* a server, on a GPU machine with client.allow_admin */

/* Exact paths; a path ending in '/' matches as a prefix. */
static void handle_openapi(struct router *r, struct http_request *req);

static const struct route routes[] = {
    {"GET", "/health", SVC_ANY | ROUTER_SVC_ADMIN, PUBLIC, handle_health},
    {"GET", TUNNEL_PATH, SVC_ANY, PUBLIC, handle_tunnel}, /* pins and a token proof instead */
    {"GET", "/v1/models", SVC_ANY | INFER, USER, handle_models},
    {"GET", "/models", GI | LSWAP, USER, handle_gguf_models},
    {"GET", "/models/sse", SVC_ANY | LSWAP, USER, handle_models_sse}, /* llama.cpp's state feed */
    {"GET", "/api/events", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_admin_events},
    {"GET", "/api/openapi.json", GI | LSWAP | ROUTER_SVC_ADMIN, PUBLIC, handle_openapi},
    /* admin API: engine */
    {"GET", "/api/engine", GI | ROUTER_SVC_ADMIN, ADMIN, handle_engine_get},
    {"POST", "/api/engine/build", GI | ROUTER_SVC_ADMIN, ADMIN, handle_engine_build},
    {"DELETE", "/api/engine/build", GI | ROUTER_SVC_ADMIN, ADMIN, handle_engine_cancel},
    {"POST", "/api/engine/use", GI | ROUTER_SVC_ADMIN, ADMIN, handle_engine_use},
    {"GET", "/ui", GI | LSWAP | ROUTER_SVC_ADMIN, PUBLIC, handle_ui},
    {"GET", "/ui/", GI | LSWAP | ROUTER_SVC_ADMIN, PUBLIC, handle_ui}, /* the app's files */
    {"GET", "/running", GI | LSWAP | ROUTER_SVC_ADMIN, USER, handle_running},
    {"POST", "/unload", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_unload},
    {"GET", "/unload", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_unload}, /* the seed's verb */
    /* one model: llama.cpp's router API and llama-swap's */
    {"POST", "/models/unload", SVC_ANY | ROUTER_SVC_ADMIN | TADMIN, ADMIN, handle_unload_model},
    {"POST", "/models/load", SVC_ANY | ROUTER_SVC_ADMIN | TADMIN, ADMIN, handle_load_model},
    /* the same on one GPU machine behind a tunnel, when its owner allows it */
    {"POST", "/api/fleet/load", GI | ROUTER_SVC_ADMIN, ADMIN, handle_fleet_load},
    {"POST", "/api/fleet/unload", GI | ROUTER_SVC_ADMIN, ADMIN, handle_fleet_unload},
    {"POST", "/api/models/unload", SVC_ANY | ROUTER_SVC_ADMIN, ADMIN, handle_unload},
    {"POST", "/api/models/unload/", SVC_ANY | ROUTER_SVC_ADMIN, ADMIN, handle_unload_model},
    {"GET", "/v1/models/", SVC_ANY | INFER, USER, handle_model_one},
    {"GET", "/logs", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_logs},
    {"POST", "/reload", GI | ROUTER_SVC_ADMIN, ADMIN, handle_reload},
    /* admin API: settings, restart */
    {"GET", "/api/config", GI | ROUTER_SVC_ADMIN, ADMIN, handle_config_get},
    {"POST", "/api/config/validate", GI | ROUTER_SVC_ADMIN, ADMIN, handle_config_validate},
    {"GET", "/api/config/diff", GI | ROUTER_SVC_ADMIN, ADMIN, handle_config_diff},
    {"PUT", "/api/config/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_config_put},
    {"GET", "/api/models/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_model_args}, /* <id>/args */
    {"PUT", "/api/models/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_model_args},
    {"POST", "/api/restart", GI | ROUTER_SVC_ADMIN, ADMIN, handle_restart},
    {"GET", "/metrics", GI | ROUTER_SVC_ADMIN, ADMIN, handle_metrics},
    /* admin API: models, activity, audit (store) */
    {"GET", "/api/models", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_api_models},
    {"POST", "/api/models/", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_api_model_action},
    {"GET", "/api/activity", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_api_activity},
    {"GET", "/api/activity/series", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_api_series},
    {"GET", "/api/audit", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_api_audit},
    /* admin API: virtual keys */
    {"GET", "/api/keys", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_keys_list},
    {"POST", "/api/keys", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_keys_create},
    {"GET", "/api/keys/", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_keys_get},
    {"PATCH", "/api/keys/", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_keys_update},
    {"DELETE", "/api/keys/", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_keys_revoke},
    {"POST", "/v1/tokens", SVC_ANY, USER, handle_tokens_mint}, /* a virtual key's browser token */
    {"GET", "/logs/stream", GI | LSWAP | ROUTER_SVC_ADMIN, ADMIN, handle_logs_stream},
    /* admin API: files, uploads, downloads */
    {"GET", "/api/files", GI | ROUTER_SVC_ADMIN, ADMIN, handle_files},
    {"DELETE", "/api/files/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_file_delete},
    {"POST", "/api/uploads", GI | ROUTER_SVC_ADMIN, ADMIN, handle_upload_create},
    {"PATCH", "/api/uploads/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_upload_chunk},
    {"PUT", "/api/uploads/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_upload_chunk},
    {"GET", "/api/uploads/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_upload_status},
    {"DELETE", "/api/uploads/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_upload_cancel},
    {"POST", "/api/downloads", GI | ROUTER_SVC_ADMIN, ADMIN, handle_download_start},
    {"GET", "/api/downloads", GI | ROUTER_SVC_ADMIN, ADMIN, handle_downloads},
    {"DELETE", "/api/downloads/", GI | ROUTER_SVC_ADMIN, ADMIN, handle_download_cancel},
    /* llama.cpp's native API, on Goinfer's listener */
    {"POST", "/completions", GI | INFER, USER, handle_proxy},
    {"POST", "/completion", GI | INFER, USER, handle_proxy},
    {"POST", "/infill", GI | INFER, USER, handle_proxy},
    {"POST", "/rerank", GI | INFER, USER, handle_proxy},
    {"POST", "/reranking", GI | INFER, USER, handle_proxy},
    {"POST", "/tokenize", GI | INFER, USER, handle_proxy},
    {"POST", "/detokenize", GI | INFER, USER, handle_proxy},
    {"POST", "/embedding", GI | INFER, USER, handle_proxy},
    {"POST", "/embeddings", GI | INFER, USER, handle_proxy},
    {"POST", "/apply-template", GI | INFER, USER, handle_proxy},
    {"GET", "/props", GI | INFER, USER, handle_props},
    {"GET", "/slots", GI | INFER, USER, handle_proxy},
    {"GET", "/tools", GI | INFER, USER, handle_tools},
    {"POST", "/tools", GI | INFER, USER, handle_tools},
    /* every OpenAI-style route llama-server has: chat, completions, embeddings, responses,
     * messages, rerank, audio transcriptions (multipart) */
    {"POST", "/v1/streams/lookup", SVC_ANY | INFER, USER, handle_streams_lookup},
    {"POST", "/v1/", SVC_ANY | INFER, USER, handle_proxy},
    {"*", "/upstream/", SVC_ANY, USER, handle_upstream},
};

/* GET /api/openapi.json: the table above, described (public: it holds no secret). */
static void
handle_openapi(struct router *r, struct http_request *req)
{
    size_t n = sizeof(routes) / sizeof(routes[0]);
    struct openapi_route *v = xcalloc(n, sizeof(*v));

    (void)r;
    for (size_t i = 0; i < n; i++)
        v[i] = (struct openapi_route){routes[i].method, routes[i].path,
                                      (enum openapi_access)routes[i].access};
    http_respond_json(req, 200, openapi_document(v, n, goinfer_version));
    free(v);
}

/* HEAD is answered wherever GET is, as HTTP wants. */
static bool
method_matches(const char *route, const char *method)
{
    return strcmp(route, "*") == 0 || strcmp(route, method) == 0 ||
           (strcmp(route, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

static bool
path_matches(const struct route *rt, const char *path)
{
    size_t n = strlen(rt->path);

    if (rt->path[n - 1] == '/')
        return strncmp(path, rt->path, n) == 0 && path[n] != '\0';
    return strcmp(path, rt->path) == 0;
}

/* "localhost", "[::1]", or an IPv4 literal in 127.0.0.0/8, with or without a port: a name
 * that only starts with "127." is anyone's DNS name. */
static bool
loopback_name(const char *h, size_t n)
{
    static const char *const names[] = {"localhost", "[::1]"};
    size_t host_len = n;
    char v4[INET_ADDRSTRLEN];
    struct in_addr a;

    if (n > 0 && h[0] != '[') { /* strip :port */
        const char *colon = memchr(h, ':', n);

        host_len = colon ? (size_t)(colon - h) : n;
    } else if (n > 0) {
        const char *end = memchr(h, ']', n);

        host_len = end ? (size_t)(end - h) + 1 : n;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == host_len && strncasecmp(h, names[i], host_len) == 0)
            return true;
    if (host_len == 0 || host_len >= sizeof(v4))
        return false;
    memcpy(v4, h, host_len);
    v4[host_len] = '\0';
    return inet_pton(AF_INET, v4, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Without a key, only loopback names are served: a web page could otherwise reach us through
 * DNS rebinding (its own name resolving to 127.0.0.1). */
static bool
host_allowed(struct router *r, struct http_request *req)
{
    size_t n = 0;
    const char *host = http_header_get(req, "host", &n);

    if (!auth_open(r->d.auth) || host == NULL || loopback_name(host, n))
        return true;
    http_respond_error(req, 403, "permission_error",
                       "host %.*s refused: without an API key only localhost is served "
                       "(set api_key in goinfer.yml or GI_API_KEY)",
                       (int)n, host);
    return false;
}

/* A virtual key or a browser token: inference routes only, never the admin ones. */
static bool
authorized_virtual(struct router *r, struct http_request *req, enum access need, const char *key,
                   size_t len)
{
    struct broker_refusal why;

    if (need == ADMIN) {
        http_respond_error(req, 403, "permission_error",
                           "%s %s needs the admin key; a virtual key opens the inference routes",
                           req->method_name, req->path);
        return false;
    }
    if (broker_admit(r->d.keys, req, key, len, (int64_t)time(NULL), &why) < 0) {
        api_keys_refuse(req, &why);
        return false;
    }
    return true;
}

/* USER routes take a user or an admin key; ADMIN routes an admin key (the user key when no
 * admin key is configured). */
static bool
authorized(struct router *r, struct http_request *req, enum access need)
{
    size_t len = 0;
    char scratch[AUTH_BASIC_MAX];
    const char *key = auth_request_key(req, scratch, &len), *name;

    if (need == PUBLIC)
        return true;
    if (r->d.keys != NULL && broker_is_virtual(key, len))
        return authorized_virtual(r, req, need, key, len);
    name = auth_which(need == ADMIN ? r->d.admin_auth : r->d.auth, key, len);
    if (name != NULL) { /* which key, for the activity and the audit trail; never the key */
        snprintf(req->key_name, sizeof(req->key_name), "%s", name);
        return true;
    }
    /* A server's request through its tunnel (pinned both ways, token-proven) to a route this
     * machine's owner opened with client.allow_admin: only TADMIN routes match it at all. */
    if (need == ADMIN && (req->services & ROUTER_SVC_TUNNEL_ADMIN) != 0) {
        snprintf(req->key_name, sizeof(req->key_name), "%s", "tunnel server");
        return true;
    }
    if (need == ADMIN && key != NULL && auth_check(r->d.auth, key, len)) {
        http_respond_error(req, 403, "permission_error",
                           "%s %s needs the admin key (admin_api_key in goinfer.yml)",
                           req->method_name, req->path);
        return false;
    }
    http_add_header(req, "WWW-Authenticate", "Bearer realm=\"goinfer\"", 22);
    http_respond_error(req, 401, "authentication_error",
                       key ? "invalid API key"
                           : "missing API key: send 'Authorization: Bearer "
                             "<key>' (or 'x-api-key: <key>', or Basic with the key as password)");
    return false;
}

static void
handle_preflight(struct router *r, struct http_request *req)
{
    (void)r;
    cors_preflight(req);
}

/* llama.cpp's web UI: static files, public, never starting a model; or, with no files,
 * llama-server's own page from a running model (the default one started if none runs). */
static void
handle_static(struct router *r, struct http_request *req)
{
    const struct model_def *m;

    if (r->d.ui_dir == NULL) {
        m = static_page_model(r->d.cat, r->d.swap, r->d.default_model, r->d.store);
        if (m == NULL) {
            http_respond_error(req, 503, "no_model",
                               "llama.cpp's web UI is llama-server's own page here, and there is "
                               "no model to run llama-server for (put *.gguf under GI_MODELS_DIR)");
            return;
        }
        req->log_model = xstrdup(m->name);
        proxy_forward(req, r->d.swap, m, req->path, r->d.upstream_idle_s, NULL);
    } else if (!static_serve(r->d.ui_dir, req)) {
        http_respond_error(req, 404, "not_found", "no endpoint %s %s on this listener",
                           req->method_name, req->path);
    }
}

static const struct route preflight_route = {"OPTIONS", "", SVC_ANY | ROUTER_SVC_ADMIN, PUBLIC,
                                             handle_preflight};
static const struct route static_route = {"GET", "", GI, PUBLIC, handle_static};

/* The route for req's method and path on its listener; answers 404/405 when there is none. */
static const struct route *
find_route(struct router *r, struct http_request *req)
{
    bool path_known = false;
    char allow[64] = "";

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];
        size_t n = strlen(allow);

        if (!path_matches(rt, req->path) || !(rt->services & req->services))
            continue;
        path_known = true;
        if (method_matches(rt->method, req->method_name))
            return rt;
        snprintf(allow + n, sizeof(allow) - n, "%s%s%s", n ? ", " : "", rt->method,
                 strcmp(rt->method, "GET") == 0 ? ", HEAD" : "");
    }
    if (!path_known && (req->services & ROUTER_SVC_GOINFER) &&
        method_matches("GET", req->method_name) &&
        (r->d.ui_dir || (r->d.ui_proxy && static_page_path(req->path))))
        return &static_route;
    if (path_known) { /* RFC 9110: a 405 says which methods the target takes */
        http_add_header(req, "Allow", allow, strlen(allow));
        http_respond_error(req, 405, "invalid_request_error", "method %s not allowed on %s",
                           req->method_name, req->path);
    } else
        http_respond_error(req, 404, "not_found", "no endpoint %s %s on this listener",
                           req->method_name, req->path);
    return NULL;
}

/* What a virtual key may reach: what is metered (inference), the model list, its tokens. */
static bool
virtual_route(const struct route *rt)
{
    return rt->handle == handle_proxy || rt->handle == handle_models ||
           rt->handle == handle_model_one || rt->handle == handle_tokens_mint;
}

bool
router_admit(struct http_request *req, void *arg)
{
    struct router *r = arg;
    const struct route *rt;

    switch (
        cors_handle_with(r->d.origins, r->d.keys ? broker_origin_known : NULL, r->d.keys, req)) {
    case CORS_REFUSED:
        return false;
    case CORS_PREFLIGHT:
        req->route = &preflight_route;
        return true;
    case CORS_PASS:
        break;
    }
    if (!host_allowed(r, req))
        return false;
    rt = find_route(r, req);
    if (rt == NULL || !authorized(r, req, rt->access))
        return false;
    if (req->grant != NULL && !virtual_route(rt)) {
        http_respond_error(req, 403, "permission_error",
                           "a virtual key opens the inference routes (/v1/...), not %s %s",
                           req->method_name, req->path);
        return false;
    }
    if (rt->path[0] != '\0' && rt->path[strlen(rt->path) - 1] == '/' &&
        has_dot_segment(req->path)) { /* a prefix route must not reach past its prefix */
        http_respond_error(req, 400, "invalid_request_error",
                           "path segments '.' and '..' are not allowed in %s", rt->path);
        return false;
    }
    req->route = rt;
    return true;
}

bool
router_is_activity(const struct http_request *req)
{
    const struct route *rt = req->route;

    return rt != NULL && rt != &static_route && rt != &preflight_route && rt->access == USER &&
           req->log_model != NULL;
}

void
router_handle(struct http_request *req, void *arg)
{
    struct router *r = arg;

    if (req->route == NULL && !router_admit(req, arg))
        return;
    ((const struct route *)req->route)->handle(r, req);
}

static void
files_env_from(struct router *r)
{
    r->files.loop = r->d.loop;
    r->files.models_dir = r->d.models_dir;
    r->files.admin = r->d.admin;
    r->files.chunk_max = r->d.body_bytes;
    r->files.cat = r->d.cat;
    r->files.swap = r->d.swap;
    r->files.reload = r->d.reload;
    r->files.reload_arg = r->d.reload_arg;
}

struct router *
router_new(const struct router_deps *deps)
{
    struct router *r = xcalloc(1, sizeof(*r));

    r->d = *deps;
    r->px = peerlist_extra(deps->peer_lists);
    r->started = time(NULL);
    files_env_from(r);
    r->uploads = admin_uploads_new(&r->files);
    r->downloads = admin_downloads_new(&r->files);
    return r;
}

void
router_set_deps(struct router *r, const struct router_deps *deps)
{
    r->d = *deps;
    files_env_from(r);
    r->px = peerlist_extra(deps->peer_lists);
}

void
router_free(struct router *r)
{
    if (r == NULL)
        return;
    admin_uploads_free(r->uploads);
    admin_downloads_free(r->downloads);
    free(r);
}
