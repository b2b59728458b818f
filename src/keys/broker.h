/*
 * The key broker: the virtual keys and browser tokens in memory, on the loop, in front of
 * every backend. A request with a virtual key is admitted from its head (secret, revocation,
 * expiry, origin, requests per minute), reserves its worst case once its body is read (model
 * patterns, max_tokens cap, budgets, tokens per minute), and settles when it ends: the
 * reservation is released and the reported usage counted and queued for the ledger.
 *
 * Why reservations cannot be overrun: the budget check and the reservation happen in one call
 * on the loop thread, so no two requests see the same headroom; what a request may spend at
 * most is counted before it starts. The ledger stores settled spend; reservations live in
 * memory (a restart drops them with the requests that held them).
 */
#ifndef GOINFER_KEYS_BROKER_H
#define GOINFER_KEYS_BROKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/request.h"
#include "keys/ledger.h"

#define BROKER_TOKEN_TTL_MAX 3600 /* seconds a browser token may live */
#define BROKER_TOKENS_MAX    100000
#define BROKER_TOKEN_GRACE                                                                         \
    600                      /* seconds an expired token's origin still passes CORS, so its        \
                                page reads the 401 that says why */
#define BROKER_WATCH_MS 1000 /* how often the ledger is looked at for the command line's edits */

struct broker;

/* Why a request was refused: status (401, 402, 403, 429, 400), OpenAI's error type, a message
 * for the client, and for 429 the seconds to wait. */
struct broker_refusal {
    int status;
    const char *type;
    char msg[384];
    int64_t retry_after;
};

/* Takes ownership of l; loads its keys. loop may be NULL (no watch). */
struct broker *broker_new(uv_loop_t *loop, struct ledger *l);
void broker_free(struct broker *ks);
/* Reads the ledger's keys again (after an edit from the command line or the API). */
void broker_sync(struct broker *ks);

/* Whether a presented secret is a virtual key's or a browser token's (by its prefix). */
bool broker_is_virtual(const char *secret, size_t len);
/* Admission from the head. Returns 0 (req->grant set, req->key_name the key's name) or -1 with
 * why filled. now: Unix seconds. */
int broker_admit(struct broker *ks, struct http_request *req, const char *secret, size_t len,
                 int64_t now, struct broker_refusal *why);
/* With the body read and the model known: the model against the patterns, max_tokens against
 * the cap (written into the body when absent), then the worst case reserved. 0, or -1. */
int broker_reserve(struct broker *ks, struct http_request *req, const char *model, int64_t now,
                   struct broker_refusal *why);
/* When the request ends, whatever its status: releases, counts, queues for the ledger, frees
 * req->grant. No-op without a grant. */
void broker_settle(struct broker *ks, struct http_request *req, int64_t now);
/* Whether req's grant came from a browser token (tokens mint no tokens). */
bool broker_grant_is_token(const struct http_request *req);
/* CORS: an origin some live key or token names. */
bool broker_origin_known(void *ks, const char *origin, size_t len);

/* The admin API and the command line (a broker made with no loop). which: a key's id or name.
 * Each returns a JSON answer, or NULL with err and *status set. */
json_t *broker_list(struct broker *ks, int64_t now);
json_t *broker_get(struct broker *ks, const char *which, int64_t now, int *status, char *err,
                   size_t errlen);
/* The answer holds "secret": the only time it is shown. */
json_t *broker_create(struct broker *ks, const json_t *spec, int64_t now, int *status, char *err,
                      size_t errlen);
json_t *broker_update(struct broker *ks, const char *which, const json_t *spec, int64_t now,
                      int *status, char *err, size_t errlen);
json_t *broker_revoke(struct broker *ks, const char *which, int64_t now, int *status, char *err,
                      size_t errlen);
/* POST /v1/tokens with req's virtual key: {"origin", "models", "ttl", "budget_usd",
 * "budget_tokens"} → {"token", "expires", ...}. */
json_t *broker_mint(struct broker *ks, const struct http_request *req, const json_t *spec,
                    int64_t now, int *status, char *err, size_t errlen);
struct ledger *broker_ledger(struct broker *ks);

#endif
