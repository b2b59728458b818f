#include "plan.h"

#include <string.h>

/* Whether o stands in the way of in: conflicting by the groups, or retired, and not stopped. */
static bool
in_way(const struct plan_inst *inst, size_t in, size_t o, plan_conflict_cb conflicts, void *arg)
{
    return o != in && inst[o].state != PLAN_STOPPED && (inst[o].retired || conflicts(in, o, arg));
}

/* Stops the idle models in the way of in; true when none is left running. */
static bool
make_room(const struct plan_inst *inst, size_t n_inst, size_t in, plan_conflict_cb conflicts,
          void *arg, struct plan_work *w, struct plan_action *out, size_t *n)
{
    bool clear = true;

    for (size_t o = 0; o < n_inst; o++) {
        if (!in_way(inst, in, o, conflicts, arg))
            continue;
        clear = false;
        if (inst[o].state == PLAN_READY && !w[o].stopping && inst[o].inflight == 0) {
            out[(*n)++] = (struct plan_action){PLAN_STOP, o, in};
            w[o].stopping = true;
        }
    }
    return clear;
}

size_t
plan_next(const struct plan_inst *inst, size_t n_inst, const size_t *queue, size_t n_queue,
          plan_conflict_cb conflicts, void *arg, struct plan_work *w, struct plan_action *out)
{
    size_t n = 0;

    memset(w, 0, n_inst * sizeof(*w));
    for (size_t q = 0; q < n_queue; q++) {
        size_t in = queue[q];
        bool ready = inst[in].state == PLAN_READY && !w[in].stopping;

        if (ready && !w[in].doomed) {
            out[n++] = (struct plan_action){PLAN_GRANT, q, 0};
            return n;
        }
        if (inst[in].state == PLAN_STOPPED && !w[in].doomed &&
            make_room(inst, n_inst, in, conflicts, arg, w, out, &n)) {
            out[n++] = (struct plan_action){PLAN_START, in, 0};
            return n;
        }
        if (!ready) /* what in needs stopped serves nobody new meanwhile */
            for (size_t o = 0; o < n_inst; o++)
                if (o != in && !inst[o].retired && conflicts(in, o, arg))
                    w[o].doomed = true;
    }
    return n;
}

int64_t
plan_load_remaining_ms(const uint64_t *past, size_t n, uint64_t elapsed_ms, bool has_value,
                       double value)
{
    uint64_t v[PLAN_LOADS_KEPT], median;
    size_t k = n < PLAN_LOADS_KEPT ? n : PLAN_LOADS_KEPT;

    for (size_t i = 0; i < k; i++) { /* insertion sort: five at most */
        size_t j = i;

        for (; j > 0 && v[j - 1] > past[i]; j--)
            v[j] = v[j - 1];
        v[j] = past[i];
    }
    median = k == 0 ? 0 : k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
    if (k > 0 && median > elapsed_ms)
        return (int64_t)(median - elapsed_ms);
    if (has_value && value >= 0.05 && value <= 1)
        return (int64_t)((double)elapsed_ms * (1 - value) / value + 0.5);
    return k > 0 ? 0 : -1;
}
