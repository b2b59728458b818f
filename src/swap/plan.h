/*
 * The swap scheduler's decisions, pure: given the model processes' states and the requests
 * waiting in arrival order, what to do next (grant a request, start a model, stop idle ones).
 * No processes, timers or callbacks: swap.c feeds it, carries the plan out and asks again;
 * unit tests feed it crafted states.
 */
#ifndef GOINFER_SWAP_PLAN_H
#define GOINFER_SWAP_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum plan_state { PLAN_STOPPED, PLAN_STARTING, PLAN_READY, PLAN_STOPPING };

/* A model process as the scheduler sees it. */
struct plan_inst {
    enum plan_state state;
    int inflight; /* requests it is serving */
    bool retired; /* dropped or changed by a reload: in everyone's way until it has stopped */
};

/* Whether models i and j may not run at once (llama-swap's groups); symmetric. */
typedef bool (*plan_conflict_cb)(size_t i, size_t j, void *arg);

enum plan_kind { PLAN_GRANT, PLAN_START, PLAN_STOP };

struct plan_action {
    enum plan_kind kind;
    size_t index; /* GRANT: the waiting request's place in the queue; else the instance */
    size_t cause; /* STOP: the instance it makes room for */
};

/*
 * One step, in arrival order: a ready model serves its waiting request at once unless an
 * earlier request waits for a model that needs it stopped (it is then "doomed" and drains, so
 * nothing starves); a stopped model starts once the models its groups exclude have stopped,
 * and the idle ones among those are stopped to make room; a busy one is never cut.
 *
 * queue holds instance indices, oldest first. Fills out (room for n_inst + 1 actions) with
 * zero or more STOPs, then at most one GRANT or START, after which the caller acts and asks
 * again (a grant's callback or a failed start changes the queue). Returns the count; no
 * GRANT or START among them means: wait for a process to change state. work is scratch, one
 * per instance.
 */
struct plan_work {
    bool doomed;   /* an earlier request needs it stopped: it serves nobody new */
    bool stopping; /* stopped by this plan */
};

size_t plan_next(const struct plan_inst *inst, size_t n_inst, const size_t *queue, size_t n_queue,
                 plan_conflict_cb conflicts, void *arg, struct plan_work *work,
                 struct plan_action *out);

#define PLAN_LOADS_KEPT 5 /* past load times of a model kept for the estimate */

/*
 * How long a load under way still needs, in ms, or -1 when there is nothing to go on: the
 * median of the model's past loads (past, n of them, any order) less the time elapsed; once
 * that is spent, or with no past load, what the reported fraction done says (value, when
 * has_value and at least 5% done) at the pace so far.
 */
int64_t plan_load_remaining_ms(const uint64_t *past, size_t n, uint64_t elapsed_ms, bool has_value,
                               double value);

#endif
