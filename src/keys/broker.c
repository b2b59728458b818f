#include "broker.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "http/server.h"
#include "http/tls.h"

/* A browser token: a vkey of its own (origin, models, expiry, a budget slice) under a key. */
struct token {
    struct vkey k;
    int64_t key_id;
};

/* What an admitted request holds until it ends. */
struct grant {
    int64_t key_id, token_id; /* token_id 0: the key itself */
    bool reserved;
    double usd, tokens; /* reserved */
    int64_t max_tokens;
};

struct broker {
    struct ledger *l;
    struct vkey **v; /* by id, ascending */
    size_t n, cap;
    struct token **t; /* by id, ascending */
    size_t nt, capt;
    int64_t next_token;
    uv_timer_t *watch;
};

static void *
find_id(void *const *v, size_t n, int64_t id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) { /* struct token begins with its vkey: both are found by k.id */
        size_t mid = (lo + hi) / 2;
        int64_t at = ((const struct vkey *)v[mid])->id;

        if (at == id)
            return v[mid];
        if (at < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static struct vkey *
key_by_id(const struct broker *ks, int64_t id)
{
    return find_id((void *const *)ks->v, ks->n, id);
}

static struct token *
token_by_id(const struct broker *ks, int64_t id)
{
    return find_id((void *const *)ks->t, ks->nt, id);
}

/* The rules of fresh (just read) into k, keeping k's spend and reservations. */
static void
merge(struct vkey *k, struct vkey *fresh)
{
    struct vkey keep = *k;

    for (size_t i = 0; i <= VKEY_PATTERNS; i++) { /* swap, so cleanup frees the old ones */
        char *m = k->models[i], *o = k->origins[i];

        k->models[i] = fresh->models[i];
        k->origins[i] = fresh->origins[i];
        fresh->models[i] = m;
        fresh->origins[i] = o;
    }
    memcpy(k->name, fresh->name, sizeof(k->name));
    k->expires = fresh->expires;
    k->revoked = fresh->revoked;
    k->usd = fresh->usd;
    k->tokens = fresh->tokens;
    k->usd.reserved = keep.usd.reserved;
    k->tokens.reserved = keep.tokens.reserved;
    if (keep.usd.spent > k->usd.spent && keep.usd.start == k->usd.start)
        k->usd.spent = keep.usd.spent; /* ours is ahead of what the worker committed */
    if (keep.tokens.spent > k->tokens.spent && keep.tokens.start == k->tokens.start)
        k->tokens.spent = keep.tokens.spent;
    k->rpm = fresh->rpm;
    k->tpm = fresh->tpm;
    k->max_tokens = fresh->max_tokens;
    k->price_prompt = fresh->price_prompt;
    k->price_completion = fresh->price_completion;
    vkey_cleanup(fresh);
    free(fresh);
}

static void
take_key(void *arg, struct vkey *k)
{
    struct broker *ks = arg;
    struct vkey *have = key_by_id(ks, k->id);

    if (have != NULL) {
        merge(have, k);
        return;
    }
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 16;
        ks->v = xrealloc(ks->v, ks->cap * sizeof(*ks->v));
    }
    ks->v[ks->n++] = k; /* the ledger reads by id: the array stays sorted */
}

void
broker_sync(struct broker *ks)
{
    if (ledger_load(ks->l, take_key, ks) < 0)
        log_warnx("keys: cannot read the ledger's keys");
}

static void sweep(struct broker *ks, int64_t now);

static void
on_watch(uv_timer_t *t)
{
    struct broker *ks = t->data;

    if (!ledger_refresh(ks->l, take_key, ks) && ledger_changed(ks->l))
        broker_sync(ks);
    sweep(ks, (int64_t)time(NULL));
}

struct broker *
broker_new(uv_loop_t *loop, struct ledger *l)
{
    struct broker *ks = xcalloc(1, sizeof(*ks));

    ks->l = l;
    ks->next_token = 1;
    broker_sync(ks);
    if (loop != NULL) {
        ks->watch = xcalloc(1, sizeof(*ks->watch));
        uv_timer_init(loop, ks->watch);
        ks->watch->data = ks;
        uv_timer_start(ks->watch, on_watch, BROKER_WATCH_MS, BROKER_WATCH_MS);
        uv_unref((uv_handle_t *)ks->watch);
    }
    return ks;
}

static void
free_handle(uv_handle_t *h)
{
    free(h);
}

void
broker_free(struct broker *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        vkey_cleanup(ks->v[i]);
        free(ks->v[i]);
    }
    for (size_t i = 0; i < ks->nt; i++) {
        vkey_cleanup(&ks->t[i]->k);
        free(ks->t[i]);
    }
    if (ks->watch != NULL)
        uv_close((uv_handle_t *)ks->watch, free_handle);
    ledger_close(ks->l);
    free(ks->v);
    free(ks->t);
    free(ks);
}

