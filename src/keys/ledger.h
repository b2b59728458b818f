/*
 * The keys' ledger: a SQLite file (KEYS_LEDGER_FILE in admin.state_dir) that holds the virtual
 * keys (their rules, the salted hash of each secret) and every settled spend. Goinfer and
 * `goinfer keys ...` open the same file, so keys are managed with Goinfer stopped or running.
 *
 * Settled spend is written with synchronous=FULL (WAL): once committed, neither a kill -9 nor a
 * power cut loses it. The fsync that costs is not paid on the loop: settlements are queued and
 * committed by one libuv worker at a time on its own connection, all those queued meanwhile in
 * one transaction, so a burst of 200 requests ends in a few commits, not 200.
 */
#ifndef GOINFER_KEYS_LEDGER_H
#define GOINFER_KEYS_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keys/vkey.h"

#define KEYS_LEDGER_FILE "keys.db"
#define LEDGER_QUEUE_MAX 100000 /* settlements waiting for a commit */

struct ledger;

/* One settled request, and the key's totals after it. */
struct ledger_entry {
    int64_t key_id, t_ms;
    char model[128];
    int64_t prompt_tokens, completion_tokens;
    double usd, tokens;
    double usd_spent, tok_spent; /* the key's, in the windows below */
    int64_t usd_start, tok_start;
};

/* Opens (creating dir with mode 0700 and the file) the ledger in dir, or, with url (a
 * postgresql:// URL, see ledger_pg.h), in that PostgreSQL database. loop NULL (the command
 * line): no worker; settlements are not taken. Returns 0 or -errno with err. */
int ledger_open(uv_loop_t *loop, const char *dir, const char *url, struct ledger **out, char *err,
                size_t errlen);
/* Commits what is queued, then closes; NULL is a no-op. */
void ledger_close(struct ledger *l);

typedef void (*ledger_key_cb)(void *arg, struct vkey *k);
/* Every key, with its settled spend: cb takes ownership of each. */
int ledger_load(struct ledger *l, ledger_key_cb cb, void *arg);
/* A new key (k->name, salt, hash, rules); sets k->id. -EEXIST when the name is taken. */
int ledger_insert(struct ledger *l, struct vkey *k);
/* A key's rules and revocation, never its spend (that is the server's). */
int ledger_update(struct ledger *l, const struct vkey *k);
/* A shared ledger (PostgreSQL): asks for every key again without blocking the loop, cb called
 * as they arrive, and returns true; false for SQLite (ask ledger_changed, then ledger_load). */
bool ledger_refresh(struct ledger *l, ledger_key_cb cb, void *arg);
/* Whether another connection (the command line, a worker) wrote since the last call. */
bool ledger_changed(struct ledger *l);
/* Queued for the worker; copied. */
void ledger_settle(struct ledger *l, const struct ledger_entry *e);
/* Settlements queued or being committed. */
size_t ledger_pending(const struct ledger *l);
/* The key's spend rows summed: {"requests", "usd", "tokens"} (tests, the API). */
int ledger_totals(struct ledger *l, int64_t key_id, int64_t *requests, double *usd, double *tokens);

#endif
