#include "peerlist.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"

#define PEERLIST_BODY_MAX (32u << 20) /* OpenRouter's list is about 1 MB */
#define PEERLIST_RETRY_MS 60000       /* after a failed fetch, at the latest */

struct entry {
    struct entry *prev, *next;
    struct peerlist *pl;
    char *name, *url, *auth, *ca_file;
    char **allow;
    uint64_t refresh_ms, due; /* uv_now() of the next fetch */
    char **ids;               /* the last list fetched, allowed ones only; or NULL */
    struct buf body;
    long status;
    struct http_fetch *fetch;
    struct http_remote_fetch *rfetch;
    bool seen;
};

struct peerlist {
    uv_loop_t *loop;
    struct http_client *client;
    struct http_remote *remote;
    uv_timer_t tick;
    struct entry *entries;
    bool stopped;
};

static void
entry_cancel(struct entry *e)
{
    http_fetch_cancel(e->fetch);
    http_remote_cancel(e->rfetch);
    e->fetch = NULL;
    e->rfetch = NULL;
}

static void
entry_free(struct entry *e)
{
    entry_cancel(e);
    if (e->auth != NULL)
        explicit_bzero(e->auth, strlen(e->auth));
    free(e->name), free(e->url), free(e->auth), free(e->ca_file);
    strv_free(e->allow);
    strv_free(e->ids);
    buf_cleanup(&e->body);
    free(e);
}

static void
on_response(void *arg, long status, const struct http_header *h, size_t n)
{
    struct entry *e = arg;

    (void)h, (void)n;
    e->status = status;
}

static int
on_body(void *arg, const char *data, size_t len)
{
    struct entry *e = arg;

    return buf_append(&e->body, data, len) < 0 ? -1 : 0;
}

/* OpenAI's {"data":[{"id":...}]}: the ids the allow patterns let through; how many were
 * listed in *total. NULL when the body is not that shape. */
static char **
parse_ids(const struct entry *e, size_t *total)
{
    json_t *root = json_loadb(e->body.data, e->body.len, 0, NULL);
    json_t *data = json_object_get(root, "data"), *m;
    char **ids = NULL;
    size_t i, n = 0;

    *total = 0;
    if (!json_is_array(data)) {
        json_decref(root);
        return NULL;
    }
    ids = xcalloc(json_array_size(data) + 1, sizeof(*ids));
    json_array_foreach (data, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));

        if (id == NULL)
            continue;
        (*total)++;
        if (peers_allowed(e->allow, id))
            ids[n++] = xstrdup(id);
    }
    json_decref(root);
    return ids;
}

static void
on_done(void *arg, int err, const char *msg)
{
    struct entry *e = arg;
    char **ids = NULL;
    size_t total = 0;

    e->fetch = NULL;
    e->rfetch = NULL;
    e->due = uv_now(e->pl->loop) + e->refresh_ms;
    if (err == 0 && e->status == 200)
        ids = parse_ids(e, &total);
    if (ids != NULL) {
        strv_free(e->ids);
        e->ids = ids;
        log_info("peer %s: %zu models from %s (%zu listed)", e->name, strv_len(ids), e->url, total);
    } else {
        if (e->refresh_ms > PEERLIST_RETRY_MS)
            e->due = uv_now(e->pl->loop) + PEERLIST_RETRY_MS;
        log_warnx("peer %s: no model list from %s: %s", e->name, e->url,
                  err                ? msg
                  : e->status != 200 ? "not 200"
                                     : "not an OpenAI model list");
    }
    buf_reset(&e->body);
}

static void
entry_fetch(struct entry *e)
{
    static const struct http_fetch_cb cb = {on_response, on_body, on_done};
    struct http_header h[2];
    size_t nh = 0;
    struct http_fetch_opts o = {0};
    struct http_remote_opts ro = {e->ca_file, 1};

    if (e->auth != NULL)
        h[nh++] = (struct http_header){"Authorization", 13, e->auth, strlen(e->auth)};
    h[nh++] = (struct http_header){"Accept", 6, "application/json", 16};
    o.url = e->url;
    o.headers = h;
    o.n_headers = nh;
    o.timeout_ms = 60000;
    e->status = 0;
    e->due = UINT64_MAX; /* in flight */
    if (strncmp(e->url, "https://", 8) == 0)
        e->rfetch = http_remote_start(e->pl->remote, &o, &ro, &cb, e);
    else
        e->fetch = http_fetch_start(e->pl->client, &o, &cb, e);
}

