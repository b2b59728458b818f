#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keys/vkey.h"

static void
glob_patterns(void **state)
{
    (void)state;
    assert_true(vkey_glob("*", "anything/at:all"));
    assert_true(vkey_glob("tiny-*", "tiny-a"));
    assert_true(vkey_glob("openai/gpt-4o*", "openai/gpt-4o-mini"));
    assert_true(vkey_glob("*/llama-*-8b", "meta/llama-3.1-8b"));
    assert_true(vkey_glob("tiny-?", "tiny-b"));
    assert_false(vkey_glob("tiny-?", "tiny-bb"));
    assert_false(vkey_glob("tiny-*", "small-tiny-a"));
    assert_false(vkey_glob("a*b*c", "aXbY"));
    assert_true(vkey_glob("a*b*c", "aXbYbZc"));
    assert_true(vkey_glob("", ""));
    assert_false(vkey_glob("", "x"));
    /* no exponential backtracking */
    assert_false(vkey_glob("*a*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void
reset_periods(void **state)
{
    int64_t wed = 1764720000 + 3600 * 13; /* 2025-12-03 13:00 UTC, a Wednesday */
    enum vkey_period p;

    (void)state;
    assert_int_equal(vkey_period_start(VKEY_PERIOD_DAILY, wed), 1764720000);
    assert_int_equal(vkey_period_next(VKEY_PERIOD_DAILY, 1764720000), 1764720000 + 86400);
    assert_int_equal(vkey_period_start(VKEY_PERIOD_WEEKLY, wed), 1764547200);        /* Mon 1 Dec */
    assert_int_equal(vkey_period_start(VKEY_PERIOD_MONTHLY, wed), 1764547200);       /* 1 Dec */
    assert_int_equal(vkey_period_next(VKEY_PERIOD_MONTHLY, 1764547200), 1767225600); /* 1 Jan */
    assert_int_equal(vkey_period_next(VKEY_PERIOD_MONTHLY, 1767225600), 1769904000); /* 1 Feb */
    assert_int_equal(vkey_period_start(VKEY_PERIOD_NONE, wed), 0);
    assert_true(vkey_period_next(VKEY_PERIOD_NONE, 0) == INT64_MAX);
    assert_int_equal(vkey_period_parse("weekly", &p), 0);
    assert_int_equal(p, VKEY_PERIOD_WEEKLY);
    assert_true(vkey_period_parse("hourly", &p) < 0);
}

static void
budget_rolls_and_reserves(void **state)
{
    struct vkey_budget b = {.limit = 100, .period = VKEY_PERIOD_DAILY};
    int64_t day = 1764720000;

    (void)state;
    vkey_budget_roll(&b, day + 10);
    assert_int_equal(b.start, day);
    assert_true(vkey_budget_fits(&b, 100));
    vkey_budget_reserve(&b, 60);
    assert_true(vkey_budget_fits(&b, 40));
    assert_false(vkey_budget_fits(&b, 41)); /* what is reserved counts before it is spent */
    vkey_budget_settle(&b, 60, 15);         /* used 15 of the 60 it held */
    assert_true(b.reserved == 0 && b.spent == 15);
    assert_true(vkey_budget_fits(&b, 85));
    vkey_budget_roll(&b, day + 86400 + 5); /* the next day: spend starts over */
    assert_true(b.spent == 0 && b.start == day + 86400);
    b.limit = -1;
    assert_true(vkey_budget_fits(&b, 1e12));
}

static void
worst_case_and_rates(void **state)
{
    struct vkey k;

    (void)state;
    assert_int_equal(vkey_worst_tokens(100, 20), 120);
    assert_int_equal(vkey_worst_tokens(10 * VKEY_PROMPT_MAX, 20), VKEY_PROMPT_MAX + 20);
    vkey_init(&k);
    k.price_prompt = 0.5;
    k.price_completion = 2;
    assert_true(vkey_usd(&k, 4, 3) == 8);
    k.rpm = 2;
    assert_int_equal(vkey_rate_take(&k, 1000), 0);
    assert_int_equal(vkey_rate_take(&k, 1010), 0);
    assert_int_equal(vkey_rate_take(&k, 1030), 30); /* seconds to the window's end */
    assert_int_equal(vkey_rate_take(&k, 1060), 0);  /* a new window */
    vkey_cleanup(&k);
}

static void
secrets_and_rules(void **state)
{
    struct vkey k;
    char err[128];
    json_t *spec =
        json_pack("{s:s, s:[s], s:s, s:f, s:s, s:i}", "name", "app", "models", "tiny-*", "expires",
                  "2h", "budget_usd", 5.0, "budget_usd_period", "monthly", "max_tokens", 64);
    json_t *bad = json_pack("{s:s}", "colour", "blue");

    (void)state;
    vkey_init(&k);
    assert_int_equal(vkey_apply(&k, spec, 1000, err, sizeof(err)), 0);
    assert_string_equal(k.name, "app");
    assert_int_equal(k.expires, 1000 + 7200);
    assert_true(k.usd.limit == 5 && k.tokens.limit < 0 && k.max_tokens == 64);
    assert_true(vkey_model_allowed(&k, "tiny-a") && !vkey_model_allowed(&k, "big"));
    assert_true(vkey_origin_allowed(&k, "http://x", 8)); /* no origins listed: any */
    assert_true(vkey_apply(&k, bad, 1000, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "colour"));
    memset(k.salt, 7, sizeof(k.salt));
    vkey_hash(k.salt, "abc", 3, k.hash);
    assert_true(vkey_verify(&k, "abc", 3));
    assert_false(vkey_verify(&k, "abd", 3));
    assert_false(vkey_verify(&k, "abc", 2));
    assert_int_equal(vkey_secret_id("gk-42-deadbeef", 14, VKEY_PREFIX), 42);
    assert_int_equal(vkey_secret_id("gk-42", 5, VKEY_PREFIX), -1);
    assert_int_equal(vkey_secret_id("gt-7-x", 6, VKEY_PREFIX), -1);
    assert_int_equal(vkey_secret_id("gt-7-x", 6, VKEY_TOKEN), 7);
    json_decref(spec);
    json_decref(bad);
    vkey_cleanup(&k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(glob_patterns),
        cmocka_unit_test(reset_periods),
        cmocka_unit_test(budget_rolls_and_reserves),
        cmocka_unit_test(worst_case_and_rates),
        cmocka_unit_test(secrets_and_rules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
