/* The fleet scheduler, fed crafted fleets: hot over cold, free slots only, the two-choices
 * fairness over 10,000 picks, a known model with no room, and the backoff's bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tunnel/fleet.h"

/* A small xorshift: the same sequence every run. */
static uint32_t
seq(void *arg, uint32_t bound)
{
    uint64_t *x = arg;

    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return (uint32_t)(*x % bound);
}

/* A source that always says its largest value (the worst case for bounds). */
static uint32_t
top(void *arg, uint32_t bound)
{
    (void)arg;
    return bound - 1;
}

static void
hot_is_chosen_over_cold(void **state)
{
    const struct fleet_cand c[] = {
        {true, false, 0, 4}, {true, true, 3, 4}, {true, false, 0, 4}, {false, true, 0, 4}};
    uint64_t x = 88172645463325252ull;
    bool known;

    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(fleet_pick(c, 4, seq, &x, &known), 1);
    assert_true(known);
}

static void
a_full_hot_machine_gives_way_to_a_cold_one(void **state)
{
    const struct fleet_cand c[] = {{true, true, 4, 4}, {true, false, 2, 4}};
    uint64_t x = 1;
    bool known;

    (void)state;
    assert_int_equal(fleet_pick(c, 2, seq, &x, &known), 1);
}

static void
known_but_full_is_not_unknown(void **state)
{
    const struct fleet_cand full[] = {{true, true, 2, 2}, {false, false, 0, 8}};
    const struct fleet_cand none[] = {{false, true, 0, 2}};
    uint64_t x = 7;
    bool known;

    (void)state;
    assert_int_equal(fleet_pick(full, 2, seq, &x, &known), -1);
    assert_true(known); /* queue it */
    assert_int_equal(fleet_pick(none, 1, seq, &x, &known), -1);
    assert_false(known); /* 404 */
    assert_int_equal(fleet_pick(NULL, 0, seq, &x, &known), -1);
    assert_false(known);
}

/* Ten equal machines: every one gets its share (within 20%); with loads 0..9 of 10 slots, the
 * least loaded get the most and the fullest the least. */
static void
two_choices_spread_the_load(void **state)
{
    struct fleet_cand c[10];
    unsigned count[10] = {0};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    bool known;

    (void)state;
    for (int i = 0; i < 10; i++)
        c[i] = (struct fleet_cand){true, true, 1, 10};
    for (int i = 0; i < 10000; i++)
        count[fleet_pick(c, 10, seq, &x, &known)]++;
    for (int i = 0; i < 10; i++)
        assert_in_range(count[i], 800, 1200);
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 10; i++)
        c[i].load = (unsigned)i;
    for (int i = 0; i < 10000; i++)
        count[fleet_pick(c, 10, seq, &x, &known)]++;
    assert_true(count[0] > count[4] && count[4] > count[9]);
    assert_int_equal(count[9], 0); /* it loses every comparison it is drawn into */
}

/* Load is compared as a fraction of slots: 3 of 16 is lighter than 1 of 2. */
static void
load_is_a_fraction_of_slots(void **state)
{
    const struct fleet_cand c[] = {{true, true, 1, 2}, {true, true, 3, 16}};
    uint64_t x = 3;
    bool known;

    (void)state;
    for (int i = 0; i < 100; i++)
        assert_int_equal(fleet_pick(c, 2, seq, &x, &known), 1);
}

static void
backoff_stays_within_its_bounds(void **state)
{
    uint64_t x = 5;

    (void)state;
    assert_int_equal(fleet_backoff_ms(0, 1000, 60000, top, NULL), 1000);
    assert_int_equal(fleet_backoff_ms(3, 1000, 60000, top, NULL), 8000);
    assert_int_equal(fleet_backoff_ms(6, 1000, 60000, top, NULL), 60000);
    assert_int_equal(fleet_backoff_ms(1000, 1000, 60000, top, NULL), 60000); /* no overflow */
    for (unsigned a = 0; a < 64; a++) {
        uint64_t w = fleet_backoff_ms(a, 1000, 60000, seq, &x);

        assert_in_range(w, 1, 60000);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hot_is_chosen_over_cold),
        cmocka_unit_test(a_full_hot_machine_gives_way_to_a_cold_one),
        cmocka_unit_test(known_but_full_is_not_unknown),
        cmocka_unit_test(two_choices_spread_the_load),
        cmocka_unit_test(load_is_a_fraction_of_slots),
        cmocka_unit_test(backoff_stays_within_its_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
