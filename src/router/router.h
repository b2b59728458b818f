/* Request routing: authentication, the route table, and which model a request is for. */
#ifndef GOINFER_ROUTER_ROUTER_H
#define GOINFER_ROUTER_ROUTER_H

#include "conf/conf.h"
#include "http/auth.h"
#include "http/client.h"
#include "http/server.h"
#include "models/catalog.h"
#include "swap/swap.h"

/* Services a listener offers: the config names them (conf/conf.h). */
#define ROUTER_SVC_GOINFER      CONF_SVC_GOINFER
#define ROUTER_SVC_OPENAI       CONF_SVC_OPENAI
#define ROUTER_SVC_ADMIN        CONF_SVC_ADMIN
#define ROUTER_SVC_SWAP         CONF_SVC_SWAP
#define ROUTER_SVC_TUNNEL_ADMIN CONF_SVC_TUNNEL_ADMIN
/* Not a listener's: the inference routes a tunnel's server may ask a GPU machine for (never
 * admin or static routes), the services of the requests a tunnel client runs. */
#define ROUTER_SVC_INFER 8u

struct router_deps {
    const struct catalog *cat;
    const char *default_model; /* NULL: the first listed model */
    const char *ui_dir;        /* llama.cpp's web UI, served at /; NULL when absent */
    bool ui_proxy;             /* no ui_dir: / is llama-server's own page, proxied */
    char *const *origins;      /* CORS whitelist, NULL-terminated */
    long upstream_idle_s;      /* no byte from llama-server that long: 504, or cut */
    struct auth *auth;         /* user and admin keys */
    struct auth *admin_auth;   /* admin keys (the user keys when no admin key is set) */
    void (*reload)(void *arg, const char *why);
    void *reload_arg;
    const struct admin_settings_ops *settings; /* the admin API's settings and restart */
    struct swap *swap;
    struct http_server *server;        /* for the connection count in /metrics */
    struct tunnel_server *tunnels;     /* GPU machines connected to this server, or NULL */
    struct http_client *peer_client;   /* to llama-swap's peers (cat->peers) */
    struct http_remote *peer_remote;   /* to https:// peers (cloud upstreams), libcurl */
    const struct peerlist *peer_lists; /* the peers' fetched model lists (modelsRefresh:) */
    struct store *store;               /* the admin store: activity, audit, enabled models */
    struct engine *engine;             /* the llama-server builds (GET/POST /api/engine) */
    const struct conf *conf;           /* the configuration in force */
    const char *llama_exe;             /* the llama-server it runs */
    /* the admin API's files, uploads and downloads */
    uv_loop_t *loop;
    const char *models_dir;         /* ':'-separated roots */
    const struct conf_admin *admin; /* upload_max_bytes, download_hosts */
    uint64_t body_bytes;            /* limits.body_bytes: one upload chunk */
    struct broker *keys;            /* virtual keys and browser tokens, or NULL */
};

struct router;
struct broker;
struct peerlist;
struct store;
struct tunnel_server;
struct engine;
struct admin_settings_ops;

/* Borrows deps for its life. */
struct router *router_new(const struct router_deps *deps);
void router_free(struct router *r);
/* After a reload: the new catalog, default model and keys. */
void router_set_deps(struct router *r, const struct router_deps *deps);
/* Ends the responses that never end by themselves (/logs/stream) so shutdown can finish. */
void router_shutdown(struct router *r);
/* The http_admit_cb: CORS, Host, route, method and key, decided from the head alone (no body
 * is read for a request that fails them). arg is the router. */
bool router_admit(struct http_request *req, void *arg);
/* Whether a finished request belongs in the activity: one that named a model on a user route
 * (inference), not the admin app's own requests (/api/..., /ui, /health, /models/sse, /logs). */
bool router_is_activity(const struct http_request *req);
/* The http_handler_cb: runs the admitted route (admitting first when the request came by a
 * road that did not, such as a tunnel's stream). arg is the router. */
void router_handle(struct http_request *req, void *arg);

#endif
