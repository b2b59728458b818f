#include "vkey.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/xmalloc.h"

/* Iterative, with one backtrack point: linear in practice, never exponential. */
bool
vkey_glob(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == '?' || *p == *s) {
            p++;
            s++;
        } else if (star != NULL) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

bool
vkey_model_allowed(const struct vkey *k, const char *model)
{
    if (k->models[0] == NULL)
        return true;
    for (size_t i = 0; k->models[i]; i++)
        if (vkey_glob(k->models[i], model))
            return true;
    return false;
}

bool
vkey_origin_allowed(const struct vkey *k, const char *origin, size_t len)
{
    if (k->origins[0] == NULL)
        return true;
    for (size_t i = 0; origin && k->origins[i]; i++)
        if (strlen(k->origins[i]) == len && memcmp(k->origins[i], origin, len) == 0)
            return true;
    return false;
}

int64_t
vkey_period_start(enum vkey_period p, int64_t now)
{
    time_t t = (time_t)now;
    struct tm tm;

    if (p == VKEY_PERIOD_NONE)
        return 0;
    gmtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (p == VKEY_PERIOD_MONTHLY)
        tm.tm_mday = 1;
    t = timegm(&tm);
    if (p == VKEY_PERIOD_WEEKLY) /* ISO weeks begin on Monday */
        t -= (time_t)((tm.tm_wday + 6) % 7) * 86400;
    return (int64_t)t;
}

int64_t
vkey_period_next(enum vkey_period p, int64_t start)
{
    time_t t = (time_t)start;
    struct tm tm;

    switch (p) {
    case VKEY_PERIOD_DAILY:
        return start + 86400;
    case VKEY_PERIOD_WEEKLY:
        return start + 7 * 86400;
    case VKEY_PERIOD_MONTHLY:
        gmtime_r(&t, &tm);
        tm.tm_mon++; /* timegm carries December into January */
        return (int64_t)timegm(&tm);
    case VKEY_PERIOD_NONE:
        break;
    }
    return INT64_MAX;
}

static const char *const period_names[] = {"none", "daily", "weekly", "monthly"};

