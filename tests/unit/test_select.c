#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router/select.h"

static int
pick(const char *body, char **name, char *err)
{
    return select_model_from_json(body, strlen(body), name, err, 256);
}

static void
model_string(void **state)
{
    char *name, err[256];

    (void)state;
    assert_int_equal(pick("{\"model\":\"tiny-a\",\"messages\":[]}", &name, err), 0);
    assert_string_equal(name, "tiny-a");
    free(name);
}

static void
no_model_or_empty_body(void **state)
{
    char *name, err[256];

    (void)state;
    assert_int_equal(pick("{\"prompt\":\"hi\"}", &name, err), 0);
    assert_null(name);
    assert_int_equal(pick("", &name, err), 0);
    assert_null(name);
    assert_int_equal(pick("{\"model\":null}", &name, err), 0);
    assert_null(name);
}

static void
invalid_json_names_position(void **state)
{
    char *name, err[256];

    (void)state;
    assert_int_equal(pick("{\"model\": \"x\",\n oops}", &name, err), -EINVAL);
    assert_non_null(strstr(err, "not valid JSON"));
    assert_non_null(strstr(err, "line 2"));
}

static void
model_not_a_string(void **state)
{
    char *name, err[256];

    (void)state;
    assert_int_equal(pick("{\"model\": 42}", &name, err), -EINVAL);
    assert_non_null(strstr(err, "must be a string"));
    assert_int_equal(pick("[1,2]", &name, err), -EINVAL);
    assert_non_null(strstr(err, "JSON object"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_string),
        cmocka_unit_test(no_model_or_empty_body),
        cmocka_unit_test(invalid_json_names_position),
        cmocka_unit_test(model_not_a_string),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
