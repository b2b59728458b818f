/* String vectors: lengths, appends, splitting "a, b c" lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/strv.h"

static void
split_add_len(void **state)
{
    char **v = strv_split("  a, b,,c  d ");

    (void)state;
    assert_int_equal(strv_len(v), 4);
    assert_string_equal(v[0], "a");
    assert_string_equal(v[3], "d");
    assert_null(v[4]);
    strv_add(&v, "e-and-more", 5);
    assert_int_equal(strv_len(v), 5);
    assert_string_equal(v[4], "e-and");
    strv_free(v);
    v = strv_split("");
    assert_non_null(v);
    assert_int_equal(strv_len(v), 0);
    strv_free(v);
    assert_int_equal(strv_len(NULL), 0);
    strv_free(NULL);
    v = NULL;
    strv_add(&v, "x", 1); /* from nothing */
    assert_int_equal(strv_len(v), 1);
    strv_free(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_add_len),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
