/*
 * The model section in llama-swap's syntax, so an existing llama-swap.yml works unchanged:
 * macros, models, groups, hooks, healthCheckTimeout, startPort, logLevel...
 */
#ifndef GOINFER_CONF_SWAPCONF_H
#define GOINFER_CONF_SWAPCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf_macro {
    char *name;
    char *value; /* already expanded: macros may use the ones defined before them */
};

/* llama-swap's capabilities: what /v1/models tells clients a model can do. */
struct conf_caps {
    char **in, **out; /* modalities: text, audio, image */
    bool tools, reranker;
    uint64_t context; /* tokens; 0 = not said */
};

/* filters: how a request body is rewritten before it goes upstream (llama-swap's order:
 * useModelName, stripParams, setParams, setParamsByID). "model" is never stripped or set. */
struct conf_filters {
    char *strip_params;     /* comma-separated request keys to drop */
    char *set_params;       /* a JSON object of keys set in each body, or NULL */
    char *set_params_by_id; /* JSON {requested id: {key: value}}, after set_params, or NULL */
};

struct conf_model {
    char *name;
    char *cmd; /* macros expanded; ${PORT} is filled in at each start */
    char *cmd_stop;
    char *proxy;          /* default http://127.0.0.1:${PORT} */
    char *check_endpoint; /* default /health; "none" skips the check */
    char *description, *display_name, *use_model_name;
    char **aliases;
    char **env;       /* "NAME=value" */
    uint64_t ttl;     /* seconds idle before it is stopped; 0 = never */
    bool ttl_default; /* no ttl, or ttl: -1: llama-swap's globalTTL applies */
    bool unlisted;
    struct conf_filters filters;
    uint64_t concurrency_limit;
    char *metadata; /* JSON text of its metadata: (macros expanded), or NULL */
    struct conf_caps caps;
    struct conf_macro *macros; /* its own macros (llama-swap's model-level macros): they win */
    size_t n_macros;
    bool send_loading_state; /* sendLoadingState, when set (it overrides the global one) */
    bool send_loading_state_set;
    char *fallback; /* a peer model ("<peer>/<model>") that answers when this one cannot */
};

/* llama-swap's peers: remote OpenAI-compatible servers whose models are forwarded to. */
struct conf_peer {
    char *name;
    char *proxy;   /* base URL; the request's path is appended */
    char *api_key; /* injected as Bearer and x-api-key; NULL: none (the caller's never passes) */
    char **models;
    struct conf_filters filters; /* as a model's */
    /* Goinfer's extensions for cloud upstreams (llama-swap ignores them). */
    char *api_key_file; /* apiKeyFile: the key read from this file (whitespace trimmed) */
    char *ca_file;      /* caFile: PEM bundle to verify an https:// proxy with */
    char **headers;     /* headers: "Name: value" lines sent with every request */
    uint64_t retries;   /* retries: more attempts before the first byte (default 1) */
    uint64_t
        models_refresh; /* modelsRefresh: seconds between fetches of <proxy>/v1/models; 0 off */
    char **allow;       /* allow: fnmatch patterns the fetched models must match */
};

struct conf_group {
    char *name;
    bool swap, exclusive, persistent;
    char **members;
};

struct swapconf {
    struct conf_macro *macros;
    size_t n_macros;
    struct conf_model *models;
    size_t n_models;
    struct conf_group *groups;
    size_t n_groups;
    char **preload;
    char **api_keys;     /* apiKeys: more user keys, beside Goinfer's own */
    uint64_t global_ttl; /* globalTTL: the ttl of a model that sets none (or -1); 0 never */
    struct conf_peer *peers;
    size_t n_peers;
    uint64_t health_check_timeout; /* seconds */
    uint64_t start_port;
    char *log_level;
    uint64_t metrics_max;
    bool log_to_stdout_unused;
    bool include_aliases_in_list; /* /v1/models lists each alias as a model too */
    bool send_loading_state; /* a streaming chat request waiting on a load is told how it goes */
};

/* Handlers for the top-level llama-swap keys; obj is a struct swapconf. */
/* Checks what single keys cannot: groups name real models, a model is in one group at most,
 * aliases are unique. Returns 0 or -EINVAL with err. */
int swapconf_validate(const struct swapconf *s, char *err, size_t errlen);
void swapconf_cleanup(struct swapconf *s);

/* Expands ${name} macros and ${env.NAME}; ${PORT}, ${PID} and ${MODEL_ID} are left for later.
 * Returns 0, or -EINVAL naming the unknown macro in err. */
int swapconf_expand(const char *in, const struct conf_macro *m, size_t n, char **out, char *err,
                    size_t errlen);
/* A cmd as llama-swap reads it: lines whose first word starts with '#' dropped, a trailing
 * backslash joining a line to the next, lines joined by spaces. Returns a new string. */
char *swapconf_clean_cmd(const char *in);
void swapconf_caps_cleanup(struct conf_caps *c);
/* Replaces every ${key} by value (for ${PORT} in a proxy URL). */
char *swapconf_subst(const char *in, const char *key, const char *value);

#endif
