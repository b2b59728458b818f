#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

static void
append_within_max(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "abcd", 4), 0);
    assert_int_equal(buf_append(&b, "efgh", 4), 0);
    assert_int_equal(b.len, 8);
    assert_string_equal(buf_cstr(&b), "abcdefgh");
    buf_cleanup(&b);
}

static void
append_past_max_fails_and_keeps_contents(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 5);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(buf_append(&b, "def", 3), -EMSGSIZE);
    assert_int_equal(b.len, 3);
    assert_int_equal(buf_printf(&b, "%d", 123), -EMSGSIZE);
    assert_string_equal(buf_cstr(&b), "abc");
    buf_cleanup(&b);
}

static void
printf_grows_past_small_buffer(void **state)
{
    struct buf b;
    char big[2000];

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_init(&b, 4096);
    assert_int_equal(buf_printf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, sizeof(big) + 1);
    buf_consume(&b, 1);
    assert_int_equal(buf_cstr(&b)[0], 'x');
    buf_cleanup(&b);
}

static void
cstr_on_empty(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 0);
    assert_string_equal(buf_cstr(&b), "");
    buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_within_max),
        cmocka_unit_test(append_past_max_fails_and_keeps_contents),
        cmocka_unit_test(printf_grows_past_small_buffer),
        cmocka_unit_test(cstr_on_empty),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
