/* The admin API of virtual keys (/api/keys) and the browser tokens' endpoint (POST
 * /v1/tokens): JSON in, JSON out, over the key broker. */
#ifndef GOINFER_ADMIN_KEYS_API_H
#define GOINFER_ADMIN_KEYS_API_H

#include "http/request.h"

struct broker;
struct broker_refusal;

/* ks NULL: answered 503 (no ledger). */
void api_keys_list(struct http_request *req, struct broker *ks);
void api_keys_create(struct http_request *req, struct broker *ks);
/* which: the path past "/api/keys/" (an id or a name). */
void api_keys_get(struct http_request *req, struct broker *ks, const char *which);
void api_keys_update(struct http_request *req, struct broker *ks, const char *which);
void api_keys_revoke(struct http_request *req, struct broker *ks, const char *which);
void api_tokens_mint(struct http_request *req, struct broker *ks);
/* A refusal of the broker's, answered in OpenAI's shape (with Retry-After for a 429). */
void api_keys_refuse(struct http_request *req, const struct broker_refusal *why);

#endif
