/* goinfer: flags, signals and wiring; nothing else. */
#include <sys/resource.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "admin/api_models.h"
#include "admin/audit.h"
#include "admin/engine.h"
#include "admin/metrics.h"
#include "admin/settings.h"
#include "admin/store.h"
#include "app/generation.h"
#include "app/notify.h"
#include "app/restart.h"
#include "app/write.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/auth.h"
#include "http/client.h"
#include "http/remote.h"
#include "http/server.h"
#include "http/tls.h"
#include "keys/broker.h"
#include "keys/cli.h"
#include "models/discovery.h"
#include "router/peerlist.h"
#include "router/router.h"
#include "swap/swap.h"
#include "tunnel/tunnel_client.h"
#include "tunnel/tunnel_server.h"

#define SHUTDOWN_GRACE_MS 10000
#define RESTART_GRACE_MS  60000 /* a restart lets streams run longer: nobody asked them to end */
#define RESTART_WAIT_MS   30000 /* the new process has this long to say it listens */
#define RELOAD_QUIET_MS   300   /* a changed file is read once it has been still this long */
#define COLLECT_RETRY_MS  1000

struct keys {
    struct auth *user;  /* user and admin keys: the API */
    struct auth *admin; /* admin routes */
};

struct app {
    int argc;
    char **argv;
    uv_loop_t *loop;
    struct generations gens;               /* the configuration in force, and retired ones in use */
    struct conf_tunnel_server tunnel_conf; /* the tunnel server borrows it: the one in force */
    struct swap_conf swap_conf;
    struct swap *swap;
    struct keys keys;
    struct tls_ctx *tls;                       /* for the listeners marked tls, or NULL */
    struct conf_listen bound[CONF_MAX_LISTEN]; /* what we listen on (port 0 resolved) */
    size_t n_bound;
    struct router *router;
    struct http_server *server;
    struct tunnel_server *tunnels;       /* server: section: GPU machines dial in */
    struct tunnel_client *tunnel_client; /* client: section: we dial servers */
    struct http_client *peer_client;     /* to llama-swap's peers */
    struct http_remote *peer_remote;     /* to https:// peers (cloud upstreams) */
    struct peerlist *peer_lists;         /* the peers' fetched model lists */
    struct store *store;                 /* the admin store (admin.state_dir) */
    struct broker *broker;               /* virtual keys and their ledger (admin.state_dir) */
    struct engine *engine;               /* llama-server builds (admin API) */
    uv_signal_t sigint, sigterm, sighup, sigusr2;
    uv_fs_event_t watch;
    char *watch_names[2];                   /* goinfer.yml's and llama-swap.yml's base names */
    struct generation_stamp loaded, looked; /* the files as last read, and as last looked at */
    uv_timer_t drain, debounce, collect;
    uint64_t shutdown_at, grace_ms;
    bool stopping, restarting;
    struct admin_settings_ops settings;
    struct restart_fd inherited[RESTART_MAX_FDS]; /* listening sockets a restart handed us */
    size_t n_inherited;
};

static void
log_level_from(const struct conf *c)
{
    log_set_level(c->debug ? LOG_LEVEL_DEBUG : c->quiet ? LOG_LEVEL_WARN : LOG_LEVEL_INFO);
    log_set_json(c->log_json);
}

static const char *
real_key(const char *k)
{
    return k && *k && strncmp(k, "PLEASE SET", 10) != 0 ? k : NULL; /* -write's placeholder */
}

/* The keys clients must present: Goinfer's own, and llama-swap's apiKeys beside them, user
 * keys that open the admin routes too when no admin key is set (as the user key does).
 * apiKeys still guard under -no-api-key: the file asks for them. Returns -EACCES when there
 * is no key at all and -no-api-key was not given. */
static int
make_keys(const struct conf *c, struct keys *k)
{
    const char *user = real_key(c->api_key), *admin = real_key(c->admin_api_key);
    size_t n_swap = strv_len(c->swap.api_keys), n = 0;
    const char **users = xcalloc(n_swap + 3, sizeof(*users));
    char **names = xcalloc(n_swap + 3, sizeof(*names));
    const char *admins[2] = {admin, NULL}, *admin_names[2] = {"admin_api_key", NULL};

    if (!c->no_api_key && user != NULL) {
        names[n] = xstrdup("api_key");
        users[n++] = user;
    }
    if (!c->no_api_key && admin != NULL) {
        names[n] = xstrdup("admin_api_key");
        users[n++] = admin;
    }
    for (size_t i = 0; i < n_swap; i++) {
        names[n] = xasprintf("apiKeys[%zu]", i); /* which key, never the key */
        users[n++] = c->swap.api_keys[i];
    }
    if (n > 0 || c->no_api_key) {
        k->user = auth_new_named(users, (const char *const *)names);
        k->admin = admin != NULL ? auth_new_named(admins, admin_names)
                                 : auth_new_named(users, (const char *const *)names);
    }
    free(users);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return n > 0 || c->no_api_key ? 0 : -EACCES;
}

static void
keys_free(struct keys *k)
{
    auth_free(k->user);
    auth_free(k->admin);
    k->user = k->admin = NULL;
}

