/* The admin store on SQLite: see store.h for what it keeps and why it may run on the loop. */
#include "admin/store.h"

#include <sys/stat.h>

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"

#define SCHEMA_VERSION 1

/* Version 1. A later version appends its own migration and bumps SCHEMA_VERSION. */
static const char schema_v1[] =
    "CREATE TABLE IF NOT EXISTS activity ("
    " id INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, model TEXT, backend TEXT, key TEXT,"
    " client TEXT, method TEXT, path TEXT, status INTEGER, prompt_tokens INTEGER,"
    " completion_tokens INTEGER, ttft_ms REAL, tokens_per_s REAL, duration_ms REAL);"
    "CREATE INDEX IF NOT EXISTS activity_t ON activity(t_ms);"
    "CREATE INDEX IF NOT EXISTS activity_model ON activity(model, id);"
    "CREATE TABLE IF NOT EXISTS audit ("
    " id INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, key TEXT, client TEXT,"
    " action TEXT NOT NULL, target TEXT, status INTEGER);"
    "CREATE TABLE IF NOT EXISTS model_settings ("
    " model TEXT PRIMARY KEY, enabled INTEGER NOT NULL DEFAULT 1, updated_ms INTEGER);";

enum stmt {
    S_BEGIN,
    S_COMMIT,
    S_ACTIVITY,
    S_AUDIT,
    S_TRIM_ACTIVITY,
    S_TRIM_AUDIT,
    S_SET_MODEL,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    "BEGIN",
    "COMMIT",
    "INSERT INTO activity (t_ms, model, backend, key, client, method, path, status,"
    " prompt_tokens, completion_tokens, ttft_ms, tokens_per_s, duration_ms)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "INSERT INTO audit (t_ms, key, client, action, target, status) VALUES (?,?,?,?,?,?)",
    "DELETE FROM activity WHERE id <= (SELECT max(id) FROM activity) - ?",
    "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?",
    "INSERT INTO model_settings (model, enabled, updated_ms) VALUES (?,?,?)"
    " ON CONFLICT(model) DO UPDATE SET enabled = excluded.enabled,"
    " updated_ms = excluded.updated_ms",
};

/* A row waiting for the next tick, with its own copies of the strings. */
struct pending {
    bool audit;
    struct store_activity a;
    struct store_audit u;
    char *s[6];
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    uint64_t keep;
    uv_timer_t *tick; /* NULL without a loop; freed in its close callback */
    struct pending *q;
    size_t n_q, cap_q;
    uint64_t dropped;
    char **disabled; /* the models set disabled, kept in memory for the listings */
    bool warned;
};

static void
warn_db(struct store *st, const char *what)
{
    if (!st->warned) /* once: a broken disk must not flood the log */
        log_warnx("admin store: %s: %s", what, sqlite3_errmsg(st->db));
    st->warned = true;
}

/* A client names the model (and the path): what is kept of either is bounded. */
static char *
dup_or_null(const char *s)
{
    return s ? xstrndup(s, strnlen(s, STORE_TEXT_MAX)) : NULL; /* xstrndup copies n bytes */
}

static void
bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v == NULL || *v == '\0')
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

static void
bind_int(sqlite3_stmt *s, int i, int64_t v)
{
    if (v < 0)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_int64(s, i, v);
}

static void
bind_real(sqlite3_stmt *s, int i, double v)
{
    if (v < 0)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_double(s, i, v);
}

/* Runs a prepared statement to its end and resets it; SQLITE_DONE or the error. */
static int
step(struct store *st, enum stmt k, const char *what)
{
    int rc = sqlite3_step(st->st[k]);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        warn_db(st, what);
    sqlite3_reset(st->st[k]);
    sqlite3_clear_bindings(st->st[k]);
    return rc;
}

static void
write_activity(struct store *st, const struct store_activity *a)
{
    sqlite3_stmt *s = st->st[S_ACTIVITY];

    sqlite3_bind_int64(s, 1, a->t_ms);
    bind_text(s, 2, a->model);
    bind_text(s, 3, a->backend);
    bind_text(s, 4, a->key);
    bind_text(s, 5, a->client);
    bind_text(s, 6, a->method);
    bind_text(s, 7, a->path);
    sqlite3_bind_int(s, 8, a->status);
    bind_int(s, 9, a->prompt_tokens);
    bind_int(s, 10, a->completion_tokens);
    bind_real(s, 11, a->ttft_ms);
    bind_real(s, 12, a->tokens_per_s);
    bind_real(s, 13, a->duration_ms);
    step(st, S_ACTIVITY, "cannot record a request");
}