struct ledger *
broker_ledger(struct broker *ks)
{
    return ks->l;
}

bool
broker_is_virtual(const char *s, size_t len)
{
    return s != NULL && len > 3 &&
           (memcmp(s, VKEY_PREFIX, 3) == 0 || memcmp(s, VKEY_TOKEN, 3) == 0);
}

static int refuse(struct broker_refusal *why, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
refuse(struct broker_refusal *why, int status, const char *type, const char *fmt, ...)
{
    va_list ap;

    why->status = status;
    why->type = type;
    why->retry_after = 0;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static void
iso_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A key usable now: present, not revoked, not expired. */
static int
key_usable(const struct vkey *k, int64_t now, struct broker_refusal *why)
{
    char when[32];

    if (k->revoked)
        return refuse(why, 401, "authentication_error", "virtual key '%s' was revoked", k->name);
    if (k->expires != 0 && k->expires <= now) {
        iso_time(k->expires, when);
        return refuse(why, 401, "authentication_error", "virtual key '%s' expired at %s", k->name,
                      when);
    }
    return 0;
}

/* The secret's part after "gk-<id>-", hashed under the key's salt. */
static const char *
secret_part(const char *s, size_t len, size_t *n)
{
    const char *dash = memchr(s + 3, '-', len - 3);

    *n = dash ? (size_t)(s + len - dash - 1) : 0;
    return dash ? dash + 1 : s;
}

/* A token or a key from its secret, checked; sets *key (and *tok for a token). */
static int
lookup(struct broker *ks, const char *s, size_t len, int64_t now, struct vkey **key,
       struct token **tok, struct broker_refusal *why)
{
    bool is_token = memcmp(s, VKEY_TOKEN, 3) == 0;
    int64_t id = vkey_secret_id(s, len, is_token ? VKEY_TOKEN : VKEY_PREFIX);
    const struct vkey *v;
    size_t n;
    const char *p = secret_part(s, len, &n);

    *tok = is_token && id > 0 ? token_by_id(ks, id) : NULL;
    *key = !is_token && id > 0 ? key_by_id(ks, id) : NULL;
    v = is_token ? (*tok ? &(*tok)->k : NULL) : *key;
    if (v == NULL || !vkey_verify(v, p, n))
        return refuse(why, 401, "authentication_error",
                      is_token ? "invalid or expired browser token" : "invalid API key");
    if (is_token) {
        *key = key_by_id(ks, (*tok)->key_id);
        if (*key == NULL)
            return refuse(why, 401, "authentication_error", "invalid or expired browser token");
        if (key_usable(*key, now, why) < 0) /* revoking a key revokes its tokens */
            return -1;
        if ((*tok)->k.expires <= now)
            return refuse(why, 401, "authentication_error", "browser token expired");
    }
    return key_usable(*key, now, why);
}

int
broker_admit(struct broker *ks, struct http_request *req, const char *secret, size_t len,
             int64_t now, struct broker_refusal *why)
{
    struct vkey *k = NULL;
    struct token *t = NULL;
    struct grant *g;
    size_t olen = 0;
    const char *origin = http_header_get(req, "origin", &olen);
    int64_t wait;

    if (lookup(ks, secret, len, now, &k, &t, why) < 0)
        return -1;
    if (t != NULL && (origin == NULL || !vkey_origin_allowed(&t->k, origin, olen)))
        return refuse(why, 403, "permission_error",
                      "this browser token is bound to the origin %s, not %.*s", t->k.origins[0],
                      (int)olen, origin ? origin : "(none)");
    if (t == NULL && origin != NULL && !vkey_origin_allowed(k, origin, olen))
        return refuse(why, 403, "permission_error", "virtual key '%s' does not allow origin %.*s",
                      k->name, (int)olen, origin);
    wait = vkey_rate_take(k, now);
    if (wait > 0) {
        refuse(why, 429, "rate_limit_error",
               "virtual key '%s' is over its limit of %lld %s per minute; retry in %lld s", k->name,
               (long long)(k->rate.requests >= k->rpm && k->rpm ? k->rpm : k->tpm),
               k->rate.requests >= k->rpm && k->rpm ? "requests" : "tokens", (long long)wait);
        why->retry_after = wait;
        return -1;
    }
    g = xcalloc(1, sizeof(*g));
    g->key_id = k->id;
    g->token_id = t ? t->k.id : 0;
    req->grant = g;
    snprintf(req->key_name, sizeof(req->key_name), "%s", k->name);
    return 0;
}

bool
broker_grant_is_token(const struct http_request *req)
{
    const struct grant *g = req->grant;

    return g != NULL && g->token_id != 0;
}

/* The request's max_tokens (or max_completion_tokens, or llama.cpp's n_predict), checked
 * against the cap; written into the body when absent, so the worst case is bounded. */
static int
bound_max_tokens(const struct vkey *k, struct http_request *req, int64_t *max,
                 struct broker_refusal *why)
{
    static const char *const names[] = {"max_tokens", "max_completion_tokens", "n_predict"};
    json_t *body = req->body.len ? json_loadb(req->body.data, req->body.len, 0, NULL) : NULL;
    int64_t cap = k->max_tokens > 0 ? k->max_tokens : VKEY_DEFAULT_MAX;
    char *text = NULL;
    int rc = 0;

    *max = -1;
    for (size_t i = 0; json_is_object(body) && i < 3 && *max < 0; i++) {
        json_t *v = json_object_get(body, names[i]);

        if (json_is_integer(v) && json_integer_value(v) >= 0)
            *max = json_integer_value(v);
    }
    if (*max > cap && k->max_tokens > 0) {
        rc = refuse(why, 400, "invalid_request_error",
                    "max_tokens %lld is over the cap of virtual key '%s' (%lld)", (long long)*max,
                    k->name, (long long)cap);
        goto out;
    }
    if (*max >= 0 || !json_is_object(body))
        goto out;
    *max = cap; /* none named: the cap (or the default) becomes the request's */
    json_object_set_new(body, "max_tokens", json_integer(cap));
    text = json_dumps(body, JSON_COMPACT);
    buf_reset(&req->body);
    if (text == NULL || buf_append(&req->body, text, strlen(text)) < 0)
        rc = refuse(why, 413, "invalid_request_error", "the request body is too large");
out:
    free(text);
    json_decref(body);
    if (*max < 0)
        *max = cap;
    return rc;
}

static int
over_budget(const char *who, const struct vkey_budget *b, const char *unit, double need,
            struct broker_refusal *why)
{
    char when[32] = "never";
    int64_t next = vkey_period_next(b->period, b->start);

    if (next != INT64_MAX)
        iso_time(next, when);
    return refuse(why, 402, "insufficient_quota",
                  "budget exhausted for %s: %.6g of %.6g %s spent, %.6g reserved by requests "
                  "in flight, this request may need %.6g; resets: %s",
                  who, b->spent, b->limit, unit, b->reserved, need, when);
}

static int
fits(const struct vkey *k, const char *kind, double usd, double tokens, struct broker_refusal *why)
{
    char who[VKEY_NAME_MAX + 32];

    snprintf(who, sizeof(who), "%s '%s'", kind, k->name);
    if (!vkey_budget_fits(&k->usd, usd))
        return over_budget(who, &k->usd, "USD", usd, why);
    if (!vkey_budget_fits(&k->tokens, tokens))
        return over_budget(who, &k->tokens, "tokens", tokens, why);
    return 0;
}

int
broker_reserve(struct broker *ks, struct http_request *req, const char *model, int64_t now,
               struct broker_refusal *why)
{
    struct grant *g = req->grant;
    struct vkey *k = g ? key_by_id(ks, g->key_id) : NULL;
    struct token *t = g && g->token_id ? token_by_id(ks, g->token_id) : NULL;
    int64_t worst, prompt;
    double usd;

    if (g == NULL)
        return 0;
    if (k == NULL || (g->token_id && t == NULL))
        return refuse(why, 401, "authentication_error", "the key was removed");
    if (!vkey_model_allowed(k, model) || (t && !vkey_model_allowed(&t->k, model)))
        return refuse(why, 403, "permission_error", "%s '%s' may not use model '%s'",
                      t ? "this browser token of key" : "virtual key", k->name, model);
    if (bound_max_tokens(k, req, &g->max_tokens, why) < 0)
        return -1;
    worst = vkey_worst_tokens(req->body.len, g->max_tokens);
    prompt = worst - g->max_tokens;
    usd = (double)prompt * k->price_prompt + (double)g->max_tokens * k->price_completion;
    vkey_budget_roll(&k->usd, now);
    vkey_budget_roll(&k->tokens, now);
    if (fits(k, "virtual key", usd, (double)worst, why) < 0 ||
        (t && fits(&t->k, "the browser token of key", usd, (double)worst, why) < 0))
        return -1;
    vkey_budget_reserve(&k->usd, usd);
    vkey_budget_reserve(&k->tokens, (double)worst);
    if (t != NULL) {
        vkey_budget_reserve(&t->k.usd, usd);
        vkey_budget_reserve(&t->k.tokens, (double)worst);
    }
    g->reserved = true;
    g->usd = usd;
    g->tokens = (double)worst;
    return 0;
}

/* What a finished request used: the upstream's report; without one, a 2xx answer is charged
 * its worst case (a stream cut before its usage must not be free), and so is a client that
 * left first (499: a provider may bill the work begun), an error nothing. */
static void
used(const struct vkey *k, const struct http_request *req, const struct grant *g, double *usd,
     double *tokens)
{
    const struct http_usage *u = &req->usage;

    if (u->reported && u->prompt_tokens >= 0) {
        int64_t c = u->completion_tokens > 0 ? u->completion_tokens : 0;

        *tokens = (double)(u->prompt_tokens + c);
        *usd = u->cost_usd >= 0 ? u->cost_usd : vkey_usd(k, u->prompt_tokens, c);
    } else if ((req->status >= 200 && req->status < 300) || req->status == 499) {
        *tokens = g->tokens;
        *usd = u->cost_usd >= 0 ? u->cost_usd : g->usd;
    } else {
        *tokens = 0;
        *usd = 0;
    }
}

void
broker_settle(struct broker *ks, struct http_request *req, int64_t now)
{
    struct grant *g = req->grant;
    struct vkey *k = g ? key_by_id(ks, g->key_id) : NULL;
    struct token *t = g && g->token_id ? token_by_id(ks, g->token_id) : NULL;
    struct ledger_entry e = {0};
    double usd = 0, tokens = 0;

    if (g == NULL)
        return;
    req->grant = NULL;
    if (k != NULL && g->reserved) {
        used(k, req, g, &usd, &tokens);
        vkey_budget_roll(&k->usd, now);
        vkey_budget_roll(&k->tokens, now);
        vkey_budget_settle(&k->usd, g->usd, usd);
        vkey_budget_settle(&k->tokens, g->tokens, tokens);
        if (t != NULL) {
            vkey_budget_settle(&t->k.usd, g->usd, usd);
            vkey_budget_settle(&t->k.tokens, g->tokens, tokens);
        }
        if (now < k->rate.start + 60)
            k->rate.tokens += (int64_t)tokens;
        e = (struct ledger_entry){.key_id = k->id,
                                  .t_ms = now * 1000,
                                  .prompt_tokens = req->usage.prompt_tokens,
                                  .completion_tokens = req->usage.completion_tokens,
                                  .usd = usd,
                                  .tokens = tokens,
                                  .usd_spent = k->usd.spent,
                                  .tok_spent = k->tokens.spent,
                                  .usd_start = k->usd.start,
                                  .tok_start = k->tokens.start};
        snprintf(e.model, sizeof(e.model), "%s", req->log_model ? req->log_model : "");
        ledger_settle(ks->l, &e);
    }
    free(g);
}

bool
broker_origin_known(void *arg, const char *origin, size_t len)
{
    struct broker *ks = arg;
    int64_t now = (int64_t)time(NULL);

    for (size_t i = 0; i < ks->nt; i++) /* a dead token's page still reads why it was refused */
        if (ks->t[i]->k.expires + BROKER_TOKEN_GRACE > now &&
            vkey_origin_allowed(&ks->t[i]->k, origin, len))
            return true;
    for (size_t i = 0; i < ks->n; i++)
        if (ks->v[i]->origins[0] && !ks->v[i]->revoked &&
            vkey_origin_allowed(ks->v[i], origin, len))
            return true;
    return false;
}

/* ---- management: the admin API and the command line ---- */

static struct vkey *
key_named(struct broker *ks, const char *which)
{
    char *end;
    long long id = strtoll(which, &end, 10);

    if (*which != '\0' && *end == '\0')
        return key_by_id(ks, id);
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->v[i]->name, which) == 0)
            return ks->v[i];
    return NULL;
}

