/* How a model's argv is built: file names and config values stay one argument each. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proc/argv.h"
#include "conf/conf.h"
#include "conf/swapconf.h"
#include "models/catalog.h"

/* argv holds exactly the words given (NULL-terminated). */
static void
assert_argv(int argc, char **argv, ...)
{
    va_list ap;
    const char *w;
    int i = 0;

    assert_non_null(argv);
    va_start(ap, argv);
    while ((w = va_arg(ap, const char *)) != NULL) {
        assert_true(i < argc);
        assert_string_equal(argv[i], w);
        i++;
    }
    va_end(ap);
    assert_int_equal(i, argc);
    assert_null(argv[i]);
}

/* from issue 9: names and flags taken from file names */
static void
discovered_model_names_stay_one_argument(void **state)
{
    char *args[] = {"-c", "512", "--metrics-name", "${MODEL_ID}@${PORT}", NULL};
    char *flags[] = {"-ngl", "99", "--host", "0.0.0.0", "--port=1", "-c", "${PORT}", NULL};
    struct model_def d = {.name = "m --host 0.0.0.0",
                          .exe = "/bin/llama-server",
                          .path = "/m/${PORT} dir/m --host 0.0.0.0.gguf",
                          .args = args,
                          .flags = flags};
    char **argv = NULL;
    int n;

    (void)state;
    n = catalog_argv(&d, "4242", &argv);
    assert_argv(n, argv, "/bin/llama-server", "-m", "/m/${PORT} dir/m --host 0.0.0.0.gguf",
                "--host", "127.0.0.1", "--port", "4242", "--alias", "m --host 0.0.0.0", "-c", "512",
                "--metrics-name", "m --host 0.0.0.0@4242", "-ngl", "99", "-c", "${PORT}", NULL);
    proc_argv_free(argv);
    d.name = "${PORT}";
    d.mmproj = "/m/mmproj x.gguf";
    d.args = NULL;
    d.flags = NULL;
    n = catalog_argv(&d, "7", &argv);
    assert_argv(n, argv, "/bin/llama-server", "-m", "/m/${PORT} dir/m --host 0.0.0.0.gguf",
                "--mmproj", "/m/mmproj x.gguf", "--host", "127.0.0.1", "--port", "7", "--alias",
                "${PORT}", NULL);
    proc_argv_free(argv);
}

/* A configured cmd is split first, then filled: a value never makes or joins words. */
static void
configured_cmd_is_split_before_it_is_filled(void **state)
{
    struct model_def d = {.name = "a b ${PORT} 'c",
                          .cmd = "srv --port ${PORT} --alias ${MODEL_ID} -m '/m/${MODEL_ID}.gguf'"};
    const struct proc_var vars[] = {{"PID", "12"}, {"MODEL_ID", "x y"}};
    char **argv = NULL;
    int n;

    (void)state;
    n = catalog_argv(&d, "9", &argv);
    assert_argv(n, argv, "srv", "--port", "9", "--alias", "a b ${PORT} 'c", "-m",
                "/m/a b ${PORT} 'c.gguf", NULL);
    proc_argv_free(argv);
    d.cmd = "srv 'unclosed";
    assert_int_equal(catalog_argv(&d, "9", &argv), -EINVAL);
    n = proc_argv_fill("kill ${PID} ${UNKNOWN} ${a ${PID}} ${MODEL_ID}", vars, 2, &argv);
    assert_argv(n, argv, "kill", "12", "${UNKNOWN}", "${a", "12}", "x y", NULL);
    proc_argv_free(argv);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(discovered_model_names_stay_one_argument),
        cmocka_unit_test(configured_cmd_is_split_before_it_is_filled),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