static void
write_audit(struct store *st, const struct store_audit *u)
{
    sqlite3_stmt *s = st->st[S_AUDIT];

    sqlite3_bind_int64(s, 1, u->t_ms);
    bind_text(s, 2, u->key);
    bind_text(s, 3, u->client);
    bind_text(s, 4, u->action);
    bind_text(s, 5, u->target);
    sqlite3_bind_int(s, 6, u->status);
    step(st, S_AUDIT, "cannot record an admin action");
}

static void
pending_free(struct pending *p)
{
    for (size_t i = 0; i < sizeof(p->s) / sizeof(p->s[0]); i++)
        free(p->s[i]);
}

/* Every queued row in one transaction, then the oldest rows past the bounds deleted. */
void
store_flush(struct store *st)
{
    bool activity = false, audit = false;

    if (st == NULL || st->n_q == 0)
        return;
    step(st, S_BEGIN, "cannot begin a transaction");
    for (size_t i = 0; i < st->n_q; i++) {
        if (st->q[i].audit)
            write_audit(st, &st->q[i].u);
        else
            write_activity(st, &st->q[i].a);
        activity |= !st->q[i].audit;
        audit |= st->q[i].audit;
        pending_free(&st->q[i]);
    }
    st->n_q = 0;
    if (activity) {
        sqlite3_bind_int64(st->st[S_TRIM_ACTIVITY], 1, (sqlite3_int64)st->keep);
        step(st, S_TRIM_ACTIVITY, "cannot trim the activity");
    }
    if (audit) {
        sqlite3_bind_int64(st->st[S_TRIM_AUDIT], 1, STORE_AUDIT_KEEP);
        step(st, S_TRIM_AUDIT, "cannot trim the audit trail");
    }
    step(st, S_COMMIT, "cannot commit");
    if (st->dropped > 0)
        log_warnx("admin store: %llu rows dropped (more than %d waited for one tick)",
                  (unsigned long long)st->dropped, STORE_QUEUE_MAX);
    st->dropped = 0;
}

static void
on_tick(uv_timer_t *t)
{
    store_flush(t->data);
}

/* A slot in the queue, and the next tick to write it; NULL when the queue is full. */
static struct pending *
enqueue(struct store *st)
{
    struct pending *p;

    if (st->n_q == STORE_QUEUE_MAX) {
        st->dropped++;
        return NULL;
    }
    if (st->n_q == st->cap_q) {
        st->cap_q = st->cap_q ? 2 * st->cap_q : 16;
        st->q = xrealloc(st->q, st->cap_q * sizeof(*st->q));
    }
    p = &st->q[st->n_q++];
    memset(p, 0, sizeof(*p));
    if (st->tick != NULL && st->n_q == 1)
        uv_timer_start(st->tick, on_tick, 0, 0);
    return p;
}

void
store_activity_add(struct store *st, const struct store_activity *a)
{
    struct pending *p = st ? enqueue(st) : NULL;

    if (p == NULL)
        return;
    p->a = *a;
    p->a.model = p->s[0] = dup_or_null(a->model);
    p->a.backend = p->s[1] = dup_or_null(a->backend);
    p->a.key = p->s[2] = dup_or_null(a->key);
    p->a.client = p->s[3] = dup_or_null(a->client);
    p->a.method = p->s[4] = dup_or_null(a->method);
    p->a.path = p->s[5] = dup_or_null(a->path);
    if (st->tick == NULL)
        store_flush(st);
}

void
store_audit_add(struct store *st, const struct store_audit *u)
{
    struct pending *p = st ? enqueue(st) : NULL;

    if (p == NULL)
        return;
    p->audit = true;
    p->u = *u;
    p->u.key = p->s[0] = dup_or_null(u->key);
    p->u.client = p->s[1] = dup_or_null(u->client);
    p->u.action = p->s[2] = dup_or_null(u->action);
    p->u.target = p->s[3] = dup_or_null(u->target);
    if (st->tick == NULL)
        store_flush(st);
}

/* ---- opening ---- */

/* dir and its missing parents, each mode 0700 (the default, ~/.local/state/goinfer, may be the
 * first thing under ~/.local). */
