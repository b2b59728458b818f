#include "ledger.h"

#include <sys/stat.h>

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "keys/ledger_pg.h"

#define BUSY_MS 5000 /* the command line and the worker wait for each other this long */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " salt BLOB NOT NULL, hash BLOB NOT NULL, spec TEXT NOT NULL, created INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0, usd_spent REAL NOT NULL DEFAULT 0,"
    " usd_start INTEGER NOT NULL DEFAULT 0, tok_spent REAL NOT NULL DEFAULT 0,"
    " tok_start INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS spend (id INTEGER PRIMARY KEY, key_id INTEGER NOT NULL,"
    " t_ms INTEGER NOT NULL, model TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,"
    " tokens REAL NOT NULL, usd REAL NOT NULL);"
    "CREATE INDEX IF NOT EXISTS spend_key ON spend(key_id, t_ms);";

struct batch {
    uv_work_t work;
    struct ledger *l;
    struct ledger_entry *v;
    size_t n;
    int rc;
};

struct ledger {
    struct pgl *pg;  /* PostgreSQL instead of the SQLite file, or NULL */
    sqlite3 *db;     /* the loop's (or the command line's) */
    sqlite3 *wdb;    /* the worker's */
    uv_loop_t *loop; /* NULL: the command line */
    struct ledger_entry *q;
    size_t n, cap;
    struct batch *busy; /* the batch a worker commits, or NULL */
    int64_t data_version;
    bool warned;
};

static int
open_conn(const char *path, sqlite3 **db, char **msg)
{
    int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(*db, BUSY_MS);
    if (rc == SQLITE_OK)
        rc =
            sqlite3_exec(*db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, msg);
    return rc;
}

int
ledger_open(uv_loop_t *loop, const char *dir, const char *url, struct ledger **out, char *err,
            size_t errlen)
{
    struct ledger *l = xcalloc(1, sizeof(*l));
    char *path = xasprintf("%s/%s", dir, KEYS_LEDGER_FILE), *msg = NULL;
    int rc;

    *out = NULL;
    l->loop = loop;
    if (url != NULL) {
        if (!pgl_is_url(url)) {
            snprintf(err, errlen, "ledger: expected a postgresql:// URL");
            rc = -EINVAL;
            goto fail;
        }
        rc = pgl_open(loop, url, &l->pg, err, errlen);
        if (rc < 0)
            goto fail;
        *out = l;
        goto out;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "keys: cannot create %s: %s", dir, strerror(errno));
        rc = -errno;
        goto fail;
    }
    rc = open_conn(path, &l->db, &msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(l->db, schema, NULL, NULL, &msg);
    if (rc == SQLITE_OK && loop != NULL)
        rc = open_conn(path, &l->wdb, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "keys: cannot open the ledger %s: %s", path,
                 msg ? msg : sqlite3_errstr(rc));
        rc = -EIO;
        goto fail;
    }
    ledger_changed(l);
    *out = l;
    rc = 0;
    goto out;
fail:
    ledger_close(l);
out:
    sqlite3_free(msg);
    free(path);
    return rc;
}

/* Whether a settlement after v[i] in the batch is of the same key (a short look: batches
 * mostly hold a few busy keys; past the window the key is simply written again). */
static bool
later_same_key(const struct ledger_entry *v, size_t n, size_t i)
{
    for (size_t j = i + 1; j < n && j < i + 64; j++)
        if (v[j].key_id == v[i].key_id)
            return true;
    return false;
}

