#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "http/auth.h"

static void
checks_keys(void **state)
{
    const char *keys[] = {"secret-one", "secret-two", NULL};
    struct auth *a = auth_new(keys);

    (void)state;
    assert_false(auth_open(a));
    assert_true(auth_check(a, "secret-one", 10));
    assert_true(auth_check(a, "secret-two", 10));
    assert_false(auth_check(a, "secret-onf", 10)); /* right length, wrong key */
    assert_false(auth_check(a, "secret-on", 9));
    assert_false(auth_check(a, NULL, 0));
    auth_free(a);
}

/* Which key matched, by its name (never the key); the first of two equal keys. */
static void
names_the_key(void **state)
{
    const char *keys[] = {"k-user", "k-admin", "k-swap", "k-user", NULL};
    const char *names[] = {"api_key", "admin_api_key", "apiKeys[0]", "apiKeys[1]", NULL};
    struct auth *a = auth_new_named(keys, names), *open = auth_new(NULL), *plain = auth_new(keys);

    (void)state;
    assert_string_equal(auth_which(a, "k-admin", 7), "admin_api_key");
    assert_string_equal(auth_which(a, "k-swap", 6), "apiKeys[0]");
    assert_string_equal(auth_which(a, "k-user", 6), "api_key");
    assert_null(auth_which(a, "k-nope", 6));
    assert_null(auth_which(a, NULL, 0));
    assert_string_equal(auth_which(open, NULL, 0), "");
    assert_string_equal(auth_which(plain, "k-swap", 6), "");
    auth_free(a);
    auth_free(open);
    auth_free(plain);
}

static void
no_keys_is_open(void **state)
{
    struct auth *a = auth_new(NULL);

    (void)state;
    assert_true(auth_open(a));
    assert_true(auth_check(a, NULL, 0));
    auth_free(a);
}

static void
reads_bearer_and_x_api_key(void **state)
{
    struct http_request r;
    size_t len = 0;
    char scratch[AUTH_BASIC_MAX];
    const char *k;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.headers[0] = (struct http_header){"Authorization", 13, "Bearer abc", 10};
    r.n_headers = 1;
    k = auth_request_key(&r, scratch, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(k, "abc", 3);
    r.headers[0] = (struct http_header){"X-Api-Key", 9, "xyz", 3};
    k = auth_request_key(&r, scratch, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(k, "xyz", 3);
    r.headers[0] = (struct http_header){"Authorization", 13, "Basic dXNlcjpzay1hOmI=", 22};
    k = auth_request_key(&r, scratch, &len); /* user:sk-a:b: the password keeps its colon */
    assert_int_equal(len, 6);
    assert_memory_equal(k, "sk-a:b", 6);
    r.headers[0] = (struct http_header){"Authorization", 13, "Basic Og==", 10}; /* ":" */
    k = auth_request_key(&r, scratch, &len);
    assert_int_equal(len, 0);
    r.headers[0] = (struct http_header){"Authorization", 13, "Basic !!!!", 10};
    k = auth_request_key(&r, scratch, &len);
    assert_non_null(k);
    assert_int_equal(len, 0);
    r.n_headers = 0;
    assert_null(auth_request_key(&r, scratch, &len));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checks_keys),
        cmocka_unit_test(no_keys_is_open),
        cmocka_unit_test(names_the_key),
        cmocka_unit_test(reads_bearer_and_x_api_key),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
