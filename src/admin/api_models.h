/*
 * The admin JSON API over the store: the models with their settings and figures, enable and
 * disable, the activity (rows and per-model series for charts) and the audit trail. The router
 * decides who may call them (the admin key), reads the query, and hands them what they act on.
 */
#ifndef GOINFER_ADMIN_API_MODELS_H
#define GOINFER_ADMIN_API_MODELS_H

#include <jansson.h>

#include "admin/store.h"
#include "http/server.h"
#include "models/catalog.h"
#include "swap/swap.h"

/* What the handlers act on. describe gives a model's listing object (as GET /models shows it,
 * with its status); owned by the caller. */
struct api_ctx {
    const struct catalog *cat;
    struct swap *swap;
    struct store *store;
    json_t *(*describe)(const struct model_def *m, void *arg);
    void *arg;
};

/* A request's query values, as the router read them (percent-decoded, owned by the caller;
 * NULL when absent). */
struct api_query {
    char *limit, *before, *model, *minutes, *step;
};

/* Whether m may be listed and started: neither it nor, for a GI_<name> variant, <name> is
 * disabled in st (the variant runs the same file). st NULL: every model. */
bool api_model_enabled(const struct store *st, const struct model_def *m);
/* The name whose setting disables m (its own, or its variant's base), or NULL when enabled. */
const char *api_model_disabled_by(const struct store *st, const struct model_def *m);
/* GET /api/models: every model, disabled and unlisted ones too. */
void api_models(struct http_request *req, const struct api_ctx *c);
/* POST /api/models/<id>/enable and /disable: rest is the path past "/api/models/". */
void api_model_action(struct http_request *req, const struct api_ctx *c, const char *rest);
/* GET /api/activity?limit=&before=&model=, newest first. */
void api_activity(struct http_request *req, struct store *st, const struct api_query *q);
/* GET /api/activity/series?minutes=&step= */
void api_activity_series(struct http_request *req, struct store *st, const struct api_query *q);
/* GET /api/audit?limit= */
void api_audit(struct http_request *req, struct store *st, const struct api_query *q);

/* A finished request as a row of the activity (the server's completion hook). */
void api_activity_record(struct store *st, const struct http_request *req);

#endif
