#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router/peers.h"
#include "router/select.h"

static int
pick(const char *body, char **name, char *err)
{
    return select_model_from_json(body, strlen(body), name, err, 256);
}

static int
scan(const char *body, char **name, char *err)
{
    return select_model_scan(body, strlen(body), name, err, 256);
}

/* The scanner walks the top level only: nested "model" keys, strings holding braces and
 * escaped quotes are skipped; the value is decoded like jansson does. */
static void
scan_top_level_model(void **state)
{
    char *name = NULL, err[256];

    (void)state;
    assert_int_equal(scan(" {\"messages\":[{\"model\":\"no\",\"content\":\"} \\\" {\"}],"
                          "\"n\":-1.5e3,\"x\":{\"model\":1},\"ok\":true,\"model\":\"t\\u0069ny\"}",
                          &name, err),
                     0);
    assert_string_equal(name, "tiny");
    free(name);
    assert_int_equal(scan("{\"a\":[1,2,{\"b\":null}]}", &name, err), 0);
    assert_null(name);
    assert_int_equal(scan("{\"model\":null}", &name, err), 0);
    assert_null(name);
    assert_int_equal(scan("{\"model\":7}", &name, err), -EINVAL);
    assert_non_null(strstr(err, "must be a string"));
    assert_int_equal(scan("[\"model\"]", &name, err), -EINVAL);
    assert_non_null(strstr(err, "JSON object"));
    assert_int_equal(scan("{\"a\":\"unterminated}", &name, err), -EINVAL);
    assert_non_null(strstr(err, "not valid JSON"));
    assert_int_equal(scan("{\"a\" 1}", &name, err), -EINVAL);
    assert_int_equal(scan("{\"a\":{\"b\":1}", &name, err), -EINVAL);
}

/* A second top-level "model" is refused by the scan as jansson refuses it in small bodies:
 * the model chosen here and the one llama-server reads would differ. */
static void
scan_refuses_duplicate_model(void **state)
{
    char *name = NULL, err[256];

    (void)state;
    assert_int_equal(scan("{\"model\":\"a\",\"x\":[1],\"model\":\"b\"}", &name, err), -EINVAL);
    assert_null(name);
    assert_non_null(strstr(err, "duplicate"));
    assert_int_equal(scan("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", &name, err), -EINVAL);
    assert_null(name);
    assert_int_equal(scan("{\"model\":\"a\",\"models\":\"b\",\"x\":{\"model\":1}}", &name, err), 0);
    assert_string_equal(name, "a");
    free(name);
}