/* The certificate for listeners marked tls; *out stays NULL when none is. */
static int
make_tls(const struct conf *c, struct tls_ctx **out, char *err, size_t errlen)
{
    bool any = false;

    *out = NULL;
    for (size_t i = 0; i < c->n_listen; i++)
        any |= c->listen[i].tls;
    if (!any)
        return 0;
    if (c->tls_cert == NULL || c->tls_key == NULL) {
        snprintf(err, errlen,
                 "a listen address is marked tls but tls.cert and tls.key are not "
                 "set in goinfer.yml (goinfer -write makes a self-signed pair)");
        return -EINVAL;
    }
    *out = tls_ctx_new(c->tls_cert, c->tls_key, err, errlen);
    return *out ? 0 : -EINVAL;
}

static int reload(struct app *a, const char *why, char *err, size_t errlen);

static void
reload_cb(void *arg, const char *why)
{
    char err[1024];

    reload(arg, why, err, sizeof(err));
}

/* GI_DEFAULT_MODEL as a model name, or as the seed writes it: a file name ("name.gguf", or a
 * path), matched against the discovered files. NULL (the first model) when nothing matches,
 * which is said once. */
static const char *
default_model_of(const struct generation *g)
{
    static const char *warned;
    const char *want = g->conf.default_model;
    size_t n;

    if (want == NULL || catalog_find(&g->cat, want, strlen(want)) != NULL)
        return want;
    for (size_t i = 0; i < g->cat.n; i++) {
        const char *path = g->cat.v[i].path, *base;

        if (path == NULL)
            continue;
        base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        if (strcmp(path, want) == 0 || strcmp(base, want) == 0)
            return g->cat.v[i].name;
    }
    n = strlen(want);
    for (size_t i = 0; i < g->cat.n && n > 5; i++) /* "name.gguf" of a renamed file */
        if (strcmp(want + n - 5, ".gguf") == 0 && strlen(g->cat.v[i].name) == n - 5 &&
            strncmp(g->cat.v[i].name, want, n - 5) == 0)
            return g->cat.v[i].name;
    if (warned != want) /* once per configuration, though the deps are made more often */
        log_warnx("default_model %s is no model nor model file here; requests that name no "
                  "model get the first one",
                  want);
    warned = want;
    return NULL;
}

static void
router_deps_from(struct app *a, struct router_deps *d)
{
    const struct generation *g = a->gens.current;

    d->cat = &g->cat;
    d->default_model = default_model_of(g);
    d->ui_dir = g->ui_dir;
    d->ui_proxy = g->ui_proxy;
    d->origins = g->conf.origins;
    d->upstream_idle_s = (long)g->conf.limits.upstream_timeout;
    d->auth = a->keys.user;
    d->admin_auth = a->keys.admin;
    d->reload = reload_cb;
    d->reload_arg = a;
    d->settings = &a->settings;
    d->swap = a->swap;
    d->server = a->server;
    d->tunnels = a->tunnels;
    d->peer_client = a->peer_client;
    d->peer_remote = a->peer_remote;
    peerlist_set(a->peer_lists, g->cat.peers, g->cat.n_peers); /* the generation in force's */
    d->peer_lists = a->peer_lists;
    d->store = a->store;
    d->engine = a->engine;
    d->conf = &g->conf;
    d->llama_exe = g->llama_exe;
    d->loop = a->loop;
    d->models_dir = g->conf.models_dir;
    d->admin = &g->conf.admin;
    d->body_bytes = g->conf.limits.body_bytes;
    d->keys = a->broker;
}

/* -no-api-key is the explicit word DESIGN.md asks for before serving keyless on an address
 * other machines reach; it is taken, but said at start and at every reload, so nobody runs
 * that way unawares. The Host check that comes with it stops web pages (DNS rebinding), not a
 * client that reaches the port and says "Host: localhost". */
static void
warn_keyless_public(const struct app *a)
{
    const struct conf *c = &a->gens.current->conf;

    if (!c->no_api_key) {
        if ((c->api_key && strcmp(c->api_key, WRITE_DEBUG_API_KEY) == 0) ||
            (c->admin_api_key && strcmp(c->admin_api_key, WRITE_DEBUG_API_KEY) == 0))
            log_warnx("the API key is the debug key of goinfer -write -debug, which anyone can "
                      "read in Goinfer's source: for development only; run goinfer -write "
                      "for a secret one");
        return;
    }
    for (size_t i = 0; i < a->n_bound; i++)
        if (!conf_host_loopback(a->bound[i].host))
            log_warnx("-no-api-key on %s:%d, an address other machines may reach: anyone who "
                      "reaches it can use the models%s; listen on 127.0.0.1 or set api_key",
                      a->bound[i].host, a->bound[i].port,
                      real_key(c->admin_api_key)
                          ? " (the admin routes still need admin_api_key)"
                          : " and the admin routes (/unload, /reload, /logs)");
}

/* ---- reload: a new generation replaces the old only when it is entirely valid ---- */

