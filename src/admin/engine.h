/*
 * The engine: which llama-server Goinfer runs, and rebuilding it in the background. A build is
 * one child (scripts/engine-build.sh) that compiles, installs into a new engine folder and
 * smoke-tests; only when it succeeds is the choice written to the state folder and a reload
 * asked, so the catalog is rebuilt on the new program and running models move to it as they
 * go idle (swap_reconfigure keeps a busy one until its requests end). A failed build switches
 * nothing: the previous engine keeps serving.
 */
#ifndef GOINFER_ADMIN_ENGINE_H
#define GOINFER_ADMIN_ENGINE_H

#include <uv.h>

#include "conf/conf.h"
#include "http/request.h"
#include "models/catalog.h"

struct engine;

/* What a handler acts on, borrowed for the call: the configuration and llama-server in force. */
struct engine_ctx {
    const struct conf *conf;
    const char *llama_exe;
    const struct catalog *cat;
};

/* reload(arg, why) is asked after a switch. */
struct engine *engine_new(uv_loop_t *loop, void (*reload)(void *arg, const char *why), void *arg);
/* Cancels a build in progress and ends the waiting requests, so the loop can end. */
void engine_shutdown(struct engine *e);
/* After the loop ended. NULL is a no-op. */
void engine_free(struct engine *e);

/* The llama-server an admin chose (a build, or POST /api/engine/use), kept in state_dir so a
 * restart keeps it; NULL when none is chosen or it is no longer an executable. */
char *engine_chosen_exe(const char *state_dir);

/* GET /api/engine: the llama-server in use, the engines installed, the job. */
void engine_get(struct engine *e, struct http_request *req, const struct engine_ctx *ctx);
/* POST /api/engine/build {source, path?, remote?, version?, backend, tls}: 202 and the job. */
void engine_build(struct engine *e, struct http_request *req, const struct engine_ctx *ctx);
/* DELETE /api/engine/build: cancels the job in progress. */
void engine_cancel(struct engine *e, struct http_request *req);
/* POST /api/engine/use {engine}: an installed engine's folder name, or "default". */
void engine_use(struct engine *e, struct http_request *req, const struct engine_ctx *ctx);

#endif
