#include "ledger_pg.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define BATCH_SQL_MAX (4u << 20)

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS keys (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " salt BYTEA NOT NULL, hash BYTEA NOT NULL, spec TEXT NOT NULL, created BIGINT NOT NULL,"
    " revoked BOOLEAN NOT NULL DEFAULT false, usd_spent DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " usd_start BIGINT NOT NULL DEFAULT 0, tok_spent DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " tok_start BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS spend (id BIGSERIAL PRIMARY KEY, key_id BIGINT NOT NULL,"
    " t_ms BIGINT NOT NULL, model TEXT, prompt_tokens BIGINT, completion_tokens BIGINT,"
    " tokens DOUBLE PRECISION NOT NULL, usd DOUBLE PRECISION NOT NULL);"
    "CREATE INDEX IF NOT EXISTS spend_key ON spend(key_id, t_ms);";

struct pgl {
    PGconn *sync;  /* blocking: admin, command line, refresh */
    PGconn *async; /* non-blocking, on the loop: settlements */
    uv_poll_t *poll;
    struct ledger_entry *q, *busy; /* queued; being committed */
    size_t n, cap, n_busy;
    bool refreshing, refresh_wanted; /* a read of every key in flight; one asked for */
    ledger_key_cb refresh_cb;
    void *refresh_arg;
    bool failed; /* the batch in flight failed: queued again once it ends */
    bool warned;
};

bool
pgl_is_url(const char *s)
{
    return s != NULL &&
           (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0);
}

static PGconn *
connect_to(const char *url, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "keys: cannot connect to the ledger's PostgreSQL: %s",
                 PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    return c;
}

static void on_poll(uv_poll_t *h, int status, int events);
static void row_key(PGresult *r, int i, struct vkey *k);

#define SELECT_KEYS                                                                                \
    "SELECT id, name, salt, hash, spec, created, revoked, usd_spent, usd_start, tok_spent,"        \
    " tok_start FROM keys ORDER BY id"

int
pgl_open(uv_loop_t *loop, const char *url, struct pgl **out, char *err, size_t errlen)
{
    struct pgl *p = xcalloc(1, sizeof(*p));
    PGresult *r = NULL;
    int rc = -EIO;

    *out = NULL;
    p->sync = connect_to(url, err, errlen);
    if (p->sync == NULL)
        goto fail;
    r = PQexec(p->sync, schema);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "keys: cannot create the ledger's tables: %s",
                 PQerrorMessage(p->sync));
        goto fail;
    }
    if (loop != NULL) {
        p->async = connect_to(url, err, errlen);
        if (p->async == NULL || PQsetnonblocking(p->async, 1) != 0)
            goto fail;
        p->poll = xcalloc(1, sizeof(*p->poll));
        uv_poll_init(loop, p->poll, PQsocket(p->async));
        p->poll->data = p;
    }
    PQclear(r);
    *out = p;
    return 0;
fail:
    PQclear(r);
    pgl_close(p);
    return rc;
}

/* One transaction: each settlement a spend row, and an increment of its key's totals in the
 * window it counted in (a new window starts from this settlement). */
static char *
batch_sql(PGconn *c, const struct ledger_entry *v, size_t n)
{
    struct buf b;
    char *s;

    buf_init(&b, BATCH_SQL_MAX);
    buf_printf(&b, "BEGIN;");
    for (size_t i = 0; i < n; i++) {
        const struct ledger_entry *e = &v[i];
        char *model = PQescapeLiteral(c, e->model, strlen(e->model));

        buf_printf(&b,
                   "INSERT INTO spend (key_id, t_ms, model, prompt_tokens, completion_tokens,"
                   " tokens, usd) VALUES (%lld, %lld, %s, %lld, %lld, %.17g, %.17g);"
                   "UPDATE keys SET usd_spent = CASE WHEN usd_start = %lld THEN usd_spent ELSE 0"
                   " END + %.17g, usd_start = %lld, tok_spent = CASE WHEN tok_start = %lld THEN"
                   " tok_spent ELSE 0 END + %.17g, tok_start = %lld WHERE id = %lld;",
                   (long long)e->key_id, (long long)e->t_ms, model ? model : "NULL",
                   (long long)e->prompt_tokens, (long long)e->completion_tokens, e->tokens, e->usd,
                   (long long)e->usd_start, e->usd, (long long)e->usd_start,
                   (long long)e->tok_start, e->tokens, (long long)e->tok_start,
                   (long long)e->key_id);
        PQfreemem(model);
    }
    buf_printf(&b, "COMMIT;");
    s = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return s;
}

/* Asks for the keys (rules and shared spend) on the loop's connection, when it is free. */
static void
start_refresh(struct pgl *p)
{
    if (p->async == NULL || p->busy != NULL || p->refreshing || !p->refresh_wanted)
        return;
    if (PQsendQuery(p->async, SELECT_KEYS) != 1)
        return; /* the next settlement's failure resets the connection */
    p->refresh_wanted = false;
    p->refreshing = true;
    uv_poll_start(p->poll, UV_READABLE | UV_WRITABLE, on_poll);
}

