/*
 * The admin API's settings: goinfer.yml and llama-swap.yml read, checked, diffed and saved
 * (optimistic concurrency on a hash of the text, a timestamped backup, an atomic write, then a
 * reload), each model's llama-server arguments edited where they are defined, and the graceful
 * restart. What needs the application above (the loader, the reload, the restart) comes
 * through struct admin_settings_ops, which main.c fills.
 */
#ifndef GOINFER_ADMIN_SETTINGS_H
#define GOINFER_ADMIN_SETTINGS_H

#include <stddef.h>

#include "http/server.h"
#include "models/catalog.h"

#define ADMIN_SETTINGS_FILES   2          /* goinfer.yml, llama-swap.yml */
#define ADMIN_SETTINGS_MAX     (1u << 20) /* a configuration text the API takes */
#define ADMIN_SETTINGS_BACKUPS 10         /* backups kept beside each file */

/* A file's text; data NULL: the file does not exist. */
struct admin_text {
    const char *data;
    size_t len;
};

struct admin_settings_ops {
    void *arg;
    /* The goinfer.yml the process reads (its llama-swap.yml is beside it), or NULL. */
    const char *(*file)(void *arg);
    /* The texts the configuration in force was loaded from (borrowed until the next reload). */
    void (*in_force)(void *arg, struct admin_text out[ADMIN_SETTINGS_FILES]);
    /* Loads the pair as the process would; 0, or -errno with err ("path:line: what").
     * *warnings: owned strv, may be NULL. */
    int (*check)(void *arg, const struct admin_text text[ADMIN_SETTINGS_FILES], char *err,
                 size_t errlen, char ***warnings);
    /* Reloads now: 0 taken, or -errno with err (the running configuration stays). */
    int (*reload)(void *arg, const char *why, char *err, size_t errlen);
    /* Starts a graceful restart: 0 started, or -errno with err. */
    int (*restart)(void *arg, const char *why, char *err, size_t errlen);
};

/* GET /api/config: both files (path, text, mtime, hash) and whether the disk is in force. */
void admin_config_get(struct http_request *req, const struct admin_settings_ops *ops);
/* POST /api/config/validate {file, text}: {ok, errors, warnings}, the pair loaded together. */
void admin_config_validate(struct http_request *req, const struct admin_settings_ops *ops);
/* PUT /api/config/<file> {text, base_hash}: 409 stale, 422 invalid, else saved and reloaded. */
void admin_config_put(struct http_request *req, const struct admin_settings_ops *ops);
/* GET /api/config/diff: each file on disk against the configuration in force. */
void admin_config_diff(struct http_request *req, const struct admin_settings_ops *ops);
/* GET or PUT /api/models/<id>/args {args}: a model's llama-server arguments. */
void admin_model_args(struct http_request *req, const struct admin_settings_ops *ops,
                      const struct catalog *cat);
/* POST /api/restart: 202 once the new process is being started. */
void admin_restart(struct http_request *req, const struct admin_settings_ops *ops);

#endif