static void
on_tick(uv_timer_t *t)
{
    struct peerlist *pl = t->data;
    uint64_t now = uv_now(pl->loop);

    for (struct entry *e = pl->entries; e != NULL; e = e->next)
        if (e->due <= now)
            entry_fetch(e);
}

struct peerlist *
peerlist_new(uv_loop_t *loop, struct http_client *client, struct http_remote *remote)
{
    struct peerlist *pl = xcalloc(1, sizeof(*pl));

    pl->loop = loop;
    pl->client = client;
    pl->remote = remote;
    uv_timer_init(loop, &pl->tick);
    pl->tick.data = pl;
    uv_timer_start(&pl->tick, on_tick, 0, 1000);
    uv_unref((uv_handle_t *)&pl->tick);
    return pl;
}

static struct entry *
entry_new(struct peerlist *pl, const struct conf_peer *p, const char *url, const char *auth)
{
    struct entry *e = xcalloc(1, sizeof(*e));

    e->pl = pl;
    e->name = xstrdup(p->name);
    e->url = xstrdup(url);
    e->auth = auth ? xstrdup(auth) : NULL;
    buf_init(&e->body, PEERLIST_BODY_MAX);
    DLIST_PUSH(pl->entries, e);
    return e;
}

/* The entry that keeps serving p: same name, URL and key. */
static struct entry *
entry_find(struct peerlist *pl, const char *name, const char *url, const char *auth)
{
    for (struct entry *e = pl->entries; e != NULL; e = e->next)
        if (strcmp(e->name, name) == 0 && strcmp(e->url, url) == 0 &&
            (e->auth == NULL ? auth == NULL : auth != NULL && strcmp(e->auth, auth) == 0))
            return e;
    return NULL;
}

static void
set_one(struct peerlist *pl, const struct conf_peer *p)
{
    size_t n = strlen(p->proxy);
    char *url, *auth = NULL;
    struct entry *e;

    while (n > 0 && p->proxy[n - 1] == '/')
        n--;
    url = xasprintf("%.*s/v1/models", (int)n, p->proxy);
    if (p->api_key != NULL)
        auth = xasprintf("Bearer %s", p->api_key);
    e = entry_find(pl, p->name, url, auth);
    if (e == NULL) {
        e = entry_new(pl, p, url, auth);
        e->due = 0;
    }
    e->seen = true;
    e->refresh_ms = p->models_refresh * 1000;
    strv_free(e->allow);
    e->allow = NULL;
    for (char **a = p->allow; a && *a; a++)
        strv_add(&e->allow, *a, strlen(*a));
    free(e->ca_file);
    e->ca_file = p->ca_file ? xstrdup(p->ca_file) : NULL;
    if (auth != NULL)
        explicit_bzero(auth, strlen(auth));
    free(auth);
    free(url);
}

void
peerlist_set(struct peerlist *pl, const struct conf_peer *v, size_t n)
{
    if (pl == NULL || pl->stopped)
        return;
    for (struct entry *e = pl->entries; e != NULL; e = e->next)
        e->seen = false;
    for (size_t i = 0; i < n; i++)
        if (v[i].models_refresh > 0)
            set_one(pl, &v[i]);
    for (struct entry *e = pl->entries, *next; e != NULL; e = next) {
        next = e->next;
        if (!e->seen) {
            DLIST_UNLINK(pl->entries, e);
            entry_free(e);
        }
    }
    uv_timer_start(&pl->tick, on_tick, 0, 1000); /* new peers' lists at once */
}

static char *const *
ids_of(const void *arg, const struct conf_peer *p)
{
    const struct peerlist *pl = arg;

    if (p->models_refresh == 0)
        return NULL;
    for (const struct entry *e = pl->entries; e != NULL; e = e->next)
        if (strcmp(e->name, p->name) == 0)
            return e->ids;
    return NULL;
}

struct peers_extra
peerlist_extra(const struct peerlist *pl)
{
    return (struct peers_extra){pl ? ids_of : NULL, pl};
}

void
peerlist_stop(struct peerlist *pl)
{
    if (pl == NULL || pl->stopped)
        return;
    pl->stopped = true;
    for (struct entry *e = pl->entries; e != NULL; e = e->next)
        entry_cancel(e);
    uv_timer_stop(&pl->tick);
    uv_close((uv_handle_t *)&pl->tick, NULL);
}

void
peerlist_free(struct peerlist *pl)
{
    if (pl == NULL)
        return;
    while (pl->entries != NULL) {
        struct entry *e = pl->entries;

        DLIST_UNLINK(pl->entries, e);
        entry_free(e);
    }
    free(pl);
}