static void
start_batch(struct pgl *p)
{
    char *sql;

    if (p->async == NULL || p->busy != NULL || p->refreshing || p->n == 0) {
        start_refresh(p);
        return;
    }
    sql = batch_sql(p->async, p->q, p->n);
    if (PQsendQuery(p->async, sql) != 1) {
        if (!p->warned)
            log_warnx("keys: cannot send settlements to PostgreSQL: %s", PQerrorMessage(p->async));
        p->warned = true;
        PQreset(p->async); /* a dropped connection: tried again with the next settlement */
        PQsetnonblocking(p->async, 1);
        uv_poll_stop(p->poll);
        uv_poll_init(p->poll->loop, p->poll, PQsocket(p->async));
        free(sql);
        return;
    }
    free(sql);
    p->busy = p->q;
    p->n_busy = p->n;
    p->q = NULL;
    p->n = p->cap = 0;
    p->failed = false;
    uv_poll_start(p->poll, UV_READABLE | UV_WRITABLE, on_poll);
}

/* The batch ended: a failed one goes back to the head of the queue. */
static void
batch_done(struct pgl *p)
{
    if (p->failed) {
        if (!p->warned)
            log_warnx("keys: PostgreSQL refused %zu settlements: %s; retrying", p->n_busy,
                      PQerrorMessage(p->async));
        p->warned = true;
        p->q = xrealloc(p->q, (p->n + p->n_busy) * sizeof(*p->q));
        memmove(p->q + p->n_busy, p->q, p->n * sizeof(*p->q));
        memcpy(p->q, p->busy, p->n_busy * sizeof(*p->q));
        p->n += p->n_busy;
        p->cap = p->n;
    } else {
        p->warned = false;
    }
    free(p->busy);
    p->busy = NULL;
    p->n_busy = 0;
    uv_poll_stop(p->poll);
    start_batch(p);
}

static void
on_poll(uv_poll_t *h, int status, int events)
{
    struct pgl *p = h->data;
    PGresult *r;

    if (status < 0 || ((events & UV_WRITABLE) && PQflush(p->async) == 0))
        uv_poll_start(h, UV_READABLE, on_poll); /* all sent: wait for the answers */
    if (status < 0 || !(events & UV_READABLE))
        return;
    if (PQconsumeInput(p->async) != 1) {
        p->failed = p->busy != NULL;
        p->refreshing = false;
        if (p->busy != NULL)
            batch_done(p);
        else
            uv_poll_stop(h);
        return;
    }
    while (!PQisBusy(p->async)) {
        r = PQgetResult(p->async);
        if (r == NULL && p->refreshing) {
            p->refreshing = false;
            uv_poll_stop(p->poll);
            start_batch(p);
            return;
        }
        if (r == NULL) {
            batch_done(p);
            return;
        }
        if (p->refreshing && PQresultStatus(r) == PGRES_TUPLES_OK)
            for (int i = 0; i < PQntuples(r); i++) {
                struct vkey *k = xmalloc(sizeof(*k));

                row_key(r, i, k);
                p->refresh_cb(p->refresh_arg, k);
            }
        else if (PQresultStatus(r) != PGRES_COMMAND_OK)
            p->failed = true;
        PQclear(r);
    }
}

void
pgl_settle(struct pgl *p, const struct ledger_entry *e)
{
    if (p->async == NULL)
        return;
    if (p->n >= LEDGER_QUEUE_MAX) {
        log_warnx("keys: %d settlements wait for PostgreSQL; one is dropped", LEDGER_QUEUE_MAX);
        return;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->q = xrealloc(p->q, p->cap * sizeof(*p->q));
    }
    p->q[p->n++] = *e;
    start_batch(p);
}

size_t
pgl_pending(const struct pgl *p)
{
    return p->n + p->n_busy;
}

static void
free_handle(uv_handle_t *h)
{
    free(h);
}

/* At close: what is in flight is waited for, then what is queued committed, blocking. */
void
pgl_close(struct pgl *p)
{
    PGresult *r;

    if (p == NULL)
        return;
    if (p->async != NULL) {
        PQsetnonblocking(p->async, 0);
        while ((p->busy != NULL || p->refreshing) && (r = PQgetResult(p->async)) != NULL)
            PQclear(r);
        if (p->n > 0) {
            char *sql = batch_sql(p->async, p->q, p->n);

            r = PQexec(p->async, sql);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                log_warnx("keys: cannot commit %zu settlements at close: %s", p->n,
                          PQerrorMessage(p->async));
            PQclear(r);
            free(sql);
        }
    }
    if (p->poll != NULL)
        uv_close((uv_handle_t *)p->poll, free_handle);
    PQfinish(p->async);
    PQfinish(p->sync);
    free(p->q);
    free(p->busy);
    free(p);
}

