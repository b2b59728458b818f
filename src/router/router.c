#include "router.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "router/proxy.h"
#include "router/select.h"

#define SVC_ANY (ROUTER_SVC_GOINFER | ROUTER_SVC_OPENAI)

struct router {
    struct router_deps d;
    time_t started;
};

typedef void (*route_cb)(struct router *r, struct http_request *req);

struct route {
    const char *method;
    const char *path;
    unsigned services;
    bool public;
    route_cb handle;
};

static void
respond_json(struct http_request *req, int status, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);

    http_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(o);
}

static void
handle_health(struct router *r, struct http_request *req)
{
    respond_json(req, 200,
                 json_pack("{s:s, s:i, s:o}", "status", "ok", "models", (int)r->d.models->n,
                           "running", swap_running(r->d.swap)));
}

static void
handle_models(struct router *r, struct http_request *req)
{
    json_t *data = json_array();

    for (size_t i = 0; i < r->d.models->n; i++)
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s}", "id",
                                              r->d.models->v[i].name, "object", "model",
                                              "created", (json_int_t)r->started, "owned_by",
                                              "goinfer"));
    respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* "a, b, c" for error messages that tell the user what they could have asked for. */
static char *
model_names(const struct model_list *l)
{
    struct buf b;
    char *s;

    buf_init(&b, 64 * 1024);
    for (size_t i = 0; i < l->n; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", l->v[i].name);
    if (l->n == 0)
        buf_printf(&b, "(none: put *.gguf files under GI_MODELS_DIR)");
    s = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return s;
}

static const struct model_entry *
pick_model(struct router *r, struct http_request *req)
{
    char err[512], *name = NULL, *names;
    const struct model_entry *m = NULL;

    if (select_model_from_json(req->body.data, req->body.len, &name, err, sizeof(err)) < 0) {
        http_respond_error(req, 400, "invalid_request_error", "%s", err);
        return NULL;
    }
    if (name == NULL && r->d.default_model)
        name = xstrdup(r->d.default_model);
    if (name == NULL && r->d.models->n > 0)
        name = xstrdup(r->d.models->v[0].name);
    if (name != NULL)
        m = model_list_find(r->d.models, name, strlen(name));
    req->log_model = name; /* owned by the request from here */
    if (m == NULL) {
        names = model_names(r->d.models);
        http_respond_error(req, 404, "model_not_found",
                           "model '%s' not found; available models: %s", name ? name : "", names);
        free(names);
    }
    return m;
}

static void
handle_proxy(struct router *r, struct http_request *req)
{
    const struct model_entry *m = pick_model(r, req);

    if (m != NULL)
        proxy_forward(req, r->d.swap, r->d.client, m);
}

static const struct route routes[] = {
    {"GET", "/health", SVC_ANY | ROUTER_SVC_ADMIN, true, handle_health},
    {"GET", "/v1/models", SVC_ANY, false, handle_models},
    {"POST", "/v1/chat/completions", SVC_ANY, false, handle_proxy},
    {"POST", "/v1/completions", SVC_ANY, false, handle_proxy},
    {"POST", "/completions", ROUTER_SVC_GOINFER, false, handle_proxy},
    {"POST", "/completion", ROUTER_SVC_GOINFER, false, handle_proxy},
};

static bool
authorized(struct router *r, struct http_request *req)
{
    size_t len = 0;
    const char *key = auth_request_key(req, &len);

    if (auth_check(r->d.auth, key, len))
        return true;
    http_respond_error(req, 401, "authentication_error",
                       key ? "invalid API key" : "missing API key: send 'Authorization: Bearer "
                                                 "<key>' (or 'x-api-key: <key>')");
    return false;
}

void
router_handle(struct http_request *req, void *arg)
{
    struct router *r = arg;
    bool path_known = false;

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];

        if (strcmp(rt->path, req->path) != 0 || !(rt->services & req->services))
            continue;
        path_known = true;
        if (strcmp(rt->method, req->method_name) != 0)
            continue;
        if (!rt->public && !authorized(r, req))
            return;
        rt->handle(r, req);
        return;
    }
    if (path_known)
        http_respond_error(req, 405, "invalid_request_error", "method %s not allowed on %s",
                           req->method_name, req->path);
    else
        http_respond_error(req, 404, "not_found", "no endpoint %s %s on this listener",
                           req->method_name, req->path);
}

struct router *
router_new(const struct router_deps *deps)
{
    struct router *r = xcalloc(1, sizeof(*r));

    r->d = *deps;
    r->started = time(NULL);
    return r;
}

void
router_free(struct router *r)
{
    free(r);
}
