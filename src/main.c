/* goinfer: flags, signals and wiring; nothing else. */
#include <sys/stat.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "conf/conf.h"
#include "conf/write.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "http/auth.h"
#include "http/client.h"
#include "http/server.h"
#include "models/catalog.h"
#include "models/discovery.h"
#include "proc/proc.h"
#include "router/router.h"
#include "swap/swap.h"

#define SHUTDOWN_GRACE_MS 10000

struct app {
    uv_loop_t *loop;
    struct conf conf;
    struct model_list models;
    struct catalog cat;
    char *llama_exe;
    struct swap_conf swap_conf;
    struct http_client *client;
    struct swap *swap;
    struct auth *auth;
    struct router *router;
    struct http_server *server;
    uv_signal_t sigint, sigterm;
    uv_timer_t drain;
    uint64_t shutdown_at;
    bool stopping;
};

/* The llama-server to run: GI_LLAMA_EXE / llama.exe, else the one `make setup` built. */
static char *
find_llama_exe(const struct conf *c)
{
    const char *cache = getenv("GOINFER_CACHE");
    const char *home = getenv("HOME");
    char *exe;
    struct stat st;

    if (c->llama_exe != NULL)
        exe = xstrdup(c->llama_exe);
    else if (cache && *cache)
        exe = xasprintf("%s/llama-current/bin/llama-server", cache);
    else
        exe = xasprintf("%s/.cache/goinfer/llama-current/bin/llama-server", home ? home : "");
    if (stat(exe, &st) != 0)
        fatalx("llama-server not found at %s: set GI_LLAMA_EXE (or llama.exe in goinfer.yml) "
               "to a llama-server executable, or run `make setup` to build one",
               exe);
    if (!S_ISREG(st.st_mode) || access(exe, X_OK) != 0)
        fatalx("%s is not an executable file: set GI_LLAMA_EXE to a llama-server executable",
               exe);
    return exe;
}

static void
on_children_stopped(void *arg)
{
    struct app *a = arg;

    log_info("all llama-server children stopped");
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->drain, NULL);
    http_server_free(a->server);
    a->server = NULL;
    http_client_free(a->client);
    a->client = NULL;
    swap_free(a->swap);
    a->swap = NULL;
}

/* In-flight streams get a grace period to end before children are stopped. */
static void
on_drain_tick(uv_timer_t *t)
{
    struct app *a = t->data;
    bool late = uv_now(a->loop) - a->shutdown_at > SHUTDOWN_GRACE_MS;

    if (http_server_active(a->server) > 0 && !late)
        return;
    if (late)
        log_warnx("%zu connections still open after %d ms; closing them",
                  http_server_active(a->server), SHUTDOWN_GRACE_MS);
    uv_timer_stop(t);
    swap_shutdown(a->swap, on_children_stopped, a);
}

static void
on_signal(uv_signal_t *s, int signum)
{
    struct app *a = s->data;

    if (a->stopping) {
        log_warnx("second signal: stopping now");
        a->shutdown_at = 0;
        return;
    }
    a->stopping = true;
    log_info("signal %d: no new connections; finishing %zu open ones", signum,
             http_server_active(a->server));
    http_server_shutdown(a->server);
    router_shutdown(a->router);
    a->shutdown_at = uv_now(a->loop);
    uv_timer_start(&a->drain, on_drain_tick, 0, 50);
}

static void
setup_models(struct app *a)
{
    char err[512];

    if (a->conf.models_dir == NULL && a->conf.swap.n_models > 0)
        return; /* every model is defined in the llama-swap section */
    if (a->conf.models_dir == NULL)
        fatalx("no models folder: set GI_MODELS_DIR (or models_dir in goinfer.yml) to folders "
               "holding *.gguf files, separated by ':'");
    if (models_discover(a->conf.models_dir, &a->models, err, sizeof(err)) < 0)
        fatalx("%s", err);
    if (a->models.n == 0)
        log_warnx("no *.gguf model found under %s; requests will get 404 until models are added",
                  a->conf.models_dir);
    for (size_t i = 0; i < a->models.n; i++)
        log_info("model %s: %s%s%s", a->models.v[i].name, a->models.v[i].path,
                 a->models.v[i].mmproj ? " + " : "",
                 a->models.v[i].mmproj ? a->models.v[i].mmproj : "");
}