/* The swap's instances that a reload retired still point into their generation's catalog. */
static bool
swap_holds(const struct generation *g, void *arg)
{
    struct app *a = arg;

    return a->swap != NULL && swap_uses_catalog(a->swap, &g->cat);
}

/* Frees the retired generations nothing uses; one a model still stopping holds is looked at
 * again a moment later (the swap tells nobody when its last retired instance goes). */
static void
on_collect(uv_timer_t *t)
{
    struct app *a = t->data;

    if (generations_collect(&a->gens, swap_holds, a) > 0)
        uv_timer_start(t, on_collect, COLLECT_RETRY_MS, 0);
}

/* From the loop, never inside the callbacks of the request that held the generation. */
static void
collect_soon(struct app *a)
{
    if (!uv_is_closing((uv_handle_t *)&a->collect))
        uv_timer_start(&a->collect, on_collect, 0, 0);
}

/* http_server_on_complete's callback takes no argument: the one app, for the two below. */
static struct app *the_app;

/* Every request holds the generation in force as it begins (the model it picks, the catalog)
 * until it ends. */
static void
on_request(struct http_request *req, void *router)
{
    generations_begin(&the_app->gens, req->id);
    router_handle(req, router);
}

static void
on_request_done(struct http_request *req)
{
    metrics_request_done(req);
    broker_settle(the_app->broker, req, (int64_t)time(NULL));
    if (router_is_activity(req))
        api_activity_record(the_app->store, req);
    if (generations_end(&the_app->gens, req->id))
        collect_soon(the_app);
}

/* What a reload cannot change while running, said rather than silently kept. */
static void
reload_warn_restart(const struct conf *cur, const struct conf *next)
{
    if (next->n_listen != cur->n_listen)
        log_warnx("reload: listen addresses change only at restart");
    if (next->tunnel_accept != cur->tunnel_accept)
        log_warnx("reload: a server: section is added or removed only at restart");
    if (!tunnelconf_client_same(&cur->tunnel_client, &next->tunnel_client))
        log_warnx("reload: the client: section (servers, identity, slots, pings) changes only "
                  "at restart; the tunnels keep running as they are");
}

/* Returns 0 when the new configuration was taken, else -errno with err (the old one stays). */
static int
reload(struct app *a, const char *why, char *err, size_t errlen)
{
    struct generation *next = xcalloc(1, sizeof(*next));
    struct router_deps d;
    struct keys keys = {0};
    struct tls_ctx *tls = NULL;
    int rc;

    generation_stamp(a->gens.current->conf.file, &a->loaded); /* taken, or refused: seen */
    a->looked = a->loaded;
    rc = generation_load(next, a->argc, a->argv, err, errlen);

    if (rc == 0)
        rc = make_tls(&next->conf, &tls, err, errlen);
    if (rc == 0 && make_keys(&next->conf, &keys) < 0) {
        rc = -EACCES;
        snprintf(err, errlen, "no API key (set api_key, GI_API_KEY or -no-api-key)");
    }
    if (rc != 0) {
        tls_ctx_free(tls);
        log_warnx("reload (%s) refused, the running configuration stays: %s", why, err);
        generation_cleanup(next);
        free(next);
        return rc < 0 ? rc : -EINVAL;
    }
    reload_warn_restart(&a->gens.current->conf, &next->conf);
    if (strcmp(a->gens.current->conf.admin.state_dir, next->conf.admin.state_dir) != 0)
        log_warnx("reload: admin.state_dir changes only at restart; the store stays in %s",
                  a->gens.current->conf.admin.state_dir);
    store_set_keep(a->store, next->conf.admin.activity_keep);
    if (strcmp(a->gens.current->ui_source, next->ui_source) != 0)
        log_info("web UI: %s", next->ui_source);
    generations_replace(&a->gens, next); /* requests in flight keep the old one until they end */
    a->tunnel_conf = next->conf.tunnel_server;
    a->tunnel_conf.stream_timeout = next->conf.limits.upstream_timeout;
    keys_free(&a->keys);
    a->keys = keys;
    http_server_set_tls(a->server, tls); /* new connections; open ones keep theirs */
    tls_ctx_free(a->tls);
    a->tls = tls;
    log_level_from(&next->conf);
    swap_reconfigure(a->swap, &next->cat);
    tunnel_server_recheck(a->tunnels); /* a key removed from server.clients is out at once */
    router_deps_from(a, &d);
    router_set_deps(a->router, &d);
    collect_soon(a); /* the old one goes as soon as nothing uses it */
    log_info("reloaded (%s): %zu models", why, next->cat.n);
    warn_keyless_public(a);
    return 0;
}

/*
 * The files have been still for RELOAD_QUIET_MS since the last event. They are read only when
 * two looks that far apart find them the same, and changed since they were last read: a writer
 * that pauses mid-file (or events that come merged or late) cannot get half a file loaded, and
 * after a SIGHUP that read them the watcher has nothing left to do.
 */
static void
on_quiet(uv_timer_t *t)
{
    struct app *a = t->data;
    struct generation_stamp now;

    generation_stamp(a->gens.current->conf.file, &now);
    if (!generation_stamp_same(&now, &a->looked)) {
        a->looked = now;
        uv_timer_start(t, on_quiet, RELOAD_QUIET_MS, 0);
        return;
    }
    if (!generation_stamp_same(&now, &a->loaded))
        reload_cb(a, "configuration file changed");
}

