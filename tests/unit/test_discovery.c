#include <sys/stat.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc/argv.h"
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
    proc_argv_free(v);
    assert_null(models_flags_from_name("/m/plain.gguf"));
    /* from issue 9: a value is one argument, whatever it holds */
    v = models_flags_from_name("/m/x&c=1 --host 0.0.0.0.gguf");
    assert_words(v, "-c", "1 --host 0.0.0.0", NULL);
    proc_argv_free(v);
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
    proc_argv_free(v);
    v = models_flags_clean(models_flags_from_name("/m/x&m=/etc/passwd&-path=/&-model=y.gguf"));
    assert_null(v);
    v = models_flags_clean(models_flags_from_text(
        "llama-server --host 0.0.0.0 --api-key-file /k --api_key=k --model=y -ngl 99 --port\n"));
    assert_words(v, "-ngl", "99", NULL);
    proc_argv_free(v);
    /* a reserved flag with no value does not swallow the next flag */
    v = models_flags_clean(models_flags_from_name("/m/x&-host&c=5.gguf"));
    assert_words(v, "-c", "5", NULL);
    proc_argv_free(v);
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
    proc_argv_free(f);
    assert_null(models_flags_from_script("/nonexistent.sh"));
    /* from review: '#' inside quotes, --port=N, exec and "$@" */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    text = "exec llama-server --port=9 --host=0.0.0.0 --alias 'a#b' -c 64 \"$@\" # note\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    f = models_flags_clean(models_flags_from_script(path));
    assert_words(f, "--alias", "a#b", "-c", "64", NULL);
    proc_argv_free(f);
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
put_u32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {v & 0xff, v >> 8 & 0xff, v >> 16 & 0xff, v >> 24 & 0xff};

    fwrite(b, 1, 4, f);
}

static void
put_u64(FILE *f, uint64_t v)
{
    put_u32(f, (uint32_t)v);
    put_u32(f, (uint32_t)(v >> 32));
}

static void
put_str(FILE *f, const char *s)
{
    put_u64(f, strlen(s));
    fwrite(s, 1, strlen(s), f);
}

/* A GGUF v3 header: general.architecture arch, then key = n as a u32 (key may be NULL). */
static void
gguf_file(const char *dir, const char *name, const char *arch, const char *key, uint32_t n)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, 0);
    put_u64(f, key ? 2 : 1);
    put_str(f, "general.architecture");
    put_u32(f, 8); /* string */
    put_str(f, arch);
    if (key) {
        put_str(f, key);
        put_u32(f, 4); /* u32 */
        put_u32(f, n);
    }
    assert_int_equal(fclose(f), 0);
}

/* The projector of folder/model in l, or NULL. */
static const char *
projector_of(const struct model_list *l, const char *name)
{
    const struct model_entry *e = model_list_find(l, name, strlen(name));

    assert_non_null(e);
    return e->mmproj ? strrchr(e->mmproj, '/') + 1 : NULL;
}

static void
subdir(char *out, size_t len, const char *root, const char *name)
{
    snprintf(out, len, "%s/%s", root, name);
    assert_int_equal(mkdir(out, 0700), 0);
}

/* from issue 9: a projector went to every model in its folder; a text model beside a vision
 * model then got --mmproj and could not start */
static void
projector_goes_to_its_own_model_only(void **state)
{
    char root[] = "/tmp/goinfer-mmproj-XXXXXX", d[128], err[512];
    struct model_list l;

    (void)state;
    assert_non_null(mkdtemp(root));
    subdir(d, sizeof(d), root, "mixed"); /* the issue's case */
    gguf_file(d, "tiny-v.gguf", "llama", "llama.embedding_length", 64);
    gguf_file(d, "mmproj-tiny-v.gguf", "clip", "clip.vision.projection_dim", 64);
    gguf_file(d, "tiny-t.gguf", "llama", "llama.embedding_length", 64);
    subdir(d, sizeof(d), root, "hf"); /* one model in two quantizations, a generic name */
    touch(d, "gemma-3-4b-it-Q4_K_M.gguf");
    touch(d, "gemma-3-4b-it-Q8_0.gguf");
    touch(d, "mmproj-F16.gguf");
    subdir(d, sizeof(d), root, "two"); /* two models, a generic name: nobody can tell */
    touch(d, "alpha-Q4_K_M.gguf");
    touch(d, "beta-Q4_K_M.gguf");
    touch(d, "mmproj-model-f16.gguf");
    subdir(d, sizeof(d), root, "llava"); /* a shorter name, held in the model's */
    touch(d, "llava-v1.6-mistral-7b.Q4_K_M.gguf");
    touch(d, "mmproj-mistral7b-f16.gguf");
    touch(d, "phi-3-mini.gguf");
    subdir(d, sizeof(d), root, "dims"); /* the header says it feeds another size */
    gguf_file(d, "wide.gguf", "llama", "llama.embedding_length", 64);
    gguf_file(d, "wide-mmproj-f16.gguf", "clip", "clip.vision.projection_dim", 128);
    assert_int_equal(models_discover(root, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 9);
    assert_string_equal(projector_of(&l, "tiny-v"), "mmproj-tiny-v.gguf");
    assert_null(projector_of(&l, "tiny-t"));
    assert_string_equal(projector_of(&l, "gemma-3-4b-it-Q4_K_M"), "mmproj-F16.gguf");
    assert_string_equal(projector_of(&l, "gemma-3-4b-it-Q8_0"), "mmproj-F16.gguf");
    assert_null(projector_of(&l, "alpha-Q4_K_M"));
    assert_null(projector_of(&l, "beta-Q4_K_M"));
    assert_string_equal(projector_of(&l, "llava-v1.6-mistral-7b.Q4_K_M"),
                        "mmproj-mistral7b-f16.gguf");
    assert_null(projector_of(&l, "phi-3-mini"));
    assert_null(projector_of(&l, "wide"));
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
        cmocka_unit_test(projector_goes_to_its_own_model_only),
        cmocka_unit_test(missing_root_is_a_clear_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