json_t *
broker_list(struct broker *ks, int64_t now)
{
    json_t *a = json_array();

    broker_sync(ks);
    for (size_t i = 0; i < ks->n; i++)
        json_array_append_new(a, vkey_json(ks->v[i], now));
    return json_pack("{s:o}", "data", a);
}

static struct vkey *
found(struct broker *ks, const char *which, int *status, char *err, size_t errlen)
{
    struct vkey *k;

    broker_sync(ks);
    k = key_named(ks, which);
    if (k == NULL) {
        *status = 404;
        snprintf(err, errlen, "no virtual key '%s'", which);
    }
    return k;
}

json_t *
broker_get(struct broker *ks, const char *which, int64_t now, int *status, char *err, size_t errlen)
{
    struct vkey *k = found(ks, which, status, err, errlen);
    int64_t requests = 0;
    double usd = 0, tokens = 0;
    json_t *o;

    if (k == NULL)
        return NULL;
    o = vkey_json(k, now);
    if (ledger_totals(ks->l, k->id, &requests, &usd, &tokens) == 0)
        json_object_set_new(o, "ledger",
                            json_pack("{s:I, s:f, s:f, s:I}", "requests", (json_int_t)requests,
                                      "usd", usd, "tokens", tokens, "pending",
                                      (json_int_t)ledger_pending(ks->l)));
    return o;
}