static void
on_file_event(uv_fs_event_t *h, const char *name, int events, int status)
{
    struct app *a = h->data;

    (void)events;
    if (status < 0 || name == NULL)
        return;
    for (size_t i = 0; i < 2; i++)
        if (strcmp(name, a->watch_names[i]) == 0)
            uv_timer_start(&a->debounce, on_quiet, RELOAD_QUIET_MS, 0);
}

static char *
base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return xstrdup(slash ? slash + 1 : path);
}

/* Watches the folder, not the file: editors replace files by renaming over them (a new inode
 * each time), and the folder's watch sees every one. Events are for the names -config gave. */
static void
watch_config(struct app *a)
{
    const char *file = a->gens.current->conf.file, *slash = file ? strrchr(file, '/') : NULL;
    char *dir, *swap_file;

    uv_fs_event_init(a->loop, &a->watch);
    a->watch.data = a;
    if (file == NULL)
        return;
    generation_stamp(file, &a->loaded);
    a->looked = a->loaded;
    swap_file = conf_swap_file_for(file);
    a->watch_names[0] = base_name(file);
    a->watch_names[1] = base_name(swap_file);
    free(swap_file);
    dir = slash ? xstrndup(file, (size_t)(slash - file)) : xstrdup(".");
    if (uv_fs_event_start(&a->watch, on_file_event, dir, 0) < 0)
        log_warnx("cannot watch %s for changes; use SIGHUP to reload", dir);
    free(dir);
}

/* ---- shutdown ---- */

static void
on_children_stopped(void *arg)
{
    struct app *a = arg;
    struct router_deps d;

    log_info("all llama-server children stopped");
    tunnel_client_free(a->tunnel_client);
    a->tunnel_client = NULL;
    tunnel_server_free(a->tunnels);
    a->tunnels = NULL;
    http_client_release(a->peer_client); /* it goes once its fetches are done */
    a->peer_client = NULL;
    http_remote_release(a->peer_remote);
    a->peer_remote = NULL;
    router_deps_from(a, &d);
    router_set_deps(a->router, &d);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->sigusr2, NULL);
    uv_close((uv_handle_t *)&a->watch, NULL);
    uv_close((uv_handle_t *)&a->drain, NULL);
    uv_close((uv_handle_t *)&a->debounce, NULL);
    uv_close((uv_handle_t *)&a->collect, NULL);
    http_server_free(a->server);
    a->server = NULL;
    swap_free(a->swap);
    a->swap = NULL;
    audit_set_store(NULL);
    store_close(a->store); /* what is queued is written first */
    a->store = NULL;
    router_deps_from(a, &d);
    router_set_deps(a->router, &d);
}

/* In-flight streams get a grace period to end before children are stopped. */
static void
on_drain_tick(uv_timer_t *t)
{
    struct app *a = t->data;
    bool late = uv_now(a->loop) - a->shutdown_at > a->grace_ms;

    if (http_server_active(a->server) > 0 && !late)
        return;
    if (late)
        log_warnx("%zu connections still open after %llu ms; closing them",
                  http_server_active(a->server), (unsigned long long)a->grace_ms);
    uv_timer_stop(t);
    swap_shutdown(a->swap, on_children_stopped, a);
}

/* No new connections; open ones finish within grace_ms, then the children stop and we exit.
 * hand_off: another process listens on our sockets now (a restart). */
static void
begin_stop(struct app *a, uint64_t grace_ms, bool hand_off)
{
    a->stopping = true;
    a->grace_ms = grace_ms;
    notify_stopping(hand_off);
    tunnel_client_drain(a->tunnel_client); /* servers route elsewhere; ours finish */
    tunnel_server_drain(a->tunnels, 1000); /* clients finish, then come back to a restart */
    if (hand_off)
        http_server_hand_off(a->server);
    else
        http_server_shutdown(a->server);
    router_shutdown(a->router);
    peerlist_stop(a->peer_lists); /* its fetches end; its lists serve the requests draining */
    engine_shutdown(a->engine);   /* a build in progress is cancelled */
    uv_fs_event_stop(&a->watch);
    a->shutdown_at = uv_now(a->loop);
    uv_timer_start(&a->drain, on_drain_tick, 0, 50);
}

/* The new process listens, or could not start: we hand over, or keep serving. */
static void
on_restarted(void *arg, bool ok, pid_t pid, const char *msg)
{
    struct app *a = arg;

    a->restarting = false;
    if (a->stopping) { /* a signal asked us to stop meanwhile: the new process serves alone */
        log_info("restart: pid %d %s; this process was already stopping", (int)pid,
                 ok ? "listens" : "did not start");
        return;
    }
    if (!ok) {
        log_warnx("restart failed: %s; this process keeps serving", msg);
        return;
    }
    log_info("restart: pid %d listens; this process stops accepting, finishes %zu open "
             "connections (%d s at most), stops its models and exits",
             (int)pid, http_server_active(a->server), RESTART_GRACE_MS / 1000);
    begin_stop(a, RESTART_GRACE_MS, true);
}

