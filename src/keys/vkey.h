/*
 * Virtual keys, the pure part: a key's rules (models, origins, expiry, budgets with reset
 * periods, rates, a cap on max_tokens), its secret's hash, and the arithmetic of reserving and
 * settling spend. No I/O, no globals, no clock: callers pass the time, so unit tests feed any.
 */
#ifndef GOINFER_KEYS_VKEY_H
#define GOINFER_KEYS_VKEY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VKEY_SALT_LEN    16
#define VKEY_HASH_LEN    32
#define VKEY_SECRET_MAX  96 /* "gk-<id>-<64 hex>" */
#define VKEY_NAME_MAX    64
#define VKEY_PATTERNS    32    /* models or origins one key may list */
#define VKEY_PROMPT_MAX  32768 /* the prompt estimate's cap, in tokens */
#define VKEY_DEFAULT_MAX 4096  /* max_tokens written into a request that names none */
#define VKEY_PREFIX      "gk-" /* a virtual key's secret */
#define VKEY_TOKEN       "gt-" /* a browser token's */

enum vkey_period { VKEY_PERIOD_NONE, VKEY_PERIOD_DAILY, VKEY_PERIOD_WEEKLY, VKEY_PERIOD_MONTHLY };

/* A budget: USD or tokens, settled spend within the window that began at start, and what
 * requests in flight reserved (in memory only). limit < 0: none. */
struct vkey_budget {
    double limit;
    enum vkey_period period;
    int64_t start; /* Unix s: the window spent counts in */
    double spent, reserved;
};

/* Per-minute counts, a fixed window that starts with its first request. */
struct vkey_rate {
    int64_t start; /* Unix s */
    int64_t requests, tokens;
};

struct vkey {
    int64_t id;
    char name[VKEY_NAME_MAX];
    unsigned char salt[VKEY_SALT_LEN], hash[VKEY_HASH_LEN];
    char *models[VKEY_PATTERNS + 1];  /* glob patterns, NULL-terminated; none: every model */
    char *origins[VKEY_PATTERNS + 1]; /* exact origins; none: any (or none) */
    int64_t created, expires;         /* Unix s; expires 0: never */
    bool revoked;
    struct vkey_budget usd, tokens;
    int64_t rpm, tpm, max_tokens;          /* 0: none */
    double price_prompt, price_completion; /* USD a token, when the upstream reports no cost */
    struct vkey_rate rate;
};

/* '*' any run of characters (slashes included), '?' one; the rest matches itself. */
bool vkey_glob(const char *pattern, const char *s);
bool vkey_model_allowed(const struct vkey *k, const char *model);
bool vkey_origin_allowed(const struct vkey *k, const char *origin, size_t len);

/* The window (UTC) that holds now: midnight, Monday midnight, the first of the month. */
int64_t vkey_period_start(enum vkey_period p, int64_t now);
/* When the window that began at start ends; INT64_MAX for NONE. */
int64_t vkey_period_next(enum vkey_period p, int64_t start);
int vkey_period_parse(const char *s, enum vkey_period *p);
const char *vkey_period_name(enum vkey_period p);

/* Starts a new window when now is past the budget's: its spend drops to 0. */
void vkey_budget_roll(struct vkey_budget *b, int64_t now);
/* Whether amount more can be reserved: spent + reserved + amount stays within the limit. */
bool vkey_budget_fits(const struct vkey_budget *b, double amount);
void vkey_budget_reserve(struct vkey_budget *b, double amount);
/* Releases the reservation and counts what was used. */
void vkey_budget_settle(struct vkey_budget *b, double reserved, double used);

/* The per-minute window: 0 when a request fits (counted), else the seconds to wait. */
int64_t vkey_rate_take(struct vkey *k, int64_t now);
/* The worst case of a request: prompt estimated from the body's bytes (a token is at least a
 * byte of the JSON that carries it), capped, plus max_tokens. */
int64_t vkey_worst_tokens(size_t body_len, int64_t max_tokens);
double vkey_usd(const struct vkey *k, int64_t prompt, int64_t completion);

/* HMAC-SHA256 of the secret under the key's salt. */
void vkey_hash(const unsigned char salt[VKEY_SALT_LEN], const char *secret, size_t len,
               unsigned char out[VKEY_HASH_LEN]);
bool vkey_verify(const struct vkey *k, const char *secret, size_t len);
/* The id a secret names ("gk-12-..." is 12), or -1. */
int64_t vkey_secret_id(const char *secret, size_t len, const char *prefix);

/* Applies the rules a JSON object sets (name, models, origins, expires, budget_usd,
 * budget_usd_period, budget_tokens, budget_tokens_period, rpm, tpm, max_tokens,
 * price_prompt, price_completion); the others stay. -EINVAL with err on a bad value. */
int vkey_apply(struct vkey *k, const json_t *spec, int64_t now, char *err, size_t errlen);
/* The rules and the spend, never the secret or its hash. */
json_t *vkey_json(const struct vkey *k, int64_t now);
/* The rules alone, as vkey_apply reads them (what the ledger stores). */
json_t *vkey_spec(const struct vkey *k);
void vkey_init(struct vkey *k);
void vkey_cleanup(struct vkey *k);

#endif