/* Past 256 KiB, select_model_from_json scans: a 4 MiB body with the model last. */
static void
large_body_is_scanned(void **state)
{
    size_t n = 4u << 20;
    char *body = malloc(n + 64), *name = NULL, err[256];

    (void)state;
    strcpy(body, "{\"prompt\":\"");
    memset(body + 11, 'x', n);
    strcpy(body + 11 + n, "\",\"model\":\"big\"}");
    assert_int_equal(select_model_from_json(body, strlen(body), &name, err, 256), 0);
    assert_string_equal(name, "big");
    free(name);
    free(body);
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

static char *
rewrite(const char *body, const struct select_rewrite *rw)
{
    char *out = NULL;
    size_t len = 0;

    return select_rewrite_body(body, strlen(body), rw, &out, &len) == 1 ? out : NULL;
}

/* llama-swap's order: useModelName, stripParams, setParams (sorted, dotted paths nest), then
 * setParamsByID for the name asked for; "model" is protected from the filters. */
static void
rewrite_filters(void **state)
{
    static char *const strip[] = {"temperature", "model", NULL};
    struct select_rewrite rw = {strip, NULL, "{\"max_tokens\":3,\"model\":\"x\",\"a.b\":true}",
                                "{\"m:hi\":{\"max_tokens\":9,\"p\":{\"q\":1}}}", "m"};
    char *out;

    (void)state;
    out = rewrite("{\"model\":\"m\",\"temperature\":1,\"max_tokens\":100}", &rw);
    assert_string_equal(out, "{\"model\":\"m\",\"max_tokens\":3,\"a\":{\"b\":true}}");
    free(out);
    rw.requested = "m:hi";
    out = rewrite("{\"model\":\"m:hi\",\"a\":5}", &rw);
    assert_string_equal(out, "{\"model\":\"m:hi\",\"a\":{\"b\":true},\"max_tokens\":9,"
                             "\"p\":{\"q\":1}}");
    free(out);
    rw = (struct select_rewrite){NULL, "real", NULL, NULL, NULL};
    out = rewrite("{\"model\":\"alias\"}", &rw);
    assert_string_equal(out, "{\"model\":\"real\"}");
    free(out);
    assert_null(rewrite("[1]", &rw)); /* not an object: sent as is */
    rw = (struct select_rewrite){NULL, NULL, NULL, NULL, NULL};
    assert_null(rewrite("{\"model\":\"m\"}", &rw));
}

/* llama-swap's ResolvePeerModel: the full name exactly, else a bare id one peer alone lists;
 * a bare name that is some peer's full name is that peer's. */
static void
peers_resolve(void **state)
{
    static char *m1[] = {"a", "x/y", "shared", NULL}, *m2[] = {"b", "shared", "y", NULL};
    static const struct conf_peer v[] = {{.name = "p", .models = m1},
                                         {.name = "p/x", .models = m2}};
    const char *model = NULL;
    struct buf out;

    (void)state;
    assert_ptr_equal(peers_find(v, 2, NULL, "p/a", &model), &v[0]);
    assert_string_equal(model, "a");
    assert_ptr_equal(peers_find(v, 2, NULL, "a", &model), &v[0]);
    assert_ptr_equal(peers_find(v, 2, NULL, "b", &model), &v[1]);
    assert_null(peers_find(v, 2, NULL, "shared", &model));           /* two peers list it */
    assert_ptr_equal(peers_find(v, 2, NULL, "p/x/y", &model), NULL); /* p's x/y and p/x's y */
    assert_ptr_equal(peers_find(v, 2, NULL, "p/shared", &model), &v[0]);
    assert_null(peers_find(v, 2, NULL, "nope", &model));
    buf_init(&out, 4096);
    assert_true(peers_list(v, 2, NULL, 7, &out) > 0);
    assert_non_null(strstr(buf_cstr(&out), "\"id\":\"p/x/b\""));
    assert_non_null(strstr(buf_cstr(&out), "\"peerID\":\"p/x\""));
    buf_cleanup(&out);
}

/* Models fetched from a peer (modelsRefresh:) are found and listed beside its configured ones,
 * once each; allow patterns match across '/'. */
static char *const *
fetched_ids(const void *arg, const struct conf_peer *p)
{
    (void)arg;
    static char *ids[] = {"a", "vendor/model-1", NULL};

    return strcmp(p->name, "or") == 0 ? ids : NULL;
}

static void
peers_fetched(void **state)
{
    static char *m1[] = {"a", NULL}, *m2[] = {"b", NULL};
    static const struct conf_peer v[] = {{.name = "or", .models = m1}, {.name = "x", .models = m2}};
    static char *allow[] = {"openai/*", "vendor/model-?", NULL};
    const struct peers_extra x = {fetched_ids, NULL};
    const char *model = NULL;
    struct buf out;

    (void)state;
    assert_ptr_equal(peers_find(v, 2, &x, "or/vendor/model-1", &model), &v[0]);
    assert_string_equal(model, "vendor/model-1");
    assert_ptr_equal(peers_find(v, 2, &x, "vendor/model-1", &model), &v[0]);
    assert_ptr_equal(peers_find(v, 2, &x, "a", &model), &v[0]); /* configured and fetched */
    assert_null(peers_find(v, 2, NULL, "vendor/model-1", &model));
    buf_init(&out, 4096);
    peers_list(v, 2, &x, 7, &out);
    assert_non_null(strstr(buf_cstr(&out), "\"id\":\"or/vendor/model-1\""));
    assert_non_null(strstr(buf_cstr(&out), "\"id\":\"or/a\""));
    assert_null(strstr(strstr(buf_cstr(&out), "\"id\":\"or/a\"") + 1, "\"id\":\"or/a\""));
    buf_cleanup(&out);
    assert_true(peers_allowed(allow, "openai/gpt-4o"));
    assert_true(peers_allowed(allow, "vendor/model-2"));
    assert_false(peers_allowed(allow, "anthropic/claude"));
    assert_true(peers_allowed(NULL, "anything"));
}

/* "stream": true at the top level only; a nested or quoted one, or a false, is no stream. */
static void
wants_stream_top_level_only(void **state)
{
    static const struct {
        const char *body;
        bool yes;
    } cases[] = {
        {"{\"model\":\"a\",\"stream\":true}", true},
        {" { \"stream\" : true , \"x\": 1 }", true},
        {"{\"stream\":false}", false},
        {"{\"stream\":\"true\"}", false},
        {"{\"opts\":{\"stream\":true}}", false},
        {"{\"messages\":[{\"content\":\"\\\"stream\\\":true\"}]}", false},
        {"{\"stream\":truex}", false},
        {"[true]", false},
        {"", false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(select_wants_stream(cases[i].body, strlen(cases[i].body)), cases[i].yes);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_string),
        cmocka_unit_test(scan_top_level_model),
        cmocka_unit_test(scan_refuses_duplicate_model),
        cmocka_unit_test(large_body_is_scanned),
        cmocka_unit_test(no_model_or_empty_body),
        cmocka_unit_test(invalid_json_names_position),
        cmocka_unit_test(model_not_a_string),
        cmocka_unit_test(rewrite_filters),
        cmocka_unit_test(peers_resolve),
        cmocka_unit_test(peers_fetched),
        cmocka_unit_test(wants_stream_top_level_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