json_t *
broker_create(struct broker *ks, const json_t *spec, int64_t now, int *status, char *err,
              size_t errlen)
{
    struct vkey k;
    char hex[65], secret[VKEY_SECRET_MAX];
    json_t *o = NULL;
    int rc;

    vkey_init(&k);
    *status = 400;
    k.created = now;
    if (vkey_apply(&k, spec, now, err, errlen) < 0)
        goto out;
    if (k.name[0] == '\0') {
        snprintf(err, errlen, "name: required");
        goto out;
    }
    if (RAND_bytes(k.salt, VKEY_SALT_LEN) != 1 || tls_random_hex(hex) < 0) {
        *status = 500;
        snprintf(err, errlen, "no randomness for the secret");
        goto out;
    }
    vkey_hash(k.salt, hex, 64, k.hash);
    rc = ledger_insert(ks->l, &k);
    if (rc < 0) {
        *status = rc == -EEXIST ? 409 : 500;
        snprintf(err, errlen, rc == -EEXIST ? "a key named '%s' exists" : "cannot write key '%s'",
                 k.name);
        goto out;
    }
    snprintf(secret, sizeof(secret), VKEY_PREFIX "%lld-%s", (long long)k.id, hex);
    broker_sync(ks);
    o = vkey_json(&k, now);
    json_object_set_new(o, "secret", json_string(secret)); /* shown once, here */
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(hex, sizeof(hex));
out:
    vkey_cleanup(&k);
    return o;
}

