/* Model file names the admin API takes (uploads, downloads, deletes), and split part numbers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "admin/files.h"
#include "core/strv.h"

static int
check(const char *name)
{
    char err[256];

    return admin_file_name_check(name, strlen(name), err, sizeof(err));
}

static void
names(void **state)
{
    static const char *const good[] = {"a.gguf", "Qwen3-0.6B-Q4_K_M.gguf", "m-00001-of-00003.gguf",
                                       "m-00003-of-00003.gguf", "with space.gguf"};
    static const char *const bad[] = {"",
                                      ".gguf",
                                      ".hidden.gguf",
                                      "../a.gguf",
                                      "a/b.gguf",
                                      "a\\b.gguf",
                                      "a..b.gguf",
                                      "a.bin",
                                      "a.GGUF.sh",
                                      "x\n.gguf",
                                      "gguf",
                                      "a\x7f.gguf",
                                      "m-00000-of-00003.gguf",
                                      "m-00004-of-00003.gguf"};
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(check(good[i]), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(check(bad[i]), -EINVAL);
    assert_int_equal(admin_file_name_check("a\0b.gguf", 8, err, sizeof(err)), -EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname + 295, ".gguf", 5);
    assert_int_equal(admin_file_name_check(longname, 300, err, sizeof(err)), -EINVAL);
}

static void
split(void **state)
{
    unsigned no, count;

    (void)state;
    admin_file_split("m-00002-of-00005.gguf", &no, &count);
    assert_int_equal(no, 2);
    assert_int_equal(count, 5);
    admin_file_split("m.gguf", &no, &count);
    assert_int_equal(no + count, 0);
    admin_file_split("m-0002-of-00005.gguf", &no, &count);
    assert_int_equal(no + count, 0);
    admin_file_split("-00002-of-00005.gguf", &no, &count); /* no stem */
    assert_int_equal(no + count, 0);
}

static void
roots(void **state)
{
    char **v = admin_files_roots("/a::/b/c:");

    (void)state;
    assert_int_equal(strv_len(v), 2);
    assert_string_equal(v[0], "/a");
    assert_string_equal(v[1], "/b/c");
    strv_free(v);
    assert_null(admin_files_roots(""));
    assert_null(admin_files_roots(NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names),
        cmocka_unit_test(split),
        cmocka_unit_test(roots),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
