/*
 * Configuration: goinfer.yml, then GI_* variables, then flags (each overrides the one before).
 * A problem in the file names the file, line and key.
 */
#ifndef GOINFER_CONF_CONF_H
#define GOINFER_CONF_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/swapconf.h"
#include "conf/tunnelconf.h"

#define CONF_MAX_LISTEN 8
/* The key goinfer -write -debug writes: public (the seed's "debug API key"), so it is
 * accepted only when every listener is on a loopback address. */
#define CONF_DEBUG_API_KEY "7aea109636aefb984b13f9b6927cd174425a1e05ab5f2e3935ddfeb183099465"

/* Services a listener offers (goinfer.yml "listen"); the router's route table names them. */
#define CONF_SVC_GOINFER 1u /* Goinfer's own endpoints: /completions, /models, ... */
#define CONF_SVC_OPENAI  2u /* the OpenAI-compatible /v1 API (llama-swap's role in the seed) */
#define CONF_SVC_ADMIN   4u
/* llama-swap's own endpoints beside /v1: /running, /unload, /logs, /ui */
#define CONF_SVC_SWAP 16u
/* A server's model control on a GPU machine whose client.allow_admin is on: load, unload. */
#define CONF_SVC_TUNNEL_ADMIN 32u

struct conf_listen {
    char *host;
    int port;
    unsigned services; /* CONF_SVC_* */
    bool tls;          /* "tls" among the services: HTTPS with tls.cert and tls.key */
};

struct conf {
    char *file;      /* goinfer.yml read, or NULL */
    char *swap_file; /* llama-swap.yml read beside it, or NULL */
    char *models_dir;
    char *api_key;       /* user key: the API */
    char *admin_api_key; /* admin key: the API and /unload, /logs, /reload; NULL: the user key */
    char *api_key_file, *admin_api_key_file; /* keys kept in files (secret managers) */
    char **origins;                          /* NULL-terminated */
    struct conf_listen listen[CONF_MAX_LISTEN];
    size_t n_listen;
    char *llama_exe;
    char *args_common, *args_goinfer, *args_verbose, *args_debug;
    char *default_model;
    char *ledger;             /* the virtual keys' ledger: a postgresql:// URL, or NULL (SQLite in
                                 admin.state_dir) */
    char *tls_cert, *tls_key; /* PEM files for the listeners marked tls */
    char *host;               /* for ":port" addresses; GI_HOST */
    bool no_api_key, debug, quiet, write;
    bool log_json;        /* log_format: json (GI_LOG_FORMAT): JSON lines on stderr */
    struct swapconf swap; /* the model section, in llama-swap's syntax */
    char **warnings;      /* what loading warned about (keys not honoured...), for /ui */

    struct conf_limits {
        uint64_t header_bytes, body_bytes;
        uint64_t request_timeout, keepalive_timeout, write_stall_timeout; /* seconds */
        uint64_t max_connections, max_connections_per_ip;
        uint64_t body_bytes_in_flight, body_bytes_per_ip; /* request bodies being read at once */
        uint64_t upstream_timeout; /* seconds without a byte from llama-server */
    } limits;

    /* admin: what the admin app keeps and may do (issue 12) */
    struct conf_admin {
        char *state_dir;           /* the admin store (SQLite) and state; see conf_state_dir */
        uint64_t activity_keep;    /* requests kept in the activity store */
        uint64_t upload_max_bytes; /* one model file, uploaded or downloaded */
        char **download_hosts;     /* hosts downloads may come from (and redirect to) */
        char *engine_dir;          /* engine folders (llama-server builds); NULL: the cache */
        char *engine_remote;       /* the llama.cpp git remote an engine build pulls from */
    } admin;

    bool tunnel_accept; /* a server: section: this process accepts tunnels */
    struct conf_tunnel_server tunnel_server;
    struct conf_tunnel_client tunnel_client;
};

/* Loads everything: defaults, the file (-config, or ./goinfer.yml when present), env, flags.
 * Returns 0; 1 when -help was asked (usage printed); or -errno with err filled. */
int conf_load(struct conf *c, int argc, char **argv, char *err, size_t errlen);
void conf_cleanup(struct conf *c);
/* The llama-swap.yml read beside file (whether it exists or not); the caller frees it. */
char *conf_swap_file_for(const char *file);

/* Pure helpers, exposed for tests. */
/* ":4444" or "host:4444" with "goinfer", "openai"/"llama-swap", "admin" (comma/space list). */
int conf_parse_listen(const char *addr, const char *services, const char *default_host,
                      struct conf_listen *out, char *err, size_t errlen);
/* True for a listen host only this machine reaches: 127.0.0.0/8, ::1 (or v4-mapped), localhost.
 * Any other name or address, 0.0.0.0 and :: included, may be reached from elsewhere. */
bool conf_host_loopback(const char *host);

#endif
