/* The control stream's protocol (control.c): what each end writes, the other reads back, and
 * a hostile registration is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tunnel/control.h"

static void
parse(struct tunnel_msg *m, const char *line)
{
    tunnel_msg_parse(m, line, strlen(line));
}

static void
each_end_reads_what_the_other_writes(void **state)
{
    char line[128], *nl;
    struct tunnel_msg m;

    (void)state;
    tunnel_line_load(line, sizeof(line), 3, 8);
    parse(&m, line);
    assert_int_equal(m.type, TUNNEL_MSG_LOAD);
    assert_int_equal(m.busy, 3);
    tunnel_msg_cleanup(&m);
    tunnel_line_goodbye(line, sizeof(line), 1500);
    nl = strchr(line, '\n'); /* two lines: reconnect-after, then drain */
    assert_non_null(nl);
    tunnel_msg_parse(&m, line, (size_t)(nl - line));
    assert_int_equal(m.type, TUNNEL_MSG_RECONNECT_AFTER);
    assert_int_equal(m.ms, 1500);
    tunnel_msg_cleanup(&m);
    parse(&m, nl + 1);
    assert_int_equal(m.type, TUNNEL_MSG_DRAIN);
    tunnel_msg_cleanup(&m);
}

static void
a_registration_keeps_valid_names_once(void **state)
{
    struct tunnel_msg m;

    (void)state;
    parse(&m, "{\"type\":\"register\",\"version\":\"v\\u001b1\",\"slots\":4,\"models\":["
              "{\"id\":\"a\",\"hot\":true},{\"id\":\"a\"},{\"id\":\"\"},{\"id\":\"x\\ny\"},"
              "{\"id\":7},{\"id\":\"b\",\"vision\":true}]}");
    assert_int_equal(m.type, TUNNEL_MSG_REGISTER);
    assert_int_equal(m.slots, 4);
    assert_string_equal(m.version, "v?1");
    assert_int_equal(m.n_models, 2);
    assert_string_equal(m.models[0].id, "a");
    assert_true(m.models[0].hot);
    assert_string_equal(m.models[1].id, "b");
    assert_true(m.models[1].vision);
    assert_int_equal(m.bad_id, 3);
    tunnel_msg_cleanup(&m);
}

/* Past TUNNEL_MAX_MODELS the rest is counted, not kept. */
static void
a_registration_is_bounded(void **state)
{
    size_t n = TUNNEL_MAX_MODELS + 5, at = 0, size = n * 24 + 64;
    char *line = malloc(size);
    struct tunnel_msg m;

    (void)state;
    at += (size_t)snprintf(line, size, "{\"type\":\"register\",\"slots\":0,\"models\":[");
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(line + at, size - at, "%s{\"id\":\"m%zu\"}", i ? "," : "", i);
    snprintf(line + at, size - at, "]}");
    parse(&m, line);
    assert_int_equal(m.n_models, TUNNEL_MAX_MODELS);
    assert_int_equal(m.over, 5);
    assert_int_equal(m.slots, 1); /* 0 slots is no slots: one */
    tunnel_msg_cleanup(&m);
    free(line);
}

static void
odd_lines_are_told_apart(void **state)
{
    struct tunnel_msg m;

    (void)state;
    parse(&m, "not json");
    assert_int_equal(m.type, TUNNEL_MSG_INVALID);
    parse(&m, "{\"type\":\"future-thing\"}");
    assert_int_equal(m.type, TUNNEL_MSG_OTHER);
    parse(&m, "{\"type\":\"load\",\"busy\":-4}");
    assert_int_equal(m.busy, 0);
    parse(&m, "{\"type\":\"reconnect-after\",\"ms\":-1}");
    assert_int_equal(m.ms, 0);
}

/* A model's load goes up as llama.cpp's progress object, rebuilt bounded; a bad one is
 * dropped, the status kept. */
static void
a_model_line_carries_bounded_progress(void **state)
{
    json_t *prog = json_pack("{s:[s], s:s, s:f}", "stages", "text_model", "current", "text_model",
                             "value", 0.5);
    char *line = tunnel_line_model("tiny-a", "loading", prog);
    struct tunnel_msg m;

    (void)state;
    parse(&m, line);
    assert_int_equal(m.type, TUNNEL_MSG_MODEL);
    assert_string_equal(m.model, "tiny-a");
    assert_true(m.loading);
    assert_true(json_equal(m.progress, prog));
    tunnel_msg_cleanup(&m);
    free(line);
    json_decref(prog);
    parse(&m, "{\"type\":\"model\",\"model\":\"a\",\"status\":\"loading\",\"progress\":{"
              "\"stages\":[\"x y\"],\"current\":\"x y\",\"value\":0.5,\"junk\":1}}");
    assert_true(m.loading);
    assert_null(m.progress);
    tunnel_msg_cleanup(&m);
    parse(&m, "{\"type\":\"model\",\"model\":\"a\",\"status\":\"loading\",\"progress\":{"
              "\"stages\":[\"t\"],\"current\":\"t\",\"value\":9,\"junk\":1}}");
    assert_int_equal(json_object_size(m.progress), 3); /* junk left behind */
    assert_true(json_real_value(json_object_get(m.progress, "value")) == 1.0);
    tunnel_msg_cleanup(&m);
    parse(&m, "{\"type\":\"model\",\"model\":\"a\",\"status\":\"loaded\"}");
    assert_false(m.loading);
    assert_string_equal(m.model, "a");
    tunnel_msg_cleanup(&m);
    parse(&m, "{\"type\":\"model\",\"model\":\"\",\"status\":\"loading\"}");
    assert_null(m.model);
    tunnel_msg_cleanup(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_end_reads_what_the_other_writes),
        cmocka_unit_test(a_registration_keeps_valid_names_once),
        cmocka_unit_test(a_registration_is_bounded),
        cmocka_unit_test(odd_lines_are_told_apart),
        cmocka_unit_test(a_model_line_carries_bounded_progress),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
