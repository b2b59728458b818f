/* The swap scheduler (plan_next) fed crafted states: grants, a start that waits for room, no
 * starvation, a busy model never cut, a retired one in everyone's way, no stop twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "swap/plan.h"

#define MAXI 8

/* Conflicts as a matrix: models in one exclusive group. */
static bool
matrix(size_t i, size_t j, void *arg)
{
    const bool(*m)[MAXI] = arg;

    return m[i][j];
}

static size_t
run(const struct plan_inst *inst, size_t n, const size_t *queue, size_t nq, bool (*m)[MAXI],
    struct plan_action *out)
{
    struct plan_work w[MAXI];

    return plan_next(inst, n, queue, nq, matrix, m, w, out);
}

static void
a_ready_model_serves_at_once(void **state)
{
    const struct plan_inst inst[] = {{PLAN_READY, 1, false}};
    const size_t queue[] = {0};
    bool m[MAXI][MAXI] = {{false}};
    struct plan_action out[MAXI];

    (void)state;
    assert_int_equal(run(inst, 1, queue, 1, m, out), 1);
    assert_int_equal(out[0].kind, PLAN_GRANT);
    assert_int_equal(out[0].index, 0);
}

/* b waits for a, which conflicts: a (idle) is stopped for b, and a newer request for a is not
 * served meanwhile, so b cannot starve behind a stream of requests for a. */
static void
a_swap_stops_the_idle_and_holds_back_newcomers(void **state)
{
    const struct plan_inst inst[] = {{PLAN_READY, 0, false}, {PLAN_STOPPED, 0, false}};
    const size_t queue[] = {1, 0};
    bool m[MAXI][MAXI] = {{false}};
    struct plan_action out[MAXI];
    size_t n;

    (void)state;
    m[0][1] = m[1][0] = true;
    n = run(inst, 2, queue, 2, m, out);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].kind, PLAN_STOP);
    assert_int_equal(out[0].index, 0);
    assert_int_equal(out[0].cause, 1);
}

/* The same, but a is busy: nothing is cut and nothing new is granted to a; everyone waits. */
static void
a_busy_model_is_never_cut(void **state)
{
    const struct plan_inst inst[] = {{PLAN_READY, 2, false}, {PLAN_STOPPED, 0, false}};
    const size_t queue[] = {1, 0};
    bool m[MAXI][MAXI] = {{false}};
    struct plan_action out[MAXI];

    (void)state;
    m[0][1] = m[1][0] = true;
    assert_int_equal(run(inst, 2, queue, 2, m, out), 0);
}

/* Once the way is clear the model starts; a request behind it for a model that does not
 * conflict is served in the next step, not held back. */
static void
a_clear_way_starts_and_others_go_on(void **state)
{
    const struct plan_inst inst[] = {
        {PLAN_STOPPED, 0, false}, {PLAN_STOPPED, 0, false}, {PLAN_READY, 0, false}};
    const size_t queue[] = {1, 2};
    bool m[MAXI][MAXI] = {{false}};
    struct plan_action out[MAXI];
    struct plan_inst after[3];

    (void)state;
    m[0][1] = m[1][0] = true;
    assert_int_equal(run(inst, 3, queue, 2, m, out), 1);
    assert_int_equal(out[0].kind, PLAN_START);
    assert_int_equal(out[0].index, 1);
    memcpy(after, inst, sizeof(after));
    after[1].state = PLAN_STARTING;
    assert_int_equal(run(after, 3, queue, 2, m, out), 1);
    assert_int_equal(out[0].kind, PLAN_GRANT);
    assert_int_equal(out[0].index, 1); /* the request for model 2, second in the queue */
}

/* A retired model (a reload dropped it) is in everyone's way until stopped, and stopped once
 * even when two requests want it gone. */
static void
a_retired_model_is_stopped_once(void **state)
{
    const struct plan_inst inst[] = {
        {PLAN_READY, 0, true}, {PLAN_STOPPED, 0, false}, {PLAN_STOPPED, 0, false}};
    const size_t queue[] = {1, 2};
    bool m[MAXI][MAXI] = {{false}};
    struct plan_action out[MAXI];
    size_t n;

    (void)state;
    n = run(inst, 3, queue, 2, m, out);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].kind, PLAN_STOP);
    assert_int_equal(out[0].index, 0);
}

/* A model being stopped is not granted to a request that arrives meanwhile, and one starting
 * holds back what it conflicts with. */
static void
stopping_and_starting_models_serve_nobody(void **state)
{
    const struct plan_inst inst[] = {
        {PLAN_STOPPING, 0, false}, {PLAN_STARTING, 0, false}, {PLAN_READY, 0, false}};
    const size_t queue[] = {0, 1, 2};
    bool m[MAXI][MAXI] = {{false}};
    struct plan_action out[MAXI];

    (void)state;
    m[1][2] = m[2][1] = true;
    assert_int_equal(run(inst, 3, queue, 3, m, out), 0);
    m[1][2] = m[2][1] = false;
    assert_int_equal(run(inst, 3, queue, 3, m, out), 1);
    assert_int_equal(out[0].kind, PLAN_GRANT);
    assert_int_equal(out[0].index, 2);
}

/* The estimate: the median of past loads less what elapsed, then the pace of the report. */
static void
a_load_estimate_follows_past_loads_then_the_report(void **state)
{
    const uint64_t past[] = {4000, 1000, 3000, 2000, 9000};

    (void)state;
    assert_int_equal(plan_load_remaining_ms(NULL, 0, 500, false, 0), -1);
    assert_int_equal(plan_load_remaining_ms(NULL, 0, 500, true, 0.01), -1); /* too early */
    assert_int_equal(plan_load_remaining_ms(NULL, 0, 1000, true, 0.25), 3000);
    assert_int_equal(plan_load_remaining_ms(past, 5, 1000, false, 0), 2000);  /* median 3000 */
    assert_int_equal(plan_load_remaining_ms(past, 4, 1000, false, 0), 1500);  /* 2500 */
    assert_int_equal(plan_load_remaining_ms(past, 5, 4000, true, 0.8), 1000); /* past spent */
    assert_int_equal(plan_load_remaining_ms(past, 5, 4000, false, 0), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_ready_model_serves_at_once),
        cmocka_unit_test(a_swap_stops_the_idle_and_holds_back_newcomers),
        cmocka_unit_test(a_busy_model_is_never_cut),
        cmocka_unit_test(a_clear_way_starts_and_others_go_on),
        cmocka_unit_test(a_retired_model_is_stopped_once),
        cmocka_unit_test(stopping_and_starting_models_serve_nobody),
        cmocka_unit_test(a_load_estimate_follows_past_loads_then_the_report),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