static int
make_dir(const char *dir, char *err, size_t errlen)
{
    char *p = xstrdup(dir);
    struct stat sb;
    int rc = 0;

    for (char *slash = strchr(p + 1, '/'); rc == 0; slash = strchr(slash + 1, '/')) {
        if (slash != NULL)
            *slash = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            rc = -errno;
        else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
            rc = -ENOTDIR;
        if (slash == NULL)
            break;
        *slash = '/';
    }
    if (rc < 0)
        snprintf(err, errlen,
                 "admin store: cannot create the state folder %s (at %s: %s); set "
                 "admin.state_dir in goinfer.yml or GI_STATE_DIR to a folder this user may write",
                 dir, p, strerror(-rc));
    free(p);
    return rc;
}

/* The schema, created or migrated in one transaction: user_version says which it is. */
static int
migrate(sqlite3 *db, char **msg)
{
    sqlite3_stmt *s = NULL;
    int version = 0, rc;
    char *sql;

    rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_OK)
        return rc;
    if (version > SCHEMA_VERSION) {
        *msg = sqlite3_mprintf("the file's schema is version %d, newer than this Goinfer's %d",
                               version, SCHEMA_VERSION);
        return SQLITE_ERROR;
    }
    if (version == SCHEMA_VERSION)
        return SQLITE_OK;
    sql = sqlite3_mprintf("BEGIN; %s PRAGMA user_version = %d; COMMIT;", schema_v1, SCHEMA_VERSION);
    rc = sqlite3_exec(db, sql, NULL, NULL, msg);
    sqlite3_free(sql);
    return rc;
}

static void
load_disabled(struct store *st)
{
    sqlite3_stmt *s = NULL;

    if (sqlite3_prepare_v2(st->db, "SELECT model FROM model_settings WHERE enabled = 0", -1, &s,
                           NULL) != SQLITE_OK) {
        warn_db(st, "cannot read the model settings");
        return;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *m = (const char *)sqlite3_column_text(s, 0);

        if (m != NULL)
            strv_add(&st->disabled, m, strlen(m));
    }
    sqlite3_finalize(s);
}

static int
open_db(struct store *st, const char *path, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);

    /* Another Goinfer on the same folder waits at most 100 ms for a write (then that tick's
     * rows are lost, once said in the log): the loop never blocks longer. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          " PRAGMA busy_timeout=100;",
                          NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        rc = migrate(st->db, &msg);
    for (int k = 0; rc == SQLITE_OK && k < S_COUNT; k++)
        rc = sqlite3_prepare_v3(st->db, stmt_sql[k], -1, SQLITE_PREPARE_PERSISTENT, &st->st[k],
                                NULL);
    if (rc != SQLITE_OK)
        snprintf(err, errlen,
                 "admin store: cannot open %s: %s; move the file away or set admin.state_dir "
                 "(GI_STATE_DIR) to another folder",
                 path,
                 msg      ? msg
                 : st->db ? sqlite3_errmsg(st->db)
                          : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : -EIO;
}

int
store_open(uv_loop_t *loop, const char *dir, uint64_t keep, struct store **out, char *err,
           size_t errlen)
{
    struct store *st = xcalloc(1, sizeof(*st));
    char *path = NULL;
    int rc;

    *out = NULL;
    rc = make_dir(dir, err, errlen);
    if (rc < 0)
        goto fail;
    path = xasprintf("%s/%s", dir, STORE_FILE);
    rc = open_db(st, path, err, errlen);
    if (rc < 0)
        goto fail;
    st->keep = keep;
    load_disabled(st);
    if (loop != NULL) {
        st->tick = xcalloc(1, sizeof(*st->tick));
        uv_timer_init(loop, st->tick);
        st->tick->data = st;
    }
    *out = st;
    free(path);
    return 0;
fail:
    free(path);
    store_close(st);
    return rc;
}

static void
free_handle(uv_handle_t *h)
{
    free(h);
}

void
store_close(struct store *st)
{
    if (st == NULL)
        return;
    if (st->db != NULL)
        store_flush(st);
    if (st->db != NULL && !sqlite3_get_autocommit(st->db)) /* a commit that found the file busy */
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    for (int k = 0; k < S_COUNT; k++)
        sqlite3_finalize(st->st[k]);
    if (st->db != NULL && sqlite3_close(st->db) != SQLITE_OK)
        log_warnx("admin store: close: %s", sqlite3_errmsg(st->db));
    if (st->tick != NULL)
        uv_close((uv_handle_t *)st->tick, free_handle);
    strv_free(st->disabled);
    free(st->q);
    free(st);
}