static int
hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A BYTEA column in text form ("\x0a1b...") into out, exactly n bytes. */
static void
bytea(const char *s, unsigned char *out, size_t n)
{
    if (s == NULL || strncmp(s, "\\x", 2) != 0 || strlen(s) != 2 + 2 * n)
        return;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(hex_value(s[2 + 2 * i]) * 16 + hex_value(s[3 + 2 * i]));
}

static void
row_key(PGresult *r, int i, struct vkey *k)
{
    json_t *spec = json_loads(PQgetvalue(r, i, 4), 0, NULL);
    char err[128] = "";

    vkey_init(k);
    k->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    snprintf(k->name, sizeof(k->name), "%s", PQgetvalue(r, i, 1));
    bytea(PQgetvalue(r, i, 2), k->salt, VKEY_SALT_LEN);
    bytea(PQgetvalue(r, i, 3), k->hash, VKEY_HASH_LEN);
    if (spec == NULL || vkey_apply(k, spec, 0, err, sizeof(err)) < 0)
        log_warnx("keys: key %s: unreadable rules in the ledger (%s)", k->name, err);
    json_decref(spec);
    k->created = strtoll(PQgetvalue(r, i, 5), NULL, 10);
    k->revoked = PQgetvalue(r, i, 6)[0] == 't';
    k->usd.spent = strtod(PQgetvalue(r, i, 7), NULL);
    k->usd.start = strtoll(PQgetvalue(r, i, 8), NULL, 10);
    k->tokens.spent = strtod(PQgetvalue(r, i, 9), NULL);
    k->tokens.start = strtoll(PQgetvalue(r, i, 10), NULL, 10);
}

void
pgl_refresh(struct pgl *p, ledger_key_cb cb, void *arg)
{
    p->refresh_cb = cb;
    p->refresh_arg = arg;
    p->refresh_wanted = true;
    start_batch(p);
}

int
pgl_load(struct pgl *p, ledger_key_cb cb, void *arg)
{
    PGresult *r = PQexec(p->sync, SELECT_KEYS);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -EIO;

    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        struct vkey *k = xmalloc(sizeof(*k));

        row_key(r, i, k);
        cb(arg, k);
    }
    PQclear(r);
    return rc;
}

/* "\x..." text for a BYTEA parameter. */
static void
hex_of(const unsigned char *v, size_t n, char *out)
{
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", v[i]);
}

static int
status_of(PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

    if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK)
        return 0;
    return state && strcmp(state, "23505") == 0 ? -EEXIST : -EIO; /* unique_violation */
}

int
pgl_insert(struct pgl *p, struct vkey *k)
{
    char salt[2 + 2 * VKEY_SALT_LEN + 1], hash[2 + 2 * VKEY_HASH_LEN + 1], created[24], us[24],
        ts[24];
    json_t *spec = vkey_spec(k);
    char *text = json_dumps(spec, JSON_COMPACT);
    const char *params[] = {k->name, salt, hash, text, created, us, ts};
    PGresult *r;
    int rc;

    hex_of(k->salt, VKEY_SALT_LEN, salt);
    hex_of(k->hash, VKEY_HASH_LEN, hash);
    snprintf(created, sizeof(created), "%lld", (long long)k->created);
    snprintf(us, sizeof(us), "%lld", (long long)k->usd.start);
    snprintf(ts, sizeof(ts), "%lld", (long long)k->tokens.start);
    r = PQexecParams(p->sync,
                     "INSERT INTO keys (name, salt, hash, spec, created, usd_start, tok_start)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                     7, NULL, params, NULL, NULL, 0);
    rc = status_of(r);
    if (rc == 0)
        k->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    free(text);
    json_decref(spec);
    return rc;
}

int
pgl_update(struct pgl *p, const struct vkey *k)
{
    char id[24];
    json_t *spec = vkey_spec(k);
    char *text = json_dumps(spec, JSON_COMPACT);
    const char *params[] = {k->name, text, k->revoked ? "true" : "false", id};
    PGresult *r;
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)k->id);
    r = PQexecParams(p->sync, "UPDATE keys SET name = $1, spec = $2, revoked = $3 WHERE id = $4", 4,
                     NULL, params, NULL, NULL, 0);
    rc = status_of(r);
    PQclear(r);
    free(text);
    json_decref(spec);
    return rc;
}

int
pgl_totals(struct pgl *p, int64_t key_id, int64_t *requests, double *usd, double *tokens)
{
    char id[24];
    const char *params[] = {id};
    PGresult *r;
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)key_id);
    r = PQexecParams(p->sync,
                     "SELECT count(*), coalesce(sum(usd), 0), coalesce(sum(tokens), 0) FROM spend"
                     " WHERE key_id = $1",
                     1, NULL, params, NULL, NULL, 0);
    rc = status_of(r);
    if (rc == 0 && PQntuples(r) == 1) {
        *requests = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        *usd = strtod(PQgetvalue(r, 0, 1), NULL);
        *tokens = strtod(PQgetvalue(r, 0, 2), NULL);
    }
    PQclear(r);
    return rc;
}
