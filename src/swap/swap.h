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
#include "proc/childmsg.h"

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
/* Says whether model m may start (the admin store's enable/disable): NULL when it may, else
 * the name whose setting stops it. A refused model's acquire fails with -EPERM (the message
 * says how to enable it), and preload skips it. */
typedef const char *(*swap_gate_cb)(const struct model_def *m, void *arg);
void swap_set_gate(struct swap *s, swap_gate_cb gate, void *arg);
/* Starts the catalog's preload models (hooks.on_startup.preload) that the gate allows. */
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

/* What a loading model has reported: its progress (when its llama-server speaks llama.cpp's
 * child protocol) and an estimate of the time left from its past loads. */
struct swap_load {
    bool has_progress;
    struct proc_progress progress;
    uint64_t elapsed_ms;
    int64_t remaining_ms; /* -1: no estimate yet */
};

/* How long model m's last load took, in ms; -1 when it has not loaded since it was started
 * (or since a reload changed it). */
int64_t swap_last_load_ms(const struct swap *s, const struct model_def *m);
/* True, with *out filled, while model m is loading. */
bool swap_model_load(const struct swap *s, const struct model_def *m, struct swap_load *out);
/* A progress in llama.cpp's shape: {"stages":[...],"current":"...","value":0.5}. */
json_t *swap_progress_json(const struct proc_progress *p);
/* Adds "progress" to a /models status object while m loads and has reported how far. */
void swap_add_progress(json_t *status, const struct swap *s, const struct model_def *m);

/* A change of a model's state, as llama.cpp's router tells /models/sse: a load began
 * (started), progressed (load set), ended ready, or the process ended (exit_code). */
struct swap_event {
    const struct model_def *model;
    enum swap_model_state state;
    bool started;
    const struct swap_load *load; /* while loading; NULL otherwise */
    int exit_code;
};

typedef void (*swap_watch_cb)(const struct swap_event *ev, void *arg);
struct swap_watch;

/* cb runs on each model state change until swap_unwatch (which a callback may call, for any
 * watch). The model of an event is borrowed for the callback only. */
struct swap_watch *swap_watch(struct swap *s, swap_watch_cb cb, void *arg);
void swap_unwatch(struct swap_watch *w);

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
