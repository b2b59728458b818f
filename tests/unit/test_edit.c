/* Editing one YAML scalar in place: plain, quoted and block scalars, flow mappings, non-ASCII
 * text before the value, a missing key, and the rest of the file kept byte for byte. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/edit.h"

static const char *const cmd[] = {"models", "m", "cmd"};

static char *
edit(const char *text, const char *value, int want_rc)
{
    char err[256], *out = NULL;

    assert_int_equal(conf_edit_scalar(text, strlen(text), cmd, 3, value, &out, err, sizeof(err)),
                     want_rc);
    return out;
}

static void
plain_scalar_replaced_rest_kept(void **state)
{
    const char *t = "# top\nmodels:\n  m:\n    cmd: prog -c 1  # why\n    ttl: 3\n";
    char *got = edit(t, NULL, 0);

    (void)state;
    assert_string_equal(got, "prog -c 1");
    free(got);
    got = edit(t, "prog -c \"2\"", 0);
    assert_string_equal(got, "# top\nmodels:\n  m:\n    cmd: \"prog -c \\\"2\\\"\"  # why\n"
                             "    ttl: 3\n");
    free(got);
}

static void
block_scalar_keeps_its_line(void **state)
{
    const char *t = "models:\n  m:\n    cmd: |\n      prog\n      -c 1\n    ttl: 3\n";
    char *got = edit(t, NULL, 0);

    (void)state;
    assert_string_equal(got, "prog\n-c 1\n");
    free(got);
    got = edit(t, "prog -c 2", 0);
    assert_string_equal(got, "models:\n  m:\n    cmd: \"prog -c 2\"\n    ttl: 3\n");
    free(got);
}

static void
flow_and_utf8(void **state)
{
    const char *t = "# été\nmodels: {m: {cmd: 'a b', ttl: 1}}\n";
    char *got = edit(t, "c", 0);

    (void)state;
    assert_string_equal(got, "# été\nmodels: {m: {cmd: \"c\", ttl: 1}}\n");
    free(got);
}

static void
missing_or_not_scalar(void **state)
{
    (void)state;
    assert_null(edit("models:\n  other: {cmd: x}\n", NULL, -ENOENT));
    assert_null(edit("models:\n  m:\n    cmd: [a, b]\n", "x", -EINVAL));
    assert_null(edit("models: [unclosed\n", "x", -EINVAL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_scalar_replaced_rest_kept),
        cmocka_unit_test(block_scalar_keeps_its_line),
        cmocka_unit_test(flow_and_utf8),
        cmocka_unit_test(missing_or_not_scalar),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
