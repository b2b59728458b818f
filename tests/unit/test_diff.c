/* The settings' unified diff: same texts, a change in the middle with its context, additions at
 * either end, a missing final newline, and a middle too large for the LCS table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/diff.h"
#include "core/buf.h"

static char *
diff(const char *a, const char *b)
{
    return admin_diff("a", a, strlen(a), "b", b, strlen(b));
}

static void
same_is_empty(void **state)
{
    char *d = diff("x\ny\n", "x\ny\n");

    (void)state;
    assert_string_equal(d, "");
    free(d);
}

static void
middle_change_with_context(void **state)
{
    char *d = diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n");

    (void)state;
    assert_string_equal(d, "--- a\n+++ b\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
    free(d);
}

static void
ends_and_newline(void **state)
{
    char *d = diff("b\n", "a\nb\nc");

    (void)state;
    assert_string_equal(
        d, "--- a\n+++ b\n@@ -1,1 +1,3 @@\n+a\n b\n+c\n\\ No newline at end of file\n");
    free(d);
    d = diff("", "new\n");
    assert_string_equal(d, "--- a\n+++ b\n@@ -0,0 +1,1 @@\n+new\n");
    free(d);
}

static void
far_apart_changes_make_two_hunks(void **state)
{
    struct buf a, b;
    char *d;

    (void)state;
    buf_init(&a, 1 << 20);
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 40; i++) {
        buf_printf(&a, "%d\n", i);
        buf_printf(&b, "%d\n", i == 3 ? 300 : i == 30 ? 3000 : i);
    }
    d = admin_diff("a", a.data, a.len, "b", b.data, b.len);
    assert_non_null(strstr(d, "@@ -1,7 +1,7 @@\n"));
    assert_non_null(strstr(d, "@@ -28,7 +28,7 @@\n"));
    assert_non_null(strstr(d, "-30\n+3000\n"));
    free(d);
    buf_cleanup(&a);
    buf_cleanup(&b);
}

static void
huge_middle_is_still_a_diff(void **state)
{
    struct buf a, b;
    char *d;

    (void)state;
    buf_init(&a, 1 << 24);
    buf_init(&b, 1 << 24);
    for (int i = 0; i < 5000; i++) {
        buf_printf(&a, "a%d\n", i);
        buf_printf(&b, "b%d\n", i);
    }
    d = admin_diff("a", a.data, a.len, "b", b.data, b.len);
    assert_non_null(strstr(d, "@@ -1,5000 +1,5000 @@\n-a0\n"));
    assert_non_null(strstr(d, "-a4999\n+b0\n"));
    free(d);
    buf_cleanup(&a);
    buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_is_empty),
        cmocka_unit_test(middle_change_with_context),
        cmocka_unit_test(ends_and_newline),
        cmocka_unit_test(far_apart_changes_make_two_hunks),
        cmocka_unit_test(huge_middle_is_still_a_diff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
