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

/* Bytes come out in order across appends, reads of any size and the moves in between. */
static void
take_keeps_order_across_appends(void **state)
{
    struct buf b;
    size_t off = 0, next_in = 0, next_out = 0;
    unsigned char chunk[700], got[300];

    (void)state;
    buf_init(&b, 1 << 20);
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(chunk); i++)
            chunk[i] = (unsigned char)(next_in++ % 251);
        assert_int_equal(buf_append(&b, chunk, (size_t)(round % 7) * 100), 0);
        next_in -= sizeof(chunk) - (size_t)(round % 7) * 100;
        size_t n = buf_take(&b, &off, got, (size_t)(round % 3) * 100 + 1);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(got[i], next_out++ % 251);
        assert_true(off <= b.len);
    }
    for (size_t n; (n = buf_take(&b, &off, got, sizeof(got))) > 0;)
        for (size_t i = 0; i < n; i++)
            assert_int_equal(got[i], next_out++ % 251);
    assert_int_equal(next_out, next_in);
    assert_int_equal(b.len, 0);
    assert_int_equal(off, 0);
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
        cmocka_unit_test(take_keeps_order_across_appends),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
