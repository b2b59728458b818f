/* The admin JSON API over the store: models and their settings, activity, series, audit. */
#include "admin/api_models.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/audit.h"
#include "http/errors.h"
#include "proc/argv.h"

#define HOUR_MS       (3600 * 1000)
#define DEFAULT_LIMIT 100

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A whole number in [min, max] from a query value, dflt when absent; -EINVAL after answering
 * 400 with what was wrong and what is accepted. */
static int
query_number(struct http_request *req, const char *name, const char *v, int64_t dflt, int64_t min,
             int64_t max, int64_t *out)
{
    char *end = NULL;
    long long n;

    *out = dflt;
    if (v == NULL)
        return 0;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno == 0 && end != v && *end == '\0' && n >= min && n <= max) {
        *out = n;
        return 0;
    }
    http_respond_error(req, 400, "invalid_request_error",
                       "%s must be a whole number from %lld to %lld (got '%.64s')", name,
                       (long long)min, (long long)max, v);
    return -EINVAL;
}

static bool
store_missing(struct http_request *req, const struct store *st)
{
    if (st != NULL)
        return false;
    http_respond_error(req, 503, "store_unavailable",
                       "the admin store is not open here; see the start-up log (admin.state_dir)");
    return true;
}

/* The words a model runs with (its port as ${PORT}); a key's value is never shown. */
static json_t *
argv_json(const struct model_def *m)
{
    char **argv = NULL;
    json_t *a;

    if (catalog_argv(m, "${PORT}", &argv) < 0)
        return json_null();
    a = json_array();
    for (size_t i = 0; argv[i] != NULL; i++) {
        bool key = i > 0 && (strcmp(argv[i - 1], "--api-key") == 0 ||
                             strcmp(argv[i - 1], "--api-key-file") == 0);

        json_array_append_new(a, json_string(key ? "<hidden>" : argv[i]));
    }
    proc_argv_free(argv);
    return a;
}

const char *
api_model_disabled_by(const struct store *st, const struct model_def *m)
{
    if (!store_model_enabled(st, m->name))
        return m->name;
    if (strncmp(m->name, "GI_", 3) == 0 && m->use_model_name != NULL &&
        !store_model_enabled(st, m->use_model_name))
        return m->use_model_name;
    return NULL;
}

bool
api_model_enabled(const struct store *st, const struct model_def *m)
{
    return api_model_disabled_by(st, m) == NULL;
}

