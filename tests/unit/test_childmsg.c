/* llama.cpp's child protocol lines (proc_child_msg_parse): the shapes the cached llama-server
 * prints, and what a line that is not one, or a bad one, becomes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proc/childmsg.h"

static int
parse(const char *line, struct proc_child_msg *m)
{
    return proc_child_msg_parse(line, strlen(line), m);
}

static void
loading_and_ready_as_llama_server_prints_them(void **state)
{
    struct proc_child_msg m;

    (void)state;
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"loading\",\"payload\":{"
                           "\"stages\":[\"text_model\",\"mmproj_model\"],\"current\":"
                           "\"mmproj_model\",\"value\":0.25}}",
                           &m),
                     0);
    assert_int_equal(m.state, PROC_CHILD_LOADING);
    assert_true(m.has_progress);
    assert_int_equal(m.progress.n_stages, 2);
    assert_string_equal(m.progress.stages[0], "text_model");
    assert_int_equal(m.progress.current, 1);
    assert_true(m.progress.value == 0.25);
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"ready\",\"payload\":{\"n_ctx\":"
                           "512}}",
                           &m),
                     0);
    assert_int_equal(m.state, PROC_CHILD_READY);
    assert_false(m.has_progress);
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"downloading\"}", &m), 0);
    assert_int_equal(m.state, PROC_CHILD_OTHER);
}

/* A value out of range is clamped; a stage outside the plan is kept as the current one; names
 * that are not identifiers, or too many stages, mean no progress (the state still counts). */
static void
odd_payloads(void **state)
{
    struct proc_child_msg m;

    (void)state;
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"loading\",\"payload\":{"
                           "\"current\":\"text_model\",\"value\":7}}",
                           &m),
                     0);
    assert_true(m.has_progress && m.progress.value == 1.0);
    assert_int_equal(m.progress.current, 0);
    assert_string_equal(m.progress.stages[0], "text_model");
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"loading\",\"payload\":{"
                           "\"stages\":[\"a b\"],\"value\":0.5}}",
                           &m),
                     0);
    assert_false(m.has_progress);
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"loading\",\"payload\":{"
                           "\"stages\":[\"a\",\"b\",\"c\",\"d\",\"e\"],\"value\":0.5}}",
                           &m),
                     0);
    assert_false(m.has_progress);
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"loading\",\"payload\":{"
                           "\"value\":\"half\"}}",
                           &m),
                     0);
    assert_false(m.has_progress);
}

static void
not_state_lines(void **state)
{
    struct proc_child_msg m;

    (void)state;
    assert_int_equal(parse("main: server is listening on http://127.0.0.1:8080", &m), -EINVAL);
    assert_int_equal(parse("cmd_child_to_router:state:", &m), -EINVAL);
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":1}", &m), -EINVAL);
    assert_int_equal(parse("cmd_child_to_router:state:[\"ready\"]", &m), -EINVAL);
    assert_int_equal(parse("cmd_child_to_router:state:{\"state\":\"ready\"", &m), -EINVAL);
    assert_int_equal(parse("cmd_child_to_router:stat", &m), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loading_and_ready_as_llama_server_prints_them),
        cmocka_unit_test(odd_payloads),
        cmocka_unit_test(not_state_lines),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
