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
/* The same, with a name for each key ("api_key", "apiKeys[2]"), copied: what the activity and
 * the audit trail say of the key a request presented, never the key itself. names may be NULL. */
struct auth *auth_new_named(const char *const *keys, const char *const *names);
void auth_free(struct auth *a);
bool auth_open(const struct auth *a);
#define AUTH_BASIC_MAX 512 /* decoded Basic credentials; longer ones present an empty key */

/* The key a request presents, or NULL; sets *len. As llama-swap reads it: the password of
 * "Authorization: Basic" (decoded into scratch), else Bearer's token, else x-api-key. */
const char *auth_request_key(const struct http_request *req, char scratch[AUTH_BASIC_MAX],
                             size_t *len);
bool auth_check(const struct auth *a, const char *key, size_t len);
/* The name of the key that matches (the first, when one is listed twice): "" when the list is
 * open (no key needed) or the key has no name; NULL when no key matches. */
const char *auth_which(const struct auth *a, const char *key, size_t len);

#endif