/* In the worker (or at close): one transaction for the whole batch. */
static int
commit(sqlite3 *db, const struct ledger_entry *v, size_t n)
{
    sqlite3_stmt *ins = NULL, *upd = NULL;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO spend (key_id, t_ms, model, prompt_tokens,"
                                " completion_tokens, tokens, usd) VALUES (?,?,?,?,?,?,?)",
                                -1, &ins, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "UPDATE keys SET usd_spent=?, usd_start=?, tok_spent=?,"
                                " tok_start=? WHERE id=?",
                                -1, &upd, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        const struct ledger_entry *e = &v[i];

        sqlite3_bind_int64(ins, 1, e->key_id);
        sqlite3_bind_int64(ins, 2, e->t_ms);
        sqlite3_bind_text(ins, 3, e->model, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 4, e->prompt_tokens);
        sqlite3_bind_int64(ins, 5, e->completion_tokens);
        sqlite3_bind_double(ins, 6, e->tokens);
        sqlite3_bind_double(ins, 7, e->usd);
        rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(ins);
        if (later_same_key(v, n, i))
            continue; /* the key's totals are absolute: its last settlement writes them */
        sqlite3_bind_double(upd, 1, e->usd_spent);
        sqlite3_bind_int64(upd, 2, e->usd_start);
        sqlite3_bind_double(upd, 3, e->tok_spent);
        sqlite3_bind_int64(upd, 4, e->tok_start);
        sqlite3_bind_int64(upd, 5, e->key_id);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(upd) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(upd);
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    else if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void
work_commit(uv_work_t *w)
{
    struct batch *b = w->data;

    b->rc = commit(b->l->wdb, b->v, b->n);
}

static void start_batch(struct ledger *l);

/* Back on the loop: a failed batch goes back to the head of the queue (tried again with the
 * next), so nothing settled is dropped while the file is busy. */
static void
work_done(uv_work_t *w, int status)
{
    struct batch *b = w->data;
    struct ledger *l = b->l;

    l->busy = NULL;
    if (b->rc != SQLITE_OK || status != 0) {
        if (!l->warned)
            log_warnx("keys: cannot commit %zu settlements to the ledger: %s; retrying", b->n,
                      sqlite3_errmsg(l->wdb));
        l->warned = true;
        if (l->n + b->n > l->cap) {
            l->cap = l->n + b->n;
            l->q = xrealloc(l->q, l->cap * sizeof(*l->q));
        }
        memmove(l->q + b->n, l->q, l->n * sizeof(*l->q));
        memcpy(l->q, b->v, b->n * sizeof(*l->q));
        l->n += b->n;
    } else {
        l->warned = false;
    }
    free(b->v);
    free(b);
    start_batch(l);
}

static void
start_batch(struct ledger *l)
{
    struct batch *b;

    if (l->busy != NULL || l->n == 0 || l->loop == NULL)
        return;
    b = xcalloc(1, sizeof(*b));
    b->l = l;
    b->v = l->q;
    b->n = l->n;
    b->work.data = b;
    l->q = NULL;
    l->n = l->cap = 0;
    l->busy = b;
    if (uv_queue_work(l->loop, &b->work, work_commit, work_done) != 0) {
        l->busy = NULL;
        l->q = b->v;
        l->n = l->cap = b->n;
        free(b);
    }
}

void
ledger_settle(struct ledger *l, const struct ledger_entry *e)
{
    if (l->pg != NULL) {
        pgl_settle(l->pg, e);
        return;
    }
    if (l->n >= LEDGER_QUEUE_MAX) {
        log_warnx("keys: %d settlements wait for the ledger; one is dropped", LEDGER_QUEUE_MAX);
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->q = xrealloc(l->q, l->cap * sizeof(*l->q));
    }
    l->q[l->n++] = *e;
    start_batch(l);
}

size_t
ledger_pending(const struct ledger *l)
{
    if (l->pg != NULL)
        return pgl_pending(l->pg);
    return l->n + (l->busy ? l->busy->n : 0);
}

void
ledger_close(struct ledger *l)
{
    if (l == NULL)
        return;
    pgl_close(l->pg);
    if (l->n > 0 && l->db != NULL && commit(l->db, l->q, l->n) != SQLITE_OK)
        log_warnx("keys: cannot commit %zu settlements at close: %s", l->n, sqlite3_errmsg(l->db));
    sqlite3_close(l->db);
    sqlite3_close(l->wdb);
    free(l->q);
    free(l);
}

static void
row_key(sqlite3_stmt *s, struct vkey *k)
{
    json_t *spec = json_loads((const char *)sqlite3_column_text(s, 4), 0, NULL);
    char err[128];

    vkey_init(k);
    k->id = sqlite3_column_int64(s, 0);
    snprintf(k->name, sizeof(k->name), "%s", (const char *)sqlite3_column_text(s, 1));
    if (sqlite3_column_bytes(s, 2) == VKEY_SALT_LEN)
        memcpy(k->salt, sqlite3_column_blob(s, 2), VKEY_SALT_LEN);
    if (sqlite3_column_bytes(s, 3) == VKEY_HASH_LEN)
        memcpy(k->hash, sqlite3_column_blob(s, 3), VKEY_HASH_LEN);
    if (spec == NULL || vkey_apply(k, spec, 0, err, sizeof(err)) < 0)
        log_warnx("keys: key %s: unreadable rules in the ledger (%s)", k->name, err);
    json_decref(spec);
    k->created = sqlite3_column_int64(s, 5);
    k->revoked = sqlite3_column_int(s, 6) != 0;
    k->usd.spent = sqlite3_column_double(s, 7);
    k->usd.start = sqlite3_column_int64(s, 8);
    k->tokens.spent = sqlite3_column_double(s, 9);
    k->tokens.start = sqlite3_column_int64(s, 10);
}

int
ledger_load(struct ledger *l, ledger_key_cb cb, void *arg)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (l->pg != NULL)
        return pgl_load(l->pg, cb, arg);
    rc = sqlite3_prepare_v2(l->db,
                            "SELECT id, name, salt, hash, spec, created, revoked, usd_spent,"
                            " usd_start, tok_spent, tok_start FROM keys ORDER BY id",
                            -1, &s, NULL);

    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct vkey *k = xmalloc(sizeof(*k));

        row_key(s, k);
        cb(arg, k);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int
ledger_insert(struct ledger *l, struct vkey *k)
{
    sqlite3_stmt *s = NULL;
    json_t *spec;
    char *text;
    int rc;

    if (l->pg != NULL)
        return pgl_insert(l->pg, k);
    spec = vkey_spec(k);
    text = json_dumps(spec, JSON_COMPACT);
    rc = sqlite3_prepare_v2(l->db,
                            "INSERT INTO keys (name, salt, hash, spec, created, usd_start,"
                            " tok_start) VALUES (?,?,?,?,?,?,?)",
                            -1, &s, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, k->salt, VKEY_SALT_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(s, 3, k->hash, VKEY_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, text, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, k->created);
        sqlite3_bind_int64(s, 6, k->usd.start);
        sqlite3_bind_int64(s, 7, k->tokens.start);
        rc = sqlite3_step(s);
    }
    if (rc == SQLITE_DONE)
        k->id = sqlite3_last_insert_rowid(l->db);
    sqlite3_finalize(s);
    free(text);
    json_decref(spec);
    return rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
}

int
ledger_update(struct ledger *l, const struct vkey *k)
{
    sqlite3_stmt *s = NULL;
    json_t *spec;
    char *text;
    int rc;

    if (l->pg != NULL)
        return pgl_update(l->pg, k);
    spec = vkey_spec(k);
    text = json_dumps(spec, JSON_COMPACT);
    rc = sqlite3_prepare_v2(l->db, "UPDATE keys SET name=?, spec=?, revoked=? WHERE id=?", -1, &s,
                            NULL);

    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, k->revoked);
        sqlite3_bind_int64(s, 4, k->id);
        rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    free(text);
    json_decref(spec);
    return rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
}

bool
ledger_refresh(struct ledger *l, ledger_key_cb cb, void *arg)
{
    if (l->pg == NULL || l->loop == NULL)
        return false;
    pgl_refresh(l->pg, cb, arg);
    return true;
}

bool
ledger_changed(struct ledger *l)
{
    sqlite3_stmt *s = NULL;
    int64_t v = l->data_version;

    if (l->pg != NULL) /* other servers settle too: their spend and edits, read every time */
        return true;
    if (sqlite3_prepare_v2(l->db, "PRAGMA data_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (v == l->data_version)
        return false;
    l->data_version = v;
    return true;
}

int
ledger_totals(struct ledger *l, int64_t key_id, int64_t *requests, double *usd, double *tokens)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (l->pg != NULL)
        return pgl_totals(l->pg, key_id, requests, usd, tokens);
    rc = sqlite3_prepare_v2(l->db,
                            "SELECT count(*), total(usd), total(tokens) FROM spend WHERE key_id=?",
                            -1, &s, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, key_id);
        rc = sqlite3_step(s);
    }
    if (rc == SQLITE_ROW) {
        *requests = sqlite3_column_int64(s, 0);
        *usd = sqlite3_column_double(s, 1);
        *tokens = sqlite3_column_double(s, 2);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -EIO;
}
