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

struct conf_model {
    char *name;
    char *cmd; /* macros expanded; ${PORT} is filled in at each start */
    char *cmd_stop;
    char *proxy;          /* default http://127.0.0.1:${PORT} */
    char *check_endpoint; /* default /health; "none" skips the check */
    char *description, *display_name, *use_model_name;
    char **aliases;
    char **env;   /* "NAME=value" */
    uint64_t ttl; /* seconds idle before it is stopped; 0 = never */
    bool unlisted;
    char *strip_params; /* filters.strip_params: comma-separated request keys to drop */
    uint64_t concurrency_limit;
    char *metadata_unused;     /* accepted and ignored */
    struct conf_macro *macros; /* its own macros (llama-swap's model-level macros): they win */
    size_t n_macros;
    bool send_loading_state; /* sendLoadingState, when set (it overrides the global one) */
    bool send_loading_state_set;
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
    uint64_t health_check_timeout; /* seconds */
    uint64_t start_port;
    char *log_level;
    uint64_t metrics_max;
    bool log_to_stdout_unused;
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
/* Replaces every ${key} by value (for ${PORT} in a proxy URL). */
char *swapconf_subst(const char *in, const char *key, const char *value);

#endif
