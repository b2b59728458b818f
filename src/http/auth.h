/* API keys: Bearer, Basic (its password) or x-api-key, compared in constant time through their
 * SHA-256. */
#ifndef GOINFER_HTTP_AUTH_H
#define GOINFER_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"

struct auth;

/* keys: NULL-terminated list (copied); an empty list admits everyone. */
struct auth *auth_new(const char *const *keys);
void auth_free(struct auth *a);
bool auth_open(const struct auth *a);
#define AUTH_BASIC_MAX 512 /* decoded Basic credentials; longer ones present an empty key */

/* The key a request presents, or NULL; sets *len. As llama-swap reads it: the password of
 * "Authorization: Basic" (decoded into scratch), else Bearer's token, else x-api-key. */
const char *auth_request_key(const struct http_request *req, char scratch[AUTH_BASIC_MAX],
                             size_t *len);
bool auth_check(const struct auth *a, const char *key, size_t len);

#endif