void
api_models(struct http_request *req, const struct api_ctx *c)
{
    json_t *recent, *data = json_array();

    if (store_missing(req, c->store)) {
        json_decref(data);
        return;
    }
    recent = store_recent_json(c->store, wall_ms() - HOUR_MS);
    for (size_t i = 0; i < c->cat->n; i++) {
        const struct model_def *m = &c->cat->v[i];
        json_t *o = c->describe(m, c->arg), *r = json_object_get(recent, m->name);
        int64_t load = swap_last_load_ms(c->swap, m);

        json_object_set_new(o, "enabled", json_boolean(api_model_enabled(c->store, m)));
        json_object_set_new(o, "unlisted", json_boolean(m->unlisted));
        json_object_set_new(o, "argv", argv_json(m));
        json_object_set_new(o, "last_load_ms", load >= 0 ? json_integer(load) : json_null());
        json_object_set_new(o, "requests_last_hour",
                            r ? json_incref(json_object_get(r, "requests")) : json_integer(0));
        json_object_set_new(o, "tokens_per_s",
                            r ? json_incref(json_object_get(r, "tokens_per_s")) : json_null());
        json_array_append_new(data, o);
    }
    json_decref(recent);
    http_respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* rest: "<id>/enable" or "<id>/disable" (an id may hold '/': the verb is the last segment). */
void
api_model_action(struct http_request *req, const struct api_ctx *c, const char *rest)
{
    const char *slash = strrchr(rest, '/'), *verb = slash ? slash + 1 : "";
    bool enable = strcmp(verb, "enable") == 0;
    const struct model_def *m;
    int stopping = 0;

    if (store_missing(req, c->store))
        return;
    if (slash == NULL || slash == rest || (!enable && strcmp(verb, "disable") != 0)) {
        http_respond_error(req, 404, "not_found",
                           "no endpoint POST %s; use POST /api/models/<id>/enable or "
                           "/api/models/<id>/disable",
                           req->path);
        return;
    }
    m = catalog_find(c->cat, rest, (size_t)(slash - rest));
    if (m == NULL) {
        http_respond_error(req, 404, "model_not_found",
                           "model '%.*s' is not a model of this machine (see GET /api/models)",
                           (int)(slash - rest), rest);
        return;
    }
    if (store_model_set_enabled(c->store, m->name, enable) < 0) {
        audit_record(req, enable ? "model.enable" : "model.disable", m->name, 500);
        http_respond_error(req, 500, "store_error",
                           "could not save the setting of %s in the admin store; see GET /logs "
                           "(is admin.state_dir writable and its disk not full?)",
                           m->name);
        return;
    }
    for (size_t i = 0; !enable && i < c->cat->n; i++) /* it and its GI_ variant stop (once idle) */
        if (!api_model_enabled(c->store, &c->cat->v[i]))
            stopping += swap_unload(c->swap, &c->cat->v[i]);
    audit_record(req, enable ? "model.enable" : "model.disable", m->name, 200);
    http_respond_json(
        req, 200,
        json_pack("{s:s, s:b, s:i}", "model", m->name, "enabled", enable, "stopping", stopping));
}

void
api_activity(struct http_request *req, struct store *st, const struct api_query *q)
{
    int64_t limit, before;

    if (store_missing(req, st) ||
        query_number(req, "limit", q->limit, DEFAULT_LIMIT, 1, STORE_LIMIT_MAX, &limit) < 0 ||
        query_number(req, "before", q->before, 0, 0, INT64_MAX, &before) < 0)
        return;
    http_respond_json(req, 200, store_activity_json(st, (size_t)limit, before, q->model));
}

void
api_activity_series(struct http_request *req, struct store *st, const struct api_query *q)
{
    int64_t minutes, step, n;

    if (store_missing(req, st) ||
        query_number(req, "minutes", q->minutes, 60, 1, 7 * 24 * 60, &minutes) < 0 ||
        query_number(req, "step", q->step, 60, 1, 24 * 3600, &step) < 0)
        return;
    n = (minutes * 60 + step - 1) / step;
    if (n > STORE_BUCKETS_MAX) {
        http_respond_error(req, 400, "invalid_request_error",
                           "minutes=%lld with step=%lld makes %lld steps; at most %d: raise step "
                           "(seconds) or lower minutes",
                           (long long)minutes, (long long)step, (long long)n, STORE_BUCKETS_MAX);
        return;
    }
    http_respond_json(req, 200, store_series_json(st, wall_ms(), minutes, step));
}

void
api_audit(struct http_request *req, struct store *st, const struct api_query *q)
{
    int64_t limit;

    if (store_missing(req, st) ||
        query_number(req, "limit", q->limit, DEFAULT_LIMIT, 1, STORE_LIMIT_MAX, &limit) < 0)
        return;
    http_respond_json(req, 200, store_audit_json(st, (size_t)limit));
}

/* Tokens per second as llama-server reported them, else from the count and generation time. */
static double
tokens_per_s(const struct http_usage *u)
{
    if (!u->reported)
        return -1;
    if (u->tokens_per_s >= 0)
        return u->tokens_per_s;
    if (u->completion_tokens > 0 && u->predicted_ms > 0)
        return (double)u->completion_tokens * 1000 / u->predicted_ms;
    return -1;
}

void
api_activity_record(struct store *st, const struct http_request *req)
{
    const struct http_usage *u = &req->usage;
    double ms = (double)(uv_hrtime() - req->t_start) / 1e6;
    struct store_activity a = {
        .t_ms = wall_ms() - (int64_t)ms, /* when it began */
        .model = req->log_model,
        .backend = req->log_backend,
        .key = req->key_name,
        .client = http_request_peer(req),
        .method = req->method_name,
        .path = req->path,
        .status = req->status,
        .prompt_tokens = u->reported ? u->prompt_tokens : -1,
        .completion_tokens = u->reported ? u->completion_tokens : -1,
        .ttft_ms = u->reported ? u->ttft_ms : -1,
        .tokens_per_s = tokens_per_s(u),
        .duration_ms = ms,
    };

    store_activity_add(st, &a);
}