/* A graceful restart: a new copy of this program inherits the listening sockets. */
static int
start_restart(struct app *a, const char *why, char *err, size_t errlen)
{
    struct restart_fd fds[CONF_MAX_LISTEN];
    size_t n = 0;
    int rc;

    if (a->stopping || a->restarting) {
        snprintf(err, errlen, "a %s is already under way", a->stopping ? "shutdown" : "restart");
        return -EBUSY;
    }
    for (size_t i = 0; i < a->n_bound; i++) {
        int fd = http_server_listener_fd(a->server, a->bound[i].host, a->bound[i].port);

        if (fd >= 0)
            fds[n++] = (struct restart_fd){fd, a->bound[i].host, a->bound[i].port};
    }
    log_info("restart (%s): starting a new process", why);
    rc = restart_start(a->loop, a->argv, fds, n, RESTART_WAIT_MS, on_restarted, a, err, errlen);
    if (rc == 0)
        a->restarting = true;
    else
        log_warnx("restart (%s) failed: %s", why, err);
    return rc;
}

static void
on_signal(uv_signal_t *s, int signum)
{
    struct app *a = s->data;
    char err[512];

    if (signum == SIGHUP) {
        notify_reloading();
        reload_cb(a, "SIGHUP");
        notify_reloaded();
        return;
    }
    if (signum == SIGUSR2) {
        start_restart(a, "SIGUSR2", err, sizeof(err));
        return;
    }
    if (a->stopping) {
        log_warnx("second signal: stopping now");
        a->shutdown_at = 0;
        return;
    }
    log_info("signal %d: no new connections; finishing %zu open ones", signum,
             http_server_active(a->server));
    begin_stop(a, SHUTDOWN_GRACE_MS, false);
}

/* systemd's STATUS= line: the models, those running (and their state), the tunnels. */
static void
app_status(void *arg, char *buf, size_t len)
{
    struct app *a = arg;
    json_t *running = a->swap ? swap_running(a->swap) : json_array(), *o;
    json_t *machines = a->tunnels ? tunnel_server_clients(a->tunnels) : NULL;
    size_t i, k = (size_t)snprintf(buf, len, "%zu models; running:", a->gens.current->cat.n);

    json_array_foreach (running, i, o)
        if (k < len)
            k += (size_t)snprintf(buf + k, len - k, "%s %s (%s)", i ? "," : "",
                                  json_string_value(json_object_get(o, "model")),
                                  json_string_value(json_object_get(o, "state")));
    if (k < len && json_array_size(running) == 0)
        k += (size_t)snprintf(buf + k, len - k, " none");
    if (k < len && machines != NULL)
        k += (size_t)snprintf(buf + k, len - k, "; GPU machines connected: %zu",
                              json_array_size(machines));
    if (k < len && a->gens.current->conf.tunnel_client.n_servers > 0)
        snprintf(buf + k, len - k, "; tunnels to %zu servers",
                 a->gens.current->conf.tunnel_client.n_servers);
    json_decref(running);
    json_decref(machines);
}

/* ---- the admin API's settings: what they need of the application ---- */

static const char *
settings_file(void *arg)
{
    struct app *a = arg;

    return a->gens.current->conf.file;
}

static void
settings_in_force(void *arg, struct admin_text out[ADMIN_SETTINGS_FILES])
{
    struct app *a = arg;

    for (int i = 0; i < ADMIN_SETTINGS_FILES; i++)
        out[i] = (struct admin_text){a->gens.current->text[i].data, a->gens.current->text[i].len};
}

static int
settings_check(void *arg, const struct admin_text text[ADMIN_SETTINGS_FILES], char *err,
               size_t errlen, char ***warnings)
{
    struct app *a = arg;
    struct generation_text t[2];

    for (int i = 0; i < 2; i++)
        t[i] = (struct generation_text){(char *)text[i].data, text[i].len};
    return generation_check(a->argc, a->argv, a->gens.current->conf.file, t, err, errlen, warnings);
}

static int
settings_reload(void *arg, const char *why, char *err, size_t errlen)
{
    return reload(arg, why, err, errlen);
}

static int
settings_restart(void *arg, const char *why, char *err, size_t errlen)
{
    return start_restart(arg, why, err, errlen);
}

/* ---- start-up ---- */

static void
write_config(struct app *a)
{
    const struct generation *g = a->gens.current;
    const char *file = g->conf.file, *slash = strrchr(file, '/');
    char err[512], *dir;

    if (g->llama_exe == NULL) {
        free(generation_llama_exe(&g->conf, err, sizeof(err)));
        fatalx("-write: %s", err);
    }
    dir = slash ? xstrndup(file, (size_t)(slash - file)) : xstrdup(".");
    if (conf_write_files(&g->conf, &g->models, g->llama_exe, dir, err, sizeof(err)) < 0)
        fatalx("-write: %s", err);
    log_info("wrote %s/goinfer.yml (mode 0600, %s) and %s/llama-swap.yml with %zu models; "
             "previous files kept as .bak",
             dir,
             g->conf.no_api_key ? "API key to set"
             : g->conf.debug    ? "the DEBUG API key"
                                : "new API key",
             dir, g->models.n);
    if (g->conf.debug && !g->conf.no_api_key)
        log_warnx("-write -debug: goinfer.yml holds the debug API key, the same for everyone: "
                  "for development only");
    free(dir);
}

