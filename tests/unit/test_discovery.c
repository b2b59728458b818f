#include <sys/stat.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "models/discovery.h"

/* v holds exactly the words given (NULL-terminated). */
static void
assert_words(char **v, ...)
{
    va_list ap;
    const char *w;
    size_t i = 0;

    assert_non_null(v);
    va_start(ap, v);
    while ((w = va_arg(ap, const char *)) != NULL) {
        assert_non_null(v[i]);
        assert_string_equal(v[i], w);
        i++;
    }
    va_end(ap);
    assert_null(v[i]);
}

static void
names_from_paths(void **state)
{
    char *n;
    int part = 0, count = 0;

    (void)state;
    n = models_name_from_path("/m/Qwen2.5-0.5B-Q8_0.gguf");
    assert_string_equal(n, "Qwen2.5-0.5B-Q8_0");
    free(n);
    n = models_name_from_path("/m/big-00001-of-00003.gguf");
    assert_string_equal(n, "big");
    free(n);
    assert_true(models_split_part("/m/big-00002-of-00003.gguf", &part, &count));
    assert_int_equal(part, 2);
    assert_int_equal(count, 3);
    assert_false(models_split_part("/m/big-00004-of-00003.gguf", &part, &count));
    assert_false(models_split_part("/m/big.gguf", &part, &count));
    assert_true(models_is_mmproj("/m/mmproj-big-f16.gguf"));
    assert_false(models_is_mmproj("/m/big.gguf"));
}

static void
hf_cache_and_flag_names(void **state)
{
    char *n, **v;

    (void)state;
    n = models_name_from_path("/h/hub/models--Qwen--Qwen2.5-0.5B-Instruct-GGUF/snapshots/abc/"
                              "qwen2.5-0.5b-instruct-q4_k_m.gguf");
    assert_string_equal(n, "Qwen/Qwen2.5-0.5B-Instruct:q4_k_m");
    free(n);
    n = models_name_from_path("/m/Mistral-7B&c=8192&ngl=99.gguf");
    assert_string_equal(n, "Mistral-7B");
    free(n);
    v = models_flags_from_name("/m/Mistral-7B&c=8192&ngl=99&fa.gguf");
    assert_words(v, "-c", "8192", "-ngl", "99", "-fa", NULL);
    conf_free_args(v);
    assert_null(models_flags_from_name("/m/plain.gguf"));
    /* from issue 9: a value is one argument, whatever it holds */
    v = models_flags_from_name("/m/x&c=1 --host 0.0.0.0.gguf");
    assert_words(v, "-c", "1 --host 0.0.0.0", NULL);
    conf_free_args(v);
}

/* The one rule for both sources: Goinfer's own flags go, with their values. */
static void
reserved_flags_are_dropped(void **state)
{
    char **v;

    (void)state;
    v = models_flags_clean(
        models_flags_from_name("/m/x&-host=0.0.0.0&c=64&-port=1&-api_key=k.gguf"));
    assert_words(v, "-c", "64", NULL);
    conf_free_args(v);
    v = models_flags_clean(models_flags_from_name("/m/x&m=/etc/passwd&-path=/&-model=y.gguf"));
    assert_null(v);
    v = models_flags_clean(models_flags_from_text(
        "llama-server --host 0.0.0.0 --api-key-file /k --api_key=k --model=y -ngl 99 --port\n"));
    assert_words(v, "-ngl", "99", NULL);
    conf_free_args(v);
    /* a reserved flag with no value does not swallow the next flag */
    v = models_flags_clean(models_flags_from_name("/m/x&-host&c=5.gguf"));
    assert_words(v, "-c", "5", NULL);
    conf_free_args(v);
    assert_int_equal(models_flag_reserved("--host"), 1);
    assert_int_equal(models_flag_reserved("--api_key_file"), 1);
    assert_int_equal(models_flag_reserved("--port=1"), 2);
    assert_int_equal(models_flag_reserved("-mm"), 0);
    assert_int_equal(models_flag_reserved("--hostname"), 0);
}

static void
flags_from_companion_script(void **state)
{
    char path[] = "/tmp/goinfer-sh-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "#!/bin/sh\n# tuned for my GPU\n"
                       "/opt/llama-server -m x.gguf --port 8080 \\\n  -ngl 99 --ctx-size 8192 "
                       "--alias 'my model'\n";
    char **f;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    f = models_flags_clean(models_flags_from_script(path));
    assert_words(f, "-ngl", "99", "--ctx-size", "8192", "--alias", "my model", NULL);
    conf_free_args(f);
    assert_null(models_flags_from_script("/nonexistent.sh"));
    /* from review: '#' inside quotes, --port=N, exec and "$@" */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    text = "exec llama-server --port=9 --host=0.0.0.0 --alias 'a#b' -c 64 \"$@\" # note\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    f = models_flags_clean(models_flags_from_script(path));
    assert_words(f, "--alias", "a#b", "-c", "64", NULL);
    conf_free_args(f);
    unlink(path);
}

static void
touch(const char *dir, const char *name)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("GGUF", f);
    fclose(f);
}

/* A tree with a split model, a projector, a duplicate name, a symlink loop and a non-model. */
static void
walks_tree(void **state)
{
    char root[] = "/tmp/goinfer-test-XXXXXX", sub[64], link[80], err[512];
    struct model_list l;
    const struct model_entry *e;

    (void)state;
    assert_non_null(mkdtemp(root));
    snprintf(sub, sizeof(sub), "%s/sub", root);
    assert_int_equal(mkdir(sub, 0700), 0);
    touch(root, "a.gguf");
    touch(root, "notes.txt");
    touch(sub, "b-00001-of-00002.gguf");
    touch(sub, "b-00002-of-00002.gguf");
    touch(sub, "mmproj-b.gguf");
    touch(sub, "a.gguf");
    snprintf(link, sizeof(link), "%s/loop", sub);
    assert_int_equal(symlink(root, link), 0);
    assert_int_equal(models_discover(root, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 2);
    e = model_list_find(&l, "b", 1);
    assert_non_null(e);
    assert_int_equal(e->shards, 2);
    assert_non_null(e->mmproj);
    assert_non_null(strstr(e->mmproj, "mmproj-b.gguf"));
    e = model_list_find(&l, "a", 1);
    assert_non_null(e);
    assert_null(e->mmproj);
    model_list_cleanup(&l);
}

static void
missing_root_is_a_clear_error(void **state)
{
    char err[512];
    struct model_list l;

    (void)state;
    assert_true(models_discover("/nonexistent/models", &l, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "/nonexistent/models"));
    assert_non_null(strstr(err, "GI_MODELS_DIR"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_from_paths),
        cmocka_unit_test(hf_cache_and_flag_names),
        cmocka_unit_test(flags_from_companion_script),
        cmocka_unit_test(reserved_flags_are_dropped),
        cmocka_unit_test(walks_tree),
        cmocka_unit_test(missing_root_is_a_clear_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