void
store_set_keep(struct store *st, uint64_t keep)
{
    if (st != NULL)
        st->keep = keep;
}

/* ---- model settings ---- */

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
store_model_enabled(const struct store *st, const char *model)
{
    for (char **d = st ? st->disabled : NULL; d != NULL && *d != NULL; d++)
        if (strcmp(*d, model) == 0)
            return false;
    return true;
}

/* The in-memory set follows the file only once the row is written. */
int
store_model_set_enabled(struct store *st, const char *model, bool enabled)
{
    sqlite3_stmt *s = st->st[S_SET_MODEL];
    size_t n = strv_len(st->disabled), i;

    sqlite3_bind_text(s, 1, model, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, enabled);
    sqlite3_bind_int64(s, 3, wall_ms());
    if (step(st, S_SET_MODEL, "cannot save a model's setting") != SQLITE_DONE)
        return -EIO;
    for (i = 0; i < n && strcmp(st->disabled[i], model) != 0; i++)
        ;
    if (enabled && i < n) {
        free(st->disabled[i]);
        memmove(&st->disabled[i], &st->disabled[i + 1], (n - i) * sizeof(*st->disabled));
    } else if (!enabled && i == n) {
        strv_add(&st->disabled, model, strlen(model));
    }
    return 0;
}

/* ---- reads: bounded, admin requests only ---- */

/* A column as JSON: null, an integer, a real or a string. */
static json_t *
column_json(sqlite3_stmt *s, int i)
{
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(s, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(s, i));
    case SQLITE_TEXT:
        return json_stringn((const char *)sqlite3_column_text(s, i),
                            (size_t)sqlite3_column_bytes(s, i));
    default:
        return json_null();
    }
}

/* Each row as an object named by its columns. */
static json_t *
rows_json(struct store *st, sqlite3_stmt *s, int64_t *last_id)
{
    json_t *rows = json_array();
    int rc;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *o = json_object();

        for (int i = 0; i < sqlite3_column_count(s); i++)
            json_object_set_new(o, sqlite3_column_name(s, i), column_json(s, i));
        *last_id = sqlite3_column_int64(s, 0);
        json_array_append_new(rows, o);
    }
    if (rc != SQLITE_DONE)
        warn_db(st, "cannot read");
    return rows;
}

static sqlite3_stmt *
prepare(struct store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        warn_db(st, "cannot prepare a read");
    return s;
}

json_t *
store_activity_json(struct store *st, size_t limit, int64_t before, const char *model)
{
    sqlite3_stmt *s;
    json_t *rows, *o;
    int64_t last = 0;

    limit = limit < STORE_LIMIT_MAX ? limit : STORE_LIMIT_MAX;
    store_flush(st);
    s = prepare(st, "SELECT id, t_ms, model, backend, key, client, method, path, status,"
                    " prompt_tokens, completion_tokens, ttft_ms, tokens_per_s, duration_ms"
                    " FROM activity WHERE id < ?1 AND (?2 IS NULL OR model = ?2)"
                    " ORDER BY id DESC LIMIT ?3");
    if (s == NULL)
        return json_pack("{s:[], s:n}", "data", "next_before");
    sqlite3_bind_int64(s, 1, before > 0 ? before : INT64_MAX);
    bind_text(s, 2, model);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
    rows = rows_json(st, s, &last);
    sqlite3_finalize(s);
    o = json_pack("{s:o}", "data", rows);
    json_object_set_new(o, "next_before",
                        json_array_size(rows) == limit && last > 1 ? json_integer(last)
                                                                   : json_null());
    return o;
}

json_t *
store_audit_json(struct store *st, size_t limit)
{
    sqlite3_stmt *s;
    json_t *rows;
    int64_t last = 0;

    store_flush(st);
    s = prepare(st, "SELECT id, t_ms, key, client, action, target, status FROM audit"
                    " ORDER BY id DESC LIMIT ?");
    if (s == NULL)
        return json_pack("{s:[]}", "data");
    sqlite3_bind_int64(s, 1, (sqlite3_int64)(limit < STORE_LIMIT_MAX ? limit : STORE_LIMIT_MAX));
    rows = rows_json(st, s, &last);
    sqlite3_finalize(s);
    return json_pack("{s:o}", "data", rows);
}