/* A GPU machine tells the servers it dialled how its loads go, so they list them loading. */
static void
tell_servers(const struct swap_event *ev, void *arg)
{
    static const char *const status[] = {"unloaded", "loading", "loaded", "unloaded", "unloaded"};
    struct app *a = arg;
    json_t *progress = NULL;

    if (a->tunnel_client == NULL || ev->model->unlisted)
        return;
    if (ev->state == SWAP_MODEL_LOADING && ev->load->has_progress)
        progress = swap_progress_json(&ev->load->progress);
    tunnel_client_model_status(a->tunnel_client, ev->model->name, status[ev->state], progress);
    json_decref(progress);
}

/* The swap's gate: a model disabled on the admin page is not started, preload included. */
static const char *
model_disabled_by(const struct model_def *m, void *arg)
{
    struct app *a = arg;

    return api_model_disabled_by(a->store, m);
}

/* The admin store, before anything that records or asks what is enabled. */
static void
setup_store(struct app *a)
{
    const struct conf_admin *c = &a->gens.current->conf.admin;
    struct ledger *ledger = NULL;
    char err[1024];

    if (store_open(a->loop, c->state_dir, c->activity_keep, &a->store, err, sizeof(err)) < 0)
        fatalx("%s", err);
    audit_set_store(a->store);
    log_info("admin store: %s/%s", c->state_dir, STORE_FILE);
    if (ledger_open(a->loop, c->state_dir, a->gens.current->conf.ledger, &ledger, err,
                    sizeof(err)) < 0)
        fatalx("%s", err);
    a->broker = broker_new(a->loop, ledger);
    if (a->gens.current->conf.ledger != NULL)
        log_info("keys: ledger in PostgreSQL"); /* never the URL: it may hold a password */
    else
        log_info("keys: ledger %s/%s", c->state_dir, KEYS_LEDGER_FILE);
}

static void
setup_backends(struct app *a)
{
    const struct catalog *cat = &a->gens.current->cat;
    struct router_deps d;

    for (size_t i = 0; i < cat->n; i++)
        log_info("model %s: %s", cat->v[i].name, cat->v[i].path ? cat->v[i].path : cat->v[i].cmd);
    a->swap_conf.stop_grace_ms = 5000;
    a->swap_conf.probe_ms = 5;
    if (make_keys(&a->gens.current->conf, &a->keys) < 0)
        fatalx("no API key: set GI_API_KEY or api_key in goinfer.yml, or start with -no-api-key "
               "on a private machine");
    setup_store(a);
    a->swap = swap_new(a->loop, &a->swap_conf, cat);
    swap_set_gate(a->swap, model_disabled_by, a);
    a->peer_client = http_client_new(a->loop);
    a->peer_remote = http_remote_new(a->loop);
    a->peer_lists = peerlist_new(a->loop, a->peer_client, a->peer_remote);
    a->engine = engine_new(a->loop, reload_cb, a);
    swap_watch(a->swap, tell_servers, a); /* freed with the swap */
    metrics_watch(a->swap);
    router_deps_from(a, &d);
    a->router = router_new(&d);
}

/* The one line a GPU machine's goinfer.yml needs, printed (not logged: it holds the token). */
static void
setup_tunnel_server(struct app *a, const struct conf_listen *tls_listen, int port)
{
    const struct conf *c = &a->gens.current->conf;
    char pin[TLS_PIN_SIZE];

    if (!c->tunnel_accept)
        return;
    if (tls_listen == NULL || a->tls == NULL)
        fatalx("server: tunnels arrive over TLS: mark a listen address with tls "
               "(\":443\": goinfer, openai, tls) and set tls: cert and key");
    if (c->tunnel_server.token == NULL || strlen(c->tunnel_server.token) < 16)
        fatalx("server: needs a token of 16 characters or more (server.token in goinfer.yml or "
               "GI_TUNNEL_TOKEN), e.g. the output of: openssl rand -hex 24");
    if (tls_cert_pin(c->tls_cert, pin) < 0)
        fatalx("server: cannot read the key pin of %s", c->tls_cert);
    a->tunnel_conf = c->tunnel_server; /* a reload replaces it */
    a->tunnel_conf.stream_timeout = c->limits.upstream_timeout;
    a->tunnels = tunnel_server_new(a->loop, &a->tunnel_conf);
    log_info("tunnel: accepting GPU machines on %s:%d (%zu client keys allowed)", tls_listen->host,
             port, strv_len(c->tunnel_server.clients));
    fprintf(stderr,
            "tunnel: a GPU machine joins with, in its goinfer.yml:\n"
            "  client: {servers: [{url: \"https://%s:%d\", pin: \"%s\", token: \"%s\"}]}\n",
            strcmp(tls_listen->host, "0.0.0.0") == 0 ? "<this host>" : tls_listen->host, port, pin,
            c->tunnel_server.token);
}

