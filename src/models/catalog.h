/*
 * The catalog: every model a request can name, from discovery (GI_MODELS_DIR) and from the
 * llama-swap model section, with how to start it. A discovered model also gets a GI_<name>
 * variant started with llama.args.goinfer (the seed's templating-free /completions use).
 */
#ifndef GOINFER_MODELS_CATALOG_H
#define GOINFER_MODELS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "models/discovery.h"

struct model_group {
    char *name;
    bool swap;       /* one member at a time */
    bool exclusive;  /* starting a member stops the models of other groups */
    bool persistent; /* other groups never stop this one's members */
};

struct model_def {
    char *name;
    char *cmd; /* configured models: ${PORT} and ${MODEL_ID} are filled in at start */
    char *cmd_stop;
    char *proxy;
    char *check_endpoint; /* "none": ready as soon as started */
    char **aliases;
    char **env;
    char **strip_params;
    char *set_params, *set_params_by_id; /* JSON text (conf_filters), or NULL */
    char *use_model_name;
    char *description, *display_name; /* llama-swap's description and name */
    char *metadata;                   /* JSON text of llama-swap's metadata:, or NULL */
    char *fallback;        /* a peer model that answers when this one cannot start, or NULL */
    struct conf_caps caps; /* llama-swap's capabilities: */
    uint64_t ttl_ms;
    unsigned concurrency_limit; /* 0: no limit */
    bool unlisted;
    bool send_loading_state; /* llama-swap's sendLoadingState: the model's own, else the global */
    size_t group;
    /* From discovery; NULL/0 for models defined only in YAML. Their argv is built from these,
     * never from a command string (see catalog_argv). */
    char *exe;
    char **args;  /* llama.args words from goinfer.yml (may hold ${PORT}, ${MODEL_ID}) */
    char **flags; /* from the file name or its .sh: literal, never scanned for macros */
    char *path;
    char *mmproj;
    uint64_t size;
    int shards;
    struct model_meta meta;
};

struct catalog {
    struct model_def *v;
    size_t n;
    struct model_group *groups;
    size_t n_groups;
    char **preload;
    uint64_t ready_timeout_ms;
    uint64_t start_port;
    bool include_aliases_in_list;  /* llama-swap's includeAliasesInList */
    const struct conf_peer *peers; /* borrowed from the conf it was built from */
    size_t n_peers;
    char **warnings; /* the conf's, then the catalog's own (unknown members...): for /ui */
};

/* Builds from conf (YAML models win over discovered ones of the same name) and found. */
int catalog_build(struct catalog *cat, const struct conf *conf, const struct model_list *found,
                  const char *llama_exe, char *err, size_t errlen);
void catalog_cleanup(struct catalog *cat);
/* By name or alias. */
const struct model_def *catalog_find(const struct catalog *cat, const char *name, size_t len);
/* True when a and b run the same process (a reload then keeps it running). */
bool catalog_same_process(const struct model_def *a, const struct model_def *b);
/*
 * The argv that starts d on port: each element one argument, never split or re-read as a
 * command line. A discovered model gets exe, -m path, [--mmproj file], --host 127.0.0.1,
 * --port, --alias <name>, the llama.args words, then its file flags without the reserved ones
 * (models_flag_reserved), so no file name can move the address, port or key. A configured
 * model's cmd is split into words first and ${PORT}/${MODEL_ID} filled in each, in one pass.
 * Pure. Returns the number of words, or -EINVAL (unclosed quote); free *argv with
 * proc_argv_free.
 */
int catalog_argv(const struct model_def *d, const char *port, char ***argv);
/* True when starting a must stop b (llama-swap's group rules). */
bool catalog_conflicts(const struct catalog *cat, const struct model_def *a,
                       const struct model_def *b);

#endif