json_t *
broker_update(struct broker *ks, const char *which, const json_t *spec, int64_t now, int *status,
              char *err, size_t errlen)
{
    struct vkey *k = found(ks, which, status, err, errlen);
    struct vkey copy;
    json_t *rules;
    int rc = -EINVAL;

    if (k == NULL)
        return NULL;
    vkey_init(&copy); /* applied to a copy: a bad field changes nothing */
    rules = vkey_spec(k);
    copy.id = k->id;
    copy.revoked = k->revoked;
    if (vkey_apply(&copy, rules, now, err, errlen) == 0)
        rc = vkey_apply(&copy, spec, now, err, errlen);
    json_decref(rules);
    if (rc == 0) {
        rc = ledger_update(ks->l, &copy);
        if (rc < 0)
            snprintf(err, errlen, rc == -EEXIST ? "a key named '%s' exists" : "cannot write '%s'",
                     copy.name);
    }
    *status = rc == -EEXIST ? 409 : rc == -EIO ? 500 : 400;
    vkey_cleanup(&copy);
    if (rc < 0)
        return NULL;
    broker_sync(ks);
    return vkey_json(key_by_id(ks, copy.id), now);
}

json_t *
broker_revoke(struct broker *ks, const char *which, int64_t now, int *status, char *err,
              size_t errlen)
{
    struct vkey *k = found(ks, which, status, err, errlen);

    if (k == NULL)
        return NULL;
    k->revoked = true; /* its tokens go with it: each is checked against its key */
    if (ledger_update(ks->l, k) < 0) {
        *status = 500;
        snprintf(err, errlen, "cannot write '%s'", k->name);
        return NULL;
    }
    return vkey_json(k, now);
}

