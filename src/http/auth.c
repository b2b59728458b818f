#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"

#define DIGEST_LEN 32

struct auth {
    unsigned char (*digests)[DIGEST_LEN];
    char **names; /* one per key, "" when unnamed */
    size_t n;
};

static void
digest(const char *p, size_t n, unsigned char out[DIGEST_LEN])
{
    unsigned int len = DIGEST_LEN;

    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

struct auth *
auth_new_named(const char *const *keys, const char *const *names)
{
    struct auth *a = xcalloc(1, sizeof(*a));

    while (keys && keys[a->n])
        a->n++;
    a->digests = xcalloc(a->n ? a->n : 1, DIGEST_LEN);
    a->names = xcalloc(a->n ? a->n : 1, sizeof(*a->names));
    for (size_t i = 0; i < a->n; i++) {
        digest(keys[i], strlen(keys[i]), a->digests[i]);
        a->names[i] = xstrdup(names && names[i] ? names[i] : "");
    }
    return a;
}

struct auth *
auth_new(const char *const *keys)
{
    return auth_new_named(keys, NULL);
}

void
auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    OPENSSL_cleanse(a->digests, a->n * DIGEST_LEN);
    free(a->digests);
    for (size_t i = 0; i < a->n; i++)
        free(a->names[i]);
    free(a->names);
    free(a);
}

bool
auth_open(const struct auth *a)
{
    return a->n == 0;
}

/* "user:password" from base64 into scratch; the password, or "" when it does not decode. */
static const char *
basic_password(const char *v, size_t n, char *scratch, size_t *len)
{
    int out;
    const char *colon;

    while (n > 0 && v[n - 1] == ' ')
        n--;
    *len = 0;
    if (n == 0 || n % 4 != 0 || n / 4 * 3 >= AUTH_BASIC_MAX)
        return "";
    out = EVP_DecodeBlock((unsigned char *)scratch, (const unsigned char *)v, (int)n);
    if (out < 0)
        return "";
    out -= (v[n - 1] == '=') + (v[n - 2] == '='); /* DecodeBlock counts the padding */
    colon = memchr(scratch, ':', (size_t)out);
    if (colon == NULL)
        return "";
    *len = (size_t)(scratch + out - colon - 1);
    return colon + 1;
}

const char *
auth_request_key(const struct http_request *req, char scratch[AUTH_BASIC_MAX], size_t *len)
{
    size_t n = 0;
    const char *v = http_header_get(req, "authorization", &n);

    if (v != NULL && n > 6 && strncasecmp(v, "Basic ", 6) == 0) {
        v += 6;
        n -= 6;
        while (n > 0 && *v == ' ')
            v++, n--;
        return basic_password(v, n, scratch, len);
    }
    if (v != NULL && n > 7 && strncasecmp(v, "Bearer ", 7) == 0) {
        v += 7;
        n -= 7;
        while (n > 0 && *v == ' ')
            v++, n--;
        *len = n;
        return v;
    }
    v = http_header_get(req, "x-api-key", &n);
    *len = n;
    return v;
}

/* Hashing first makes the comparison independent of where, and whether, lengths differ; every
 * digest is compared, whichever matches. */
const char *
auth_which(const struct auth *a, const char *key, size_t len)
{
    unsigned char d[DIGEST_LEN];
    size_t found = a->n;

    if (a->n == 0)
        return "";
    if (key == NULL)
        return NULL;
    digest(key, len, d);
    for (size_t i = a->n; i-- > 0;)
        if (CRYPTO_memcmp(d, a->digests[i], DIGEST_LEN) == 0)
            found = i;
    return found < a->n ? a->names[found] : NULL;
}

bool
auth_check(const struct auth *a, const char *key, size_t len)
{
    return auth_which(a, key, len) != NULL;
}