/* -write: goinfer.yml and llama-swap.yml beside the -config path (default: here). */
static void
write_config(struct app *a)
{
    char err[512], *exe = find_llama_exe(&a->conf), *dir;
    const char *slash = strrchr(a->conf.file, '/');
    int rc;

    dir = slash ? xstrndup(a->conf.file, (size_t)(slash - a->conf.file)) : xstrdup(".");
    rc = conf_write_files(&a->conf, &a->models, exe, dir, err, sizeof(err));
    if (rc < 0)
        fatalx("-write: %s", err);
    log_info("wrote %s/goinfer.yml (mode 0600, new API key) and %s/llama-swap.yml with %zu "
             "models; previous files kept as .bak",
             dir, dir, a->models.n);
    free(dir);
    free(exe);
}

static void
setup_backends(struct app *a)
{
    const char *keys[2] = {a->conf.api_key, NULL};
    char err[512];

    a->llama_exe = find_llama_exe(&a->conf);
    if (catalog_build(&a->cat, &a->conf, &a->models, a->llama_exe, err, sizeof(err)) < 0)
        fatalx("%s: %s", a->conf.file ? a->conf.file : "config", err);
    a->swap_conf.stop_grace_ms = 5000;
    a->swap_conf.probe_ms = 5;
    if (a->conf.api_key != NULL && strncmp(a->conf.api_key, "PLEASE SET", 10) == 0) {
        free(a->conf.api_key); /* the -write -no-api-key placeholder is no key at all */
        a->conf.api_key = NULL;
        keys[0] = NULL;
    }
    if (a->conf.api_key == NULL && !a->conf.no_api_key)
        fatalx("no API key: set GI_API_KEY or api_key in goinfer.yml, or start with -no-api-key "
               "on a private machine");
    a->auth = auth_new(a->conf.no_api_key ? NULL : keys);
    a->client = http_client_new(a->loop);
    a->swap = swap_new(a->loop, a->client, &a->swap_conf, &a->cat);
}

static void
setup_listeners(struct app *a)
{
    static const struct http_limits limits = {
        .header_bytes = 32 * 1024,
        .body_bytes = 64 * 1024 * 1024,
        .header_ms = 30000,
        .keepalive_ms = 75000,
        .write_high = 256 * 1024,
    };
    struct router_deps d = {&a->cat, a->conf.default_model, a->auth, a->swap, a->client};

    a->router = router_new(&d);
    a->server = http_server_new(a->loop, &limits, router_handle, a->router);
    for (size_t i = 0; i < a->conf.n_listen; i++) {
        struct conf_listen *l = &a->conf.listen[i];
        int port = 0, rc = http_server_listen(a->server, l->host, l->port, l->services, &port);

        if (rc < 0)
            fatalx("cannot listen on %s:%d: %s; pick another port in goinfer.yml 'listen'",
                   l->host, l->port, uv_strerror(rc));
        /* Tests and scripts read this line to learn ports chosen by the kernel (port 0). */
        log_info("listening on %s:%d (%s%s%s)", l->host, port,
                 l->services & ROUTER_SVC_GOINFER ? "goinfer " : "",
                 l->services & ROUTER_SVC_OPENAI ? "openai " : "",
                 l->services & ROUTER_SVC_ADMIN ? "admin" : "");
    }
}

int
main(int argc, char **argv)
{
    struct app a = {0};
    char err[1024], exe[4096];
    size_t exe_len = sizeof(exe);
    int rc;

    if (argc > 1 && strcmp(argv[1], "--child-exec") == 0)
        return proc_launcher_main(argc, argv);
    rc = conf_load(&a.conf, argc, argv, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc < 0)
        fatalx("%s", err);
    log_set_level(a.conf.debug ? LOG_LEVEL_DEBUG : a.conf.quiet ? LOG_LEVEL_WARN : LOG_LEVEL_INFO);
    signal(SIGPIPE, SIG_IGN);
    if (uv_exepath(exe, &exe_len) == 0)
        proc_set_launcher(exe);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    a.loop = uv_default_loop();
    setup_models(&a);
    if (a.conf.write) {
        write_config(&a);
        goto out;
    }
    setup_backends(&a);
    setup_listeners(&a);
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigterm);
    uv_timer_init(a.loop, &a.drain);
    a.sigint.data = a.sigterm.data = a.drain.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    swap_preload(a.swap);
    log_info("goinfer ready: %zu models", a.cat.n);
    uv_run(a.loop, UV_RUN_DEFAULT);
    log_info("goinfer stopped");
out:
    router_free(a.router);
    auth_free(a.auth);
    free(a.llama_exe);
    catalog_cleanup(&a.cat);
    model_list_cleanup(&a.models);
    conf_cleanup(&a.conf);
    uv_loop_close(a.loop);
    curl_global_cleanup();
    return 0;
}