/* The model's series in models (an array), made with n zeroed steps when it is new. */
static json_t *
series_of(json_t *models, const char *model, size_t n)
{
    json_t *m, *req, *tok, *tps;
    size_t i;

    json_array_foreach (models, i, m) {
        json_t *name = json_object_get(m, "model");

        if ((model == NULL && json_is_null(name)) ||
            (model != NULL && json_is_string(name) && strcmp(json_string_value(name), model) == 0))
            return m;
    }
    req = json_array();
    tok = json_array();
    tps = json_array();
    for (i = 0; i < n; i++) {
        json_array_append_new(req, json_integer(0));
        json_array_append_new(tok, json_integer(0));
        json_array_append_new(tps, json_null());
    }
    m = json_pack("{s:s?, s:o, s:o, s:o}", "model", model, "requests", req, "completion_tokens",
                  tok, "tokens_per_s", tps);
    json_array_append_new(models, m);
    return m;
}

json_t *
store_series_json(struct store *st, int64_t now_ms, int64_t minutes, int64_t step_s)
{
    int64_t step_ms = step_s * 1000, n = (minutes * 60 + step_s - 1) / step_s;
    int64_t from = (now_ms / step_ms + 1 - n) * step_ms; /* steps aligned on the clock */
    json_t *t = json_array(), *models = json_array();
    sqlite3_stmt *s;

    store_flush(st);
    for (int64_t i = 0; i < n; i++)
        json_array_append_new(t, json_integer(from + i * step_ms));
    /* models that reached a backend (no made-up names), the busiest STORE_SERIES_MODELS */
    s = prepare(st, "SELECT model, (t_ms - ?1) / ?2 AS b, count(*), sum(completion_tokens),"
                    " avg(tokens_per_s) FROM activity WHERE t_ms >= ?1 AND model IN"
                    " (SELECT model FROM activity WHERE t_ms >= ?1 AND backend IS NOT NULL"
                    "  GROUP BY model ORDER BY count(*) DESC LIMIT ?3)"
                    " GROUP BY model, b ORDER BY model, b");
    sqlite3_bind_int64(s, 1, from);
    sqlite3_bind_int64(s, 2, step_ms);
    sqlite3_bind_int64(s, 3, STORE_SERIES_MODELS);
    while (s != NULL && sqlite3_step(s) == SQLITE_ROW) {
        const char *model = (const char *)sqlite3_column_text(s, 0);
        int64_t b = sqlite3_column_int64(s, 1);
        json_t *m;

        if (b < 0 || b >= n)
            continue; /* a clock that stepped back */
        m = series_of(models, model, (size_t)n);
        json_array_set_new(json_object_get(m, "requests"), (size_t)b,
                           json_integer(sqlite3_column_int64(s, 2)));
        json_array_set_new(json_object_get(m, "completion_tokens"), (size_t)b,
                           json_integer(sqlite3_column_int64(s, 3)));
        json_array_set_new(json_object_get(m, "tokens_per_s"), (size_t)b, column_json(s, 4));
    }
    sqlite3_finalize(s);
    return json_pack("{s:I, s:I, s:I, s:o, s:o}", "from", (json_int_t)from, "step",
                     (json_int_t)step_s, "minutes", (json_int_t)minutes, "t", t, "models", models);
}

json_t *
store_recent_json(struct store *st, int64_t since_ms)
{
    json_t *o = json_object();
    sqlite3_stmt *s;

    store_flush(st);
    s = prepare(st, "SELECT model, count(*), avg(tokens_per_s) FROM activity"
                    " WHERE t_ms >= ? AND backend IS NOT NULL GROUP BY model");
    sqlite3_bind_int64(s, 1, since_ms);
    while (s != NULL && sqlite3_step(s) == SQLITE_ROW)
        json_object_set_new(o, (const char *)sqlite3_column_text(s, 0),
                            json_pack("{s:I, s:o}", "requests",
                                      (json_int_t)sqlite3_column_int64(s, 1), "tokens_per_s",
                                      column_json(s, 2)));
    sqlite3_finalize(s);
    return o;
}

int64_t
store_activity_count(struct store *st)
{
    sqlite3_stmt *s;
    int64_t n = -1;

    store_flush(st);
    s = prepare(st, "SELECT count(*) FROM activity");
    if (s != NULL && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}
