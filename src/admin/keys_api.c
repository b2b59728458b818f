#include "keys_api.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin/audit.h"
#include "http/errors.h"
#include "http/server.h"
#include "keys/broker.h"

static bool
have(struct http_request *req, struct broker *ks)
{
    if (ks == NULL)
        http_respond_error(req, 503, "unavailable", "the keys' ledger is not open");
    return ks != NULL;
}

static json_t *
body_json(struct http_request *req)
{
    json_error_t e;
    json_t *o =
        json_loadb(req->body.len ? req->body.data : "{}", req->body.len ? req->body.len : 2, 0, &e);

    if (!json_is_object(o)) {
        json_decref(o);
        http_respond_error(req, 400, "invalid_request_error", "expected a JSON object: %s", e.text);
        return NULL;
    }
    return o;
}

/* Answers o (taken) or the error; audited when action is not NULL. */
static void
answer(struct http_request *req, json_t *o, int ok, int status, const char *err, const char *action,
       const char *target)
{
    if (action != NULL)
        audit_record(req, action, target, o ? ok : status);
    if (o != NULL)
        http_respond_json(req, ok, o);
    else
        http_respond_error(req, status, status == 404 ? "not_found" : "invalid_request_error", "%s",
                           err);
}

void
api_keys_list(struct http_request *req, struct broker *ks)
{
    if (have(req, ks))
        http_respond_json(req, 200, broker_list(ks, (int64_t)time(NULL)));
}

void
api_keys_create(struct http_request *req, struct broker *ks)
{
    char err[256] = "";
    int status = 400;
    json_t *spec, *o, *name;

    if (!have(req, ks) || (spec = body_json(req)) == NULL)
        return;
    name = json_object_get(spec, "name");
    o = broker_create(ks, spec, (int64_t)time(NULL), &status, err, sizeof(err));
    answer(req, o, 201, status, err, "key.create", json_string_value(name));
    json_decref(spec);
}

void
api_keys_get(struct http_request *req, struct broker *ks, const char *which)
{
    char err[256] = "";
    int status = 404;

    if (have(req, ks))
        answer(req, broker_get(ks, which, (int64_t)time(NULL), &status, err, sizeof(err)), 200,
               status, err, NULL, NULL);
}

void
api_keys_update(struct http_request *req, struct broker *ks, const char *which)
{
    char err[256] = "";
    int status = 400;
    json_t *spec, *o;

    if (!have(req, ks) || (spec = body_json(req)) == NULL)
        return;
    o = broker_update(ks, which, spec, (int64_t)time(NULL), &status, err, sizeof(err));
    answer(req, o, 200, status, err, "key.update", which);
    json_decref(spec);
}

void
api_keys_revoke(struct http_request *req, struct broker *ks, const char *which)
{
    char err[256] = "";
    int status = 404;

    if (have(req, ks))
        answer(req, broker_revoke(ks, which, (int64_t)time(NULL), &status, err, sizeof(err)), 200,
               status, err, "key.revoke", which);
}

void
api_tokens_mint(struct http_request *req, struct broker *ks)
{
    char err[256] = "";
    int status = 400;
    json_t *spec, *o;

    if (!have(req, ks) || (spec = body_json(req)) == NULL)
        return;
    o = broker_mint(ks, req, spec, (int64_t)time(NULL), &status, err, sizeof(err));
    if (o != NULL)
        http_respond_json(req, status, o);
    else
        http_respond_error(req, status,
                           status == 403 ? "permission_error" : "invalid_request_error", "%s", err);
    json_decref(spec);
}

void
api_keys_refuse(struct http_request *req, const struct broker_refusal *why)
{
    static char retry[24]; /* borrowed by the response's head: written before the next */

    if (why->status == 429) {
        snprintf(retry, sizeof(retry), "%lld", (long long)why->retry_after);
        http_add_header(req, "Retry-After", retry, strlen(retry));
    }
    if (why->status == 401)
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"goinfer\"", 22);
    http_respond_error(req, why->status, why->type, "%s", why->msg);
}