int
vkey_period_parse(const char *s, enum vkey_period *p)
{
    for (size_t i = 0; i < sizeof(period_names) / sizeof(period_names[0]); i++) {
        if (strcmp(s, period_names[i]) == 0) {
            *p = (enum vkey_period)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *
vkey_period_name(enum vkey_period p)
{
    return period_names[p];
}

void
vkey_budget_roll(struct vkey_budget *b, int64_t now)
{
    int64_t start = vkey_period_start(b->period, now);

    if (start != b->start) {
        b->start = start;
        b->spent = 0;
    }
}

bool
vkey_budget_fits(const struct vkey_budget *b, double amount)
{
    return b->limit < 0 || b->spent + b->reserved + amount <= b->limit + 1e-12;
}

void
vkey_budget_reserve(struct vkey_budget *b, double amount)
{
    b->reserved += amount;
}

void
vkey_budget_settle(struct vkey_budget *b, double reserved, double used)
{
    b->reserved -= reserved;
    if (b->reserved < 1e-12)
        b->reserved = 0; /* float dust from many reservations */
    b->spent += used;
}

int64_t
vkey_rate_take(struct vkey *k, int64_t now)
{
    struct vkey_rate *r = &k->rate;

    if (now >= r->start + 60) {
        r->start = now;
        r->requests = r->tokens = 0;
    }
    if ((k->rpm > 0 && r->requests >= k->rpm) || (k->tpm > 0 && r->tokens >= k->tpm))
        return r->start + 60 - now > 0 ? r->start + 60 - now : 1;
    r->requests++;
    return 0;
}

int64_t
vkey_worst_tokens(size_t body_len, int64_t max_tokens)
{
    int64_t prompt = body_len > VKEY_PROMPT_MAX ? VKEY_PROMPT_MAX : (int64_t)body_len;

    return prompt + (max_tokens > 0 ? max_tokens : 0);
}

double
vkey_usd(const struct vkey *k, int64_t prompt, int64_t completion)
{
    return (double)(prompt > 0 ? prompt : 0) * k->price_prompt +
           (double)(completion > 0 ? completion : 0) * k->price_completion;
}

void
vkey_hash(const unsigned char salt[VKEY_SALT_LEN], const char *secret, size_t len,
          unsigned char out[VKEY_HASH_LEN])
{
    unsigned int n = VKEY_HASH_LEN;

    HMAC(EVP_sha256(), salt, VKEY_SALT_LEN, (const unsigned char *)secret, len, out, &n);
}

bool
vkey_verify(const struct vkey *k, const char *secret, size_t len)
{
    unsigned char h[VKEY_HASH_LEN];

    vkey_hash(k->salt, secret, len, h);
    return CRYPTO_memcmp(h, k->hash, VKEY_HASH_LEN) == 0;
}

int64_t
vkey_secret_id(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix), i;
    int64_t id = 0;

    if (s == NULL || len <= n || memcmp(s, prefix, n) != 0)
        return -1;
    for (i = n; i < len && s[i] >= '0' && s[i] <= '9' && i < n + 15; i++)
        id = id * 10 + (s[i] - '0');
    return i > n && i < len && s[i] == '-' ? id : -1;
}

void
vkey_init(struct vkey *k)
{
    memset(k, 0, sizeof(*k));
    k->usd.limit = k->tokens.limit = -1;
}

static void
strings_free(char **v)
{
    for (size_t i = 0; v[i]; i++) {
        free(v[i]);
        v[i] = NULL;
    }
}

void
vkey_cleanup(struct vkey *k)
{
    strings_free(k->models);
    strings_free(k->origins);
    OPENSSL_cleanse(k->hash, sizeof(k->hash));
}

static int
strings_set(char **v, const json_t *a, const char *what, char *err, size_t errlen)
{
    size_t i;
    json_t *e;

    if (!json_is_array(a) || json_array_size(a) > VKEY_PATTERNS) {
        snprintf(err, errlen, "%s: expected a list of at most %d strings", what, VKEY_PATTERNS);
        return -EINVAL;
    }
    json_array_foreach (a, i, e) {
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 256) {
            snprintf(err, errlen, "%s: expected non-empty strings", what);
            return -EINVAL;
        }
    }
    strings_free(v);
    json_array_foreach (a, i, e)
        v[i] = xstrdup(json_string_value(e));
    return 0;
}

/* "30m", "12h", "7d" from now, a Unix time, or null/"never". */
static int
expiry_of(const json_t *v, int64_t now, int64_t *out)
{
    const char *s;
    char *end;
    double n;

    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -EINVAL;
    s = json_string_value(v);
    if (strcmp(s, "never") == 0) {
        *out = 0;
        return 0;
    }
    n = strtod(s, &end);
    if (end == s || n < 0 || end[0] == '\0' || end[1] != '\0')
        return -EINVAL;
    switch (*end) {
    case 's':
        break;
    case 'm':
        n *= 60;
        break;
    case 'h':
        n *= 3600;
        break;
    case 'd':
        n *= 86400;
        break;
    default:
        return -EINVAL;
    }
    *out = now + (int64_t)n;
    return 0;
}

static int
number_of(const json_t *v, double min, double *out)
{
    if (json_is_null(v)) {
        *out = -1;
        return 0;
    }
    if (!json_is_number(v) || json_number_value(v) < min)
        return -EINVAL;
    *out = json_number_value(v);
    return 0;
}

static int
period_of(const json_t *v, enum vkey_period *p)
{
    return json_is_string(v) ? vkey_period_parse(json_string_value(v), p) : -EINVAL;
}

/* One field of a spec; 1 when key is not one of them. */
static int
apply_one(struct vkey *k, const char *key, const json_t *v, int64_t now)
{
    double d = 0;
    int rc = 0;

    if (strcmp(key, "name") == 0) {
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) >= VKEY_NAME_MAX)
            return -EINVAL;
        snprintf(k->name, sizeof(k->name), "%s", json_string_value(v));
    } else if (strcmp(key, "expires") == 0) {
        rc = expiry_of(v, now, &k->expires);
    } else if (strcmp(key, "budget_usd") == 0) {
        rc = number_of(v, 0, &k->usd.limit);
    } else if (strcmp(key, "budget_tokens") == 0) {
        rc = number_of(v, 0, &k->tokens.limit);
    } else if (strcmp(key, "budget_usd_period") == 0) {
        rc = period_of(v, &k->usd.period);
    } else if (strcmp(key, "budget_tokens_period") == 0) {
        rc = period_of(v, &k->tokens.period);
    } else if (strcmp(key, "price_prompt") == 0 || strcmp(key, "price_completion") == 0) {
        rc = number_of(v, 0, &d);
        *(key[6] == 'p' ? &k->price_prompt : &k->price_completion) = d < 0 ? 0 : d;
    } else if (strcmp(key, "rpm") == 0 || strcmp(key, "tpm") == 0 ||
               strcmp(key, "max_tokens") == 0) {
        rc = number_of(v, 0, &d);
        *(key[0] == 'r'   ? &k->rpm
          : key[0] == 't' ? &k->tpm
                          : &k->max_tokens) = d < 0 ? 0 : (int64_t)d;
    } else {
        return 1;
    }
    return rc;
}

