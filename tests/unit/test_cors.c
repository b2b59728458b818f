#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "http/cors.h"

static enum cors_verdict
check(const char *origin, const char *host)
{
    static char *const list[] = {"http://localhost", "https://app.example.com", NULL};

    return cors_check(list, origin, origin ? strlen(origin) : 0, host, host ? strlen(host) : 0);
}

static void
exact_origins_only(void **state)
{
    (void)state;
    assert_int_equal(check(NULL, "x:1"), CORS_NONE);
    assert_int_equal(check("http://localhost", "goinfer:4444"), CORS_ALLOWED);
    assert_int_equal(check("https://app.example.com", "goinfer:4444"), CORS_ALLOWED);
    /* one that only starts with, or ends like, an allowed one is another site */
    assert_int_equal(check("http://localhost.evil.com", "goinfer:4444"), CORS_DENIED);
    assert_int_equal(check("http://localhos", "goinfer:4444"), CORS_DENIED);
    assert_int_equal(check("https://localhost", "goinfer:4444"), CORS_DENIED);
    assert_int_equal(check("null", "goinfer:4444"), CORS_DENIED);
}

static void
own_origin_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(check("http://10.0.0.5:4444", "10.0.0.5:4444"), CORS_ALLOWED);
    assert_int_equal(check("http://10.0.0.5:4444", "10.0.0.5:5555"), CORS_DENIED);
    assert_int_equal(check("http://evil.com", NULL), CORS_DENIED);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_origins_only),
        cmocka_unit_test(own_origin_is_allowed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
