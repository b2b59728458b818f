/*
 * Which model runs: starts a llama-server child for the model a request names, waits for it
 * to be ready, and swaps models one at a time without ever cutting an in-flight request.
 *
 * Requests take a lease. Leases are granted in arrival order; requests for the running model
 * go straight through unless an earlier request waits for another model, which then gets its
 * turn as soon as the running model is idle (so no model starves).
 */
#ifndef GOINFER_SWAP_SWAP_H
#define GOINFER_SWAP_SWAP_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "http/client.h"
#include "models/catalog.h"

struct swap_conf {
    uint64_t stop_grace_ms; /* SIGTERM to SIGKILL */
    uint64_t probe_ms;      /* readiness poll interval */
};

struct swap;
struct swap_lease;
struct swap_instance;

/*
 * err 0: the model is ready at swap_lease_url(lease); the caller must swap_release(lease).
 * err < 0: it could not be made ready; msg says why; the lease is idle again.
 * May run before swap_acquire returns.
 */
typedef void (*swap_ready_cb)(struct swap_lease *lease, int err, const char *msg, void *arg);

/* Embedded in the caller's request state; the caller owns its memory. */
struct swap_lease {
    enum { SWAP_LEASE_IDLE, SWAP_LEASE_WAITING, SWAP_LEASE_GRANTED } state;
    struct swap *swap;
    struct swap_instance *inst;
    swap_ready_cb cb;
    void *arg;
    struct swap_lease *next; /* wait queue */
};

/* Borrows conf and cat for the life of the swap. */
struct swap *swap_new(uv_loop_t *loop, const struct swap_conf *conf, const struct catalog *cat);
/* err -EBUSY: the model's concurrencyLimit is reached (answer 429). */
void swap_acquire(struct swap *s, struct swap_lease *l, const struct model_def *m, swap_ready_cb cb,
                  void *arg);
/* Serves cat's models from now on (borrowed, like the first): a model whose process definition
 * did not change keeps running; the others stop once idle. The old catalog must outlive the
 * requests still using it. */
void swap_reconfigure(struct swap *s, const struct catalog *cat);
/* True while an instance still points into cat: a model a reload retired, still running,
 * stopping or serving its last requests. cat must outlive that. */
bool swap_uses_catalog(const struct swap *s, const struct catalog *cat);
/* Starts the catalog's preload models (hooks.on_startup.preload). */
void swap_preload(struct swap *s);
/* Ends a granted lease, or withdraws a waiting one (its callback then never runs); no-op when
 * idle. */
void swap_release(struct swap_lease *l);
const char *swap_lease_url(const struct swap_lease *l);
/* The connection pool to use for a granted lease (one per running model). */
struct http_client *swap_lease_client(const struct swap_lease *l);
/* Stops model m's process (once its requests end when it is serving); how many were running. */
int swap_unload(struct swap *s, const struct model_def *m);
/* Stops every model: idle ones now, busy ones when their last request ends. Returns how many. */
int swap_unload_all(struct swap *s);

/* Where a model's process is: the states swap_model_state reports. */
enum swap_model_state {
    SWAP_MODEL_UNLOADED,
    SWAP_MODEL_LOADING,
    SWAP_MODEL_LOADED,
    SWAP_MODEL_UNLOADING,
    SWAP_MODEL_FAILED, /* its last start failed; *exit_code says how, when it exited */
};

/* Where model m's process is, for the listings (llama.cpp's router shows the same). */
enum swap_model_state swap_model_state(const struct swap *s, const struct model_def *m,
                                       int *exit_code);
/* Whether a process of model is up and ready (a tunnel client says so to its servers). */
bool swap_is_ready(const struct swap *s, const char *model);
/* Processes not stopped: starting, ready or stopping. */
size_t swap_count_running(const struct swap *s);
/* The models running or starting, as a JSON array. */
json_t *swap_running(const struct swap *s);
/* Refuses new leases, stops every child; done runs once all have exited. */
void swap_shutdown(struct swap *s, void (*done)(void *arg), void *arg);
void swap_free(struct swap *s);

#endif
