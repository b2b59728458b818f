/*
 * The admin store: a SQLite file in admin.state_dir that keeps what the admin app shows across
 * restarts: the activity (one row per finished request), the audit trail (every admin action)
 * and per-model settings (enabled or not). WAL, synchronous=NORMAL, a versioned schema.
 *
 * It runs on the loop thread. Why that is safe: the statements of the request path are
 * prepared once, rows are queued in memory and written in one transaction per loop tick (a
 * commit in WAL mode with synchronous=NORMAL appends to the WAL without fsync), and every read
 * is bounded (a limit, or a time window over an index) and comes from an admin request. The
 * enabled set is kept in memory, so the listings and the router never touch the file. Measured
 * on a loaded 2-core box: 60-250 us for a commit of one row, 20-25 us a row in a commit of 100;
 * a page of 1000 activity rows as JSON 12-34 ms (the default page of 100: a tenth of that).
 */
#ifndef GOINFER_ADMIN_STORE_H
#define GOINFER_ADMIN_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define STORE_FILE          "goinfer.db"
#define STORE_AUDIT_KEEP    100000 /* audit rows kept */
#define STORE_QUEUE_MAX     10000  /* rows waiting for the next tick; past it, rows are dropped */
#define STORE_LIMIT_MAX     1000   /* rows one read may return */
#define STORE_BUCKETS_MAX   1440   /* steps one series may have */
#define STORE_SERIES_MODELS 100    /* models one series shows: the busiest */
#define STORE_TEXT_MAX      512    /* bytes kept of a model name or a path */

struct store;

/* One finished request. Strings are borrowed for the call (copied); NULL is stored as null;
 * a number < 0 means unknown. */
struct store_activity {
    int64_t t_ms; /* when it began, Unix milliseconds */
    const char *model, *backend, *key, *client, *method, *path;
    int status;
    int64_t prompt_tokens, completion_tokens;
    double ttft_ms, tokens_per_s, duration_ms;
};

/* One admin action: who (the key's name), from where, what, on what, how it ended. */
struct store_audit {
    int64_t t_ms;
    const char *key, *client, *action, *target;
    int status;
};

/*
 * Opens (creating with mode 0700 when missing) dir and its STORE_FILE, migrating the schema.
 * loop may be NULL (tests): rows are then written at once. keep bounds the activity rows.
 * Returns 0, or a negative errno with err naming the folder or the file and what to do.
 */
int store_open(uv_loop_t *loop, const char *dir, uint64_t keep, struct store **out, char *err,
               size_t errlen);
/* Writes what is queued and closes; NULL is a no-op. */
void store_close(struct store *st);
void store_set_keep(struct store *st, uint64_t keep);

/* Queued; written at the next loop tick. */
void store_activity_add(struct store *st, const struct store_activity *a);
void store_audit_add(struct store *st, const struct store_audit *a);
/* Writes the queued rows now (reads call it first). */
void store_flush(struct store *st);

/* Model settings: a model is enabled unless set otherwise. st NULL: everything is enabled. */
bool store_model_enabled(const struct store *st, const char *model);
int store_model_set_enabled(struct store *st, const char *model, bool enabled);

/* Newest first: {"data":[...], "next_before": id or null}. before: rows with a smaller id
 * (0: from the newest); model: only that model's, or NULL. */
json_t *store_activity_json(struct store *st, size_t limit, int64_t before, const char *model);
json_t *store_audit_json(struct store *st, size_t limit);
/* Per model and per step of step_s seconds over the minutes before now_ms: requests,
 * completion tokens and average tokens/s (null where none was reported), for the
 * STORE_SERIES_MODELS busiest models that reached a backend.
 * {"from":ms, "step":s, "t":[ms...], "models":[{"model":..,"requests":[..],
 * "completion_tokens":[..],"tokens_per_s":[..]}]} */
json_t *store_series_json(struct store *st, int64_t now_ms, int64_t minutes, int64_t step_s);
/* {"<model>": {"requests": n, "tokens_per_s": x or null}} over the requests since since_ms
 * that reached a backend. */
json_t *store_recent_json(struct store *st, int64_t since_ms);
/* The activity rows kept (tests). */
int64_t store_activity_count(struct store *st);

#endif
