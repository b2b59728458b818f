#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "router/router.h"

static void
listen_addresses(void **state)
{
    struct conf_listen l;
    char err[256];

    (void)state;
    assert_int_equal(conf_parse_listen(":4444", "goinfer", "127.0.0.1", &l, err, 256), 0);
    assert_string_equal(l.host, "127.0.0.1");
    assert_int_equal(l.port, 4444);
    assert_int_equal(l.services, ROUTER_SVC_GOINFER);
    free(l.host);
    assert_int_equal(conf_parse_listen("[::1]:5555", "llama-swap, admin", "x", &l, err, 256), 0);
    assert_string_equal(l.host, "::1");
    assert_int_equal(l.services, ROUTER_SVC_OPENAI | ROUTER_SVC_ADMIN);
    free(l.host);
    assert_int_equal(conf_parse_listen(":http", "goinfer", "x", &l, err, 256), -EINVAL);
    assert_non_null(strstr(err, "port"));
    assert_int_equal(conf_parse_listen(":1", "gopher", "x", &l, err, 256), -EINVAL);
    assert_non_null(strstr(err, "gopher"));
}

static void
split_args_like_a_shell(void **state)
{
    char **v;

    (void)state;
    assert_int_equal(conf_split_args("  --props -c 512 --name 'a b' \"c\\\"d\" ", &v), 6);
    assert_string_equal(v[0], "--props");
    assert_string_equal(v[4], "a b");
    assert_string_equal(v[5], "c\"d");
    assert_null(v[6]);
    conf_free_args(v);
    assert_int_equal(conf_split_args("--x 'open", &v), -EINVAL);
    assert_int_equal(conf_split_args("", &v), 0);
    conf_free_args(v);
}

static char *
write_tmp(const char *text)
{
    char *path = strdup("/tmp/goinfer-conf-XXXXXX");
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int
load(const char *text, struct conf *c, char *err)
{
    char *path = write_tmp(text);
    char *argv[] = {"goinfer", "-config", path, NULL};
    int rc;

    unsetenv("GI_MODELS_DIR");
    unsetenv("GI_API_KEY");
    rc = conf_load(c, 3, argv, err, 512);
    unlink(path);
    free(path);
    return rc;
}

static void
yaml_file_and_env(void **state)
{
    struct conf c;
    char err[512];

    (void)state;
    assert_int_equal(load("models_dir: /m\napi_key: k1\norigins:\n  - http://localhost\n"
                          "listen:\n  \":0\": goinfer,openai\nllama:\n  exe: /bin/true\n"
                          "  args:\n    common: --props\n",
                          &c, err),
                     0);
    assert_string_equal(c.models_dir, "/m");
    assert_string_equal(c.api_key, "k1");
    assert_int_equal(c.n_origins, 1);
    assert_int_equal(c.n_listen, 1);
    assert_int_equal(c.listen[0].services, ROUTER_SVC_GOINFER | ROUTER_SVC_OPENAI);
    assert_string_equal(c.args_common, "--props");
    conf_cleanup(&c);
    setenv("GI_LLAMA_EXE", "/env/llama", 1);
    assert_int_equal(load("llama:\n  exe: /file/llama\n", &c, err), 0);
    assert_string_equal(c.llama_exe, "/env/llama"); /* environment over file */
    assert_int_equal(c.n_listen, 2);                /* the seed's defaults */
    unsetenv("GI_LLAMA_EXE");
    conf_cleanup(&c);
}

static void
yaml_errors_name_line_and_key(void **state)
{
    struct conf c;
    char err[512];

    (void)state;
    assert_int_equal(load("models_dir: /m\nmodel_dir: /typo\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, ":2: unknown key 'model_dir'"));
    assert_non_null(strstr(err, "models_dir"));
    conf_cleanup(&c);
    assert_int_equal(load("listen:\n  \":44x\": goinfer\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, ":2: listen:"));
    conf_cleanup(&c);
    assert_int_equal(load("llama: [1, 2\n", &c, err), -EINVAL);
    conf_cleanup(&c);
}

static void
unknown_flag(void **state)
{
    struct conf c;
    char err[512];
    char *argv[] = {"goinfer", "-frobnicate", NULL};

    (void)state;
    assert_int_equal(conf_load(&c, 2, argv, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "-frobnicate"));
    conf_cleanup(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(listen_addresses),
        cmocka_unit_test(split_args_like_a_shell),
        cmocka_unit_test(yaml_file_and_env),
        cmocka_unit_test(yaml_errors_name_line_and_key),
        cmocka_unit_test(unknown_flag),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