/* Drops the expired tokens with no request in flight (none reserved). */
static void
sweep(struct broker *ks, int64_t now)
{
    size_t j = 0;

    for (size_t i = 0; i < ks->nt; i++) {
        struct token *t = ks->t[i];

        if (t->k.expires + BROKER_TOKEN_GRACE <= now && t->k.usd.reserved == 0 &&
            t->k.tokens.reserved == 0) {
            vkey_cleanup(&t->k);
            free(t);
        } else {
            ks->t[j++] = t;
        }
    }
    ks->nt = j;
}

/* A token's rules from the request for it, within its key's. */
static int
token_rules(const struct vkey *k, struct token *t, const json_t *spec, int64_t now, char *err,
            size_t errlen)
{
    json_t *origin = json_object_get(spec, "origin"), *models = json_object_get(spec, "models");
    json_t *ttl = json_object_get(spec, "ttl"), *rules;
    int64_t secs = json_is_integer(ttl) ? json_integer_value(ttl) : 600;
    int rc;

    if (!json_is_string(origin) || strncmp(json_string_value(origin), "http", 4) != 0) {
        snprintf(err, errlen, "origin: required, the page's origin (https://app.example)");
        return -EINVAL;
    }
    if (!vkey_origin_allowed(k, json_string_value(origin), json_string_length(origin))) {
        snprintf(err, errlen, "origin: key '%s' does not allow %s", k->name,
                 json_string_value(origin));
        return -EPERM;
    }
    if (secs <= 0 || secs > BROKER_TOKEN_TTL_MAX) {
        snprintf(err, errlen, "ttl: 1 to %d seconds", BROKER_TOKEN_TTL_MAX);
        return -EINVAL;
    }
    rules = json_pack("{s:[O], s:O, s:O}", "origins", origin, "budget_usd",
                      json_object_get(spec, "budget_usd") ?: json_null(), "budget_tokens",
                      json_object_get(spec, "budget_tokens") ?: json_null());
    if (models != NULL)
        json_object_set(rules, "models", models);
    rc = vkey_apply(&t->k, rules, now, err, errlen);
    json_decref(rules);
    for (size_t i = 0; rc == 0 && models == NULL && k->models[i]; i++)
        t->k.models[i] = xstrdup(k->models[i]); /* the key's patterns (both are checked) */
    t->k.expires = now + secs;
    return rc;
}