/* What the servers route by: our listed (and enabled) models, which are loaded (hot), which see
 * images. */
static json_t *
describe_models(void *arg)
{
    struct app *a = arg;
    json_t *models = json_array();

    for (size_t i = 0; i < a->gens.current->cat.n; i++) {
        const struct model_def *m = &a->gens.current->cat.v[i];

        if (m->unlisted || !api_model_enabled(a->store, m)) /* disabled: not offered */
            continue;
        json_array_append_new(models, json_pack("{s:s, s:b, s:b}", "id", m->name, "hot",
                                                swap_is_ready(a->swap, m->name), "vision",
                                                m->mmproj != NULL));
    }
    return json_pack("{s:o}", "models", models);
}

/* Our identity (made on first use), then a connection to every server listed. */
static void
setup_tunnel_client(struct app *a)
{
    struct conf *c = &a->gens.current->conf;
    struct conf_tunnel_client *t = &c->tunnel_client;
    char err[1024], pin[TLS_PIN_SIZE];

    if (t->n_servers == 0)
        return;
    t->body_bytes = c->limits.body_bytes;
    t->body_in_flight = c->limits.body_bytes_in_flight;
    t->stall_ms = c->limits.write_stall_timeout * 1000;
    if (t->cert == NULL)
        t->cert = xstrdup(TUNNEL_CLIENT_CERT);
    if (t->key == NULL)
        t->key = xstrdup(TUNNEL_CLIENT_KEY);
    if (access(t->cert, R_OK) != 0) {
        if (tls_write_self_signed(t->cert, t->key, "goinfer-client", err, sizeof(err)) < 0)
            fatalx("client: %s", err);
        log_info("tunnel: generated this machine's identity in %s and %s", t->cert, t->key);
    }
    if (tls_cert_pin(t->cert, pin) < 0)
        fatalx("client: cannot read the key pin of %s", t->cert);
    log_info("tunnel: this machine's pin is %s: add it to server.clients on each server", pin);
    /* a server reaches the inference routes only (the client refuses any other path), and
     * with client.allow_admin the loading and unloading of models */
    a->tunnel_client = tunnel_client_new(
        a->loop, t, a->server, ROUTER_SVC_INFER | (t->allow_admin ? ROUTER_SVC_TUNNEL_ADMIN : 0),
        real_key(c->api_key), describe_models, a, err, sizeof(err));
    if (a->tunnel_client == NULL)
        fatalx("client: %s", err);
}

/* l's socket: the one a restart handed us for that address when there is one (so no
 * connection is refused while the processes change), else a new one. */
static int
listen_one(struct app *a, const struct conf_listen *l, int *port)
{
    for (size_t i = 0; i < a->n_inherited; i++) {
        struct restart_fd *f = &a->inherited[i];

        if (f->fd < 0 || strcmp(f->host, l->host) != 0 || (l->port != 0 && l->port != f->port))
            continue;
        if (http_server_listen_fd(a->server, f->fd, l->services, l->tls, port) == 0) {
            f->fd = -1;
            return 0;
        }
        log_warnx("restart: cannot adopt the socket of %s:%d; binding anew", f->host, f->port);
    }
    return http_server_listen(a->server, l->host, l->port, l->services, l->tls, port);
}

/* Sockets handed on that no listen address wants any more are closed. */
static void
drop_inherited(struct app *a)
{
    for (size_t i = 0; i < a->n_inherited; i++) {
        if (a->inherited[i].fd >= 0) {
            log_info("restart: %s:%d is no longer a listen address; closed", a->inherited[i].host,
                     a->inherited[i].port);
            close(a->inherited[i].fd);
        }
        free(a->inherited[i].host);
    }
    a->n_inherited = 0;
}

