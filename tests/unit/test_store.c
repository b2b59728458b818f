/* The admin store: schema, bounds, settings that survive a reopen, reads and the series. */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/store.h"

static char dir[64];

static int
make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_store.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int
remove_dir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "%s/%s", dir, STORE_FILE);
    unlink(cmd);
    snprintf(cmd, sizeof(cmd), "%s/%s-wal", dir, STORE_FILE);
    unlink(cmd);
    snprintf(cmd, sizeof(cmd), "%s/%s-shm", dir, STORE_FILE);
    unlink(cmd);
    snprintf(cmd, sizeof(cmd), "%s/sub", dir);
    rmdir(cmd);
    return rmdir(dir);
}

static struct store *
open_store(uint64_t keep)
{
    struct store *st = NULL;
    char err[256];

    assert_int_equal(store_open(NULL, dir, keep, &st, err, sizeof(err)), 0);
    return st;
}

static void
add(struct store *st, int64_t t_ms, const char *model, double tps, int64_t tokens)
{
    struct store_activity a = {.t_ms = t_ms,
                               .model = model,
                               .backend = "local",
                               .key = "api_key",
                               .client = "127.0.0.1:1",
                               .method = "POST",
                               .path = "/v1/chat/completions",
                               .status = 200,
                               .prompt_tokens = 5,
                               .completion_tokens = tokens,
                               .ttft_ms = 12.5,
                               .tokens_per_s = tps,
                               .duration_ms = 40};

    store_activity_add(st, &a);
}

static void
bound_and_pages(void **state)
{
    struct store *st = open_store(5);
    json_t *o, *rows;

    (void)state;
    for (int i = 0; i < 12; i++)
        add(st, 1000 + i, i % 2 ? "a" : "b", 10, i);
    assert_int_equal(store_activity_count(st), 5);
    o = store_activity_json(st, 3, 0, NULL);
    rows = json_object_get(o, "data");
    assert_int_equal(json_array_size(rows), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 0), "t_ms")), 1011);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "key")),
                        "api_key");
    assert_true(json_is_integer(json_object_get(o, "next_before")));
    json_decref(o);
    o = store_activity_json(st, 10, 0, "a");
    assert_int_equal(json_array_size(json_object_get(o, "data")), 3); /* 7, 9, 11 */
    assert_true(json_is_null(json_object_get(o, "next_before")));
    json_decref(o);
    store_close(st);
}

static void
settings_survive(void **state)
{
    struct store *st = open_store(100);

    (void)state;
    assert_true(store_model_enabled(st, "m"));
    assert_int_equal(store_model_set_enabled(st, "m", false), 0);
    assert_int_equal(store_model_set_enabled(st, "n", false), 0);
    assert_false(store_model_enabled(st, "m"));
    store_close(st);
    st = open_store(100);
    assert_false(store_model_enabled(st, "m"));
    assert_false(store_model_enabled(st, "n"));
    assert_int_equal(store_model_set_enabled(st, "m", true), 0);
    assert_true(store_model_enabled(st, "m"));
    assert_false(store_model_enabled(st, "n"));
    store_close(st);
    assert_true(store_model_enabled(NULL, "m"));
}

static void
series_and_recent(void **state)
{
    struct store *st = open_store(100);
    int64_t now = 3600 * 1000 * 10; /* aligned: the last step is [now, now+60s) */
    json_t *o, *m;

    (void)state;
    add(st, now - 30 * 1000, "a", 10, 4);
    add(st, now - 20 * 1000, "a", 20, 6);
    add(st, now + 1000, "b", -1, 1);
    add(st, now - 7200 * 1000, "a", 99, 99); /* outside */
    {
        struct store_activity made_up = {.t_ms = now, .model = "no-such-model", .status = 404};

        store_activity_add(st, &made_up); /* reached no backend: in no series */
    }
    o = store_series_json(st, now + 1000, 60, 60);
    assert_int_equal(json_array_size(json_object_get(o, "t")), 60);
    assert_int_equal(json_array_size(json_object_get(o, "models")), 2);
    m = json_array_get(json_object_get(o, "models"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "model")), "a");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(m, "requests"), 58)), 2);
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(m, "completion_tokens"), 58)), 10);
    assert_true(json_real_value(json_array_get(json_object_get(m, "tokens_per_s"), 58)) == 15);
    assert_true(json_is_null(json_array_get(json_object_get(m, "tokens_per_s"), 59)));
    json_decref(o);
    o = store_recent_json(st, now - 3600 * 1000);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "a"), "requests")), 2);
    assert_true(json_is_null(json_object_get(json_object_get(o, "b"), "tokens_per_s")));
    assert_null(json_object_get(o, "no-such-model"));
    json_decref(o);
    store_close(st);
}

static void
text_is_bounded(void **state)
{
    struct store *st = open_store(100);
    char big[4 * STORE_TEXT_MAX];
    json_t *o;

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    add(st, 1, big, 1, 1);
    o = store_activity_json(st, 1, 0, NULL);
    assert_int_equal(strlen(json_string_value(
                         json_object_get(json_array_get(json_object_get(o, "data"), 0), "model"))),
                     STORE_TEXT_MAX);
    json_decref(o);
    store_close(st);
}

static void
audit_rows(void **state)
{
    struct store *st = open_store(100);
    struct store_audit u = {1, "admin_api_key", "127.0.0.1:2", "model.enable", "m", 200};
    json_t *o;

    (void)state;
    store_audit_add(st, &u);
    o = store_audit_json(st, 10);
    assert_int_equal(json_array_size(json_object_get(o, "data")), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(o, "data"), 0), "action")),
        "model.enable");
    json_decref(o);
    store_close(st);
}

static void
bad_folder(void **state)
{
    struct store *st = NULL;
    char err[512], path[128];
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE); /* a file where a folder should be */
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s/x", dir, STORE_FILE);
    assert_true(store_open(NULL, path, 10, &st, err, sizeof(err)) < 0);
    assert_null(st);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "GI_STATE_DIR"));
    snprintf(path, sizeof(path), "%s/sub", dir); /* created, mode 0700 */
    assert_int_equal(store_open(NULL, path, 10, &st, err, sizeof(err)), 0);
    store_close(st);
    snprintf(path, sizeof(path), "%s/sub/%s", dir, STORE_FILE);
    unlink(path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bound_and_pages, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(settings_survive, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(series_and_recent, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(audit_rows, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(text_is_bounded, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(bad_folder, make_dir, remove_dir),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