json_t *
broker_mint(struct broker *ks, const struct http_request *req, const json_t *spec, int64_t now,
            int *status, char *err, size_t errlen)
{
    const struct grant *g = req->grant;
    struct vkey *k = g ? key_by_id(ks, g->key_id) : NULL;
    struct token *t;
    char hex[65], secret[VKEY_SECRET_MAX];
    json_t *o;
    int rc;

    *status = 403;
    if (k == NULL || g->token_id != 0) {
        snprintf(err, errlen, "POST /v1/tokens takes a virtual key (a browser token mints none)");
        return NULL;
    }
    sweep(ks, now);
    if (ks->nt >= BROKER_TOKENS_MAX) {
        *status = 429;
        snprintf(err, errlen, "too many live browser tokens (%d)", BROKER_TOKENS_MAX);
        return NULL;
    }
    t = xcalloc(1, sizeof(*t));
    vkey_init(&t->k);
    rc = json_is_object(spec) ? token_rules(k, t, spec, now, err, errlen) : -EINVAL;
    if (rc == 0 && (RAND_bytes(t->k.salt, VKEY_SALT_LEN) != 1 || tls_random_hex(hex) < 0))
        rc = -EIO;
    if (rc < 0) {
        *status = rc == -EPERM ? 403 : rc == -EIO ? 500 : 400;
        if (rc == -EINVAL && !json_is_object(spec))
            snprintf(err, errlen, "expected a JSON object: {\"origin\": ..., \"ttl\": s}");
        vkey_cleanup(&t->k);
        free(t);
        return NULL;
    }
    vkey_hash(t->k.salt, hex, 64, t->k.hash);
    t->k.id = ks->next_token++;
    t->k.created = now;
    t->key_id = k->id;
    snprintf(t->k.name, sizeof(t->k.name), "%s", k->name);
    if (ks->nt == ks->capt) {
        ks->capt = ks->capt ? ks->capt * 2 : 16;
        ks->t = xrealloc(ks->t, ks->capt * sizeof(*ks->t));
    }
    ks->t[ks->nt++] = t; /* ids grow: the array stays sorted */
    snprintf(secret, sizeof(secret), VKEY_TOKEN "%lld-%s", (long long)t->k.id, hex);
    o = vkey_spec(&t->k);
    json_object_set_new(o, "token", json_string(secret));
    json_object_set_new(o, "origin", json_string(t->k.origins[0]));
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(hex, sizeof(hex));
    *status = 201;
    return o;
}