static void
setup_listeners(struct app *a)
{
    struct router_deps d;
    const struct conf_limits *c = &a->gens.current->conf.limits;
    struct http_limits limits = {
        .header_bytes = c->header_bytes,
        .body_bytes = c->body_bytes,
        .header_ms = c->request_timeout * 1000,
        .keepalive_ms = c->keepalive_timeout * 1000,
        .write_high = 256 * 1024,
        .write_stall_ms = c->write_stall_timeout * 1000,
        .max_conns = c->max_connections,
        .max_conns_per_ip = c->max_connections_per_ip,
        /* never below one largest body, or such a request could never be read */
        .body_per_ip = c->body_bytes_per_ip > c->body_bytes ? c->body_bytes_per_ip : c->body_bytes,
        .body_in_flight =
            c->body_bytes_in_flight > c->body_bytes ? c->body_bytes_in_flight : c->body_bytes,
    };

    char err[1024];
    const struct conf_listen *tls_listen = NULL;
    int tls_port = 0;

    if (make_tls(&a->gens.current->conf, &a->tls, err, sizeof(err)) < 0)
        fatalx("%s", err);
    a->server = http_server_new(a->loop, &limits, on_request, a->router);
    http_server_on_admit(a->server, router_admit);
    http_server_set_tls(a->server, a->tls);
    http_server_on_complete(a->server, on_request_done);
    router_deps_from(a, &d);
    router_set_deps(a->router, &d); /* now with the server, for /metrics */
    for (size_t i = 0; i < a->gens.current->conf.n_listen; i++) {
        struct conf_listen *l = &a->gens.current->conf.listen[i];
        int port = 0, rc = listen_one(a, l, &port);

        if (rc < 0)
            fatalx("cannot listen on %s:%d: %s; pick another port in goinfer.yml 'listen'", l->host,
                   l->port, uv_strerror(rc));
        /* Tests and scripts read this line to learn ports chosen by the kernel (port 0). */
        log_info("listening on %s:%d (%s%s%s%s%s)", l->host, port,
                 l->services & ROUTER_SVC_GOINFER ? "goinfer " : "",
                 l->services & ROUTER_SVC_OPENAI ? "openai " : "",
                 l->services & ROUTER_SVC_SWAP ? "llama-swap " : "",
                 l->services & ROUTER_SVC_ADMIN ? "admin " : "", l->tls ? "tls" : "");
        if (l->tls && tls_listen == NULL)
            tls_listen = l, tls_port = port;
        a->bound[a->n_bound++] = (struct conf_listen){xstrdup(l->host), port, l->services, l->tls};
    }
    drop_inherited(a);
    warn_keyless_public(a);
    setup_tunnel_server(a, tls_listen, tls_port);
    setup_tunnel_client(a);
    router_deps_from(a, &d);
    router_set_deps(a->router, &d); /* now with the tunnels */
}

static void
setup_signals(struct app *a)
{
    uv_signal_t *sigs[] = {&a->sigint, &a->sigterm, &a->sighup, &a->sigusr2};
    int nums[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR2};

    for (int i = 0; i < 4; i++) {
        uv_signal_init(a->loop, sigs[i]);
        sigs[i]->data = a;
        uv_signal_start(sigs[i], on_signal, nums[i]);
    }
    uv_timer_init(a->loop, &a->drain);
    uv_timer_init(a->loop, &a->debounce);
    uv_timer_init(a->loop, &a->collect);
    a->drain.data = a->debounce.data = a->collect.data = a;
    watch_config(a);
}

static void
cleanup(struct app *a)
{
    router_free(a->router);
    broker_free(a->broker); /* commits the settlements still queued */
    peerlist_free(a->peer_lists);
    engine_free(a->engine);
    keys_free(&a->keys);
    tls_ctx_free(a->tls);
    generations_cleanup(&a->gens);
    free(a->watch_names[0]);
    free(a->watch_names[1]);
    for (size_t i = 0; i < a->n_bound; i++)
        free(a->bound[i].host);
    models_meta_cache_free();
}

/*
 * Every connection is a descriptor, and many systems start a process at 1,024 of them: the
 * soft limit goes up to the hard one, as Go and nginx (worker_rlimit_nofile) do.
 */
static void
raise_fd_limit(uint64_t max_connections)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};

        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want; /* else the kernel's cap (fs.nr_open) is lower: keep what we have */
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < max_connections + 64)
        log_warnx("limits.max_connections is %llu, but this process may open only %llu files "
                  "(ulimit -n); raise the hard limit or lower max_connections",
                  (unsigned long long)max_connections, (unsigned long long)rl.rlim_cur);
}

int
main(int argc, char **argv)
{
    struct app a = {.argc = argc, .argv = argv};
    struct generation *first;
    char err[1024];
    int rc;

    if (argc > 1 && strcmp(argv[1], "keys") == 0) /* the virtual keys' command line */
        return keys_cli(argc - 1, argv + 1);
    first = xcalloc(1, sizeof(*first));
    signal(SIGPIPE, SIG_IGN);
    restart_init();
    a.n_inherited = restart_inherited(a.inherited, RESTART_MAX_FDS);
    a.settings = (struct admin_settings_ops){
        &a, settings_file, settings_in_force, settings_check, settings_reload, settings_restart};
    signal(SIGCHLD, SIG_DFL); /* an ignored SIGCHLD inherited from our parent would reap our
                                 children before we could learn how they ended */
    rc = generation_load(first, argc, argv, err, sizeof(err));
    if (rc == 1) {
        generation_cleanup(first);
        free(first);
        return 0;
    }
    if (rc < 0)
        fatalx("%s", err);
    generations_init(&a.gens, first);
    the_app = &a;
    log_level_from(&a.gens.current->conf);
    raise_fd_limit(a.gens.current->conf.limits.max_connections);
    a.loop = uv_default_loop();
    if (a.gens.current->conf.write) {
        write_config(&a);
    } else {
        setup_backends(&a);
        setup_listeners(&a);
        setup_signals(&a);
        swap_preload(a.swap);
        log_info("web UI: %s", a.gens.current->ui_source);
        log_info("goinfer ready: %zu models (pid %d)", a.gens.current->cat.n, (int)getpid());
        restart_tell_ready();
        notify_start(a.loop, app_status, &a);
        notify_ready();
        uv_run(a.loop, UV_RUN_DEFAULT);
        log_info("goinfer stopped");
    }
    cleanup(&a);
    uv_loop_close(a.loop);
    return 0;
}