int
vkey_apply(struct vkey *k, const json_t *spec, int64_t now, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    int rc;

    if (!json_is_object(spec)) {
        snprintf(err, errlen, "expected a JSON object");
        return -EINVAL;
    }
    json_object_foreach ((json_t *)spec, key, v) {
        if (strcmp(key, "models") == 0 || strcmp(key, "origins") == 0) {
            rc = strings_set(key[0] == 'm' ? k->models : k->origins, v, key, err, errlen);
            if (rc < 0)
                return rc;
            continue;
        }
        rc = apply_one(k, key, v, now);
        if (rc == 1) {
            snprintf(err, errlen, "unknown field '%s'", key);
            return -EINVAL;
        }
        if (rc < 0) {
            snprintf(err, errlen, "%s: bad value", key);
            return rc;
        }
    }
    vkey_budget_roll(&k->usd, now);
    vkey_budget_roll(&k->tokens, now);
    return 0;
}

static json_t *
strings_json(char *const *v)
{
    json_t *a = json_array();

    for (size_t i = 0; v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *
limit_json(double limit)
{
    return limit < 0 ? json_null() : json_real(limit);
}

json_t *
vkey_spec(const struct vkey *k)
{
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:s, s:I, s:I, s:I, s:f, s:f}", "name",
                     k->name, "models", strings_json(k->models), "origins",
                     strings_json(k->origins), "expires",
                     k->expires ? json_integer(k->expires) : json_null(), "budget_usd",
                     limit_json(k->usd.limit), "budget_usd_period", vkey_period_name(k->usd.period),
                     "budget_tokens", limit_json(k->tokens.limit), "budget_tokens_period",
                     vkey_period_name(k->tokens.period), "rpm", (json_int_t)k->rpm, "tpm",
                     (json_int_t)k->tpm, "max_tokens", (json_int_t)k->max_tokens, "price_prompt",
                     k->price_prompt, "price_completion", k->price_completion);
}

static json_t *
budget_json(const struct vkey_budget *b)
{
    int64_t next = vkey_period_next(b->period, b->start);

    return json_pack("{s:o, s:f, s:f, s:o}", "limit", limit_json(b->limit), "spent", b->spent,
                     "reserved", b->reserved, "resets",
                     next == INT64_MAX ? json_null() : json_integer(next));
}

json_t *
vkey_json(const struct vkey *k, int64_t now)
{
    json_t *o = vkey_spec(k);
    const char *state = k->revoked                        ? "revoked"
                        : k->expires && k->expires <= now ? "expired"
                                                          : "active";

    json_object_set_new(o, "id", json_integer(k->id));
    json_object_set_new(o, "created", json_integer(k->created));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "usd", budget_json(&k->usd));
    json_object_set_new(o, "tokens", budget_json(&k->tokens));
    return o;
}
