#include <fcntl.h>
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"

static char got[4096];
static size_t got_len;

static void
keep_line(void *arg, const char *line, size_t len)
{
    (void)arg;
    got_len = len < sizeof(got) - 1 ? len : sizeof(got) - 1;
    memcpy(got, line, got_len);
    got[got_len] = '\0';
}

static void
append(void *arg, const char *text, size_t len)
{
    strncat(arg, text, len < 65536 ? len : 65536);
}

/* Told apart by the C library's own classification (C locale), not log.c's test. */
static bool
has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (iscntrl((unsigned char)s[i]))
            return true;
    return false;
}

static void
escapes_each_control_byte(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(log_escape(out, sizeof(out), "a\nb\rc\td", 7), 10);
    assert_string_equal(out, "a\\nb\\rc\\td");
    assert_int_equal(log_escape(out, sizeof(out), "\x1b[2J\x7f\0z", 7), 16);
    assert_string_equal(out, "\\x1b[2J\\x7f\\x00z");
    assert_int_equal(log_escape(out, sizeof(out), "caf\xc3\xa9 \\n", 8), 8); /* UTF-8 stays */
    assert_string_equal(out, "caf\xc3\xa9 \\n");
    assert_int_equal(log_escape(out, 6, "ab\x01", 3), 2); /* "\x01" does not fit whole */
    assert_string_equal(out, "ab");
    assert_int_equal(log_escape(out, 0, "x", 1), 0);
}

/* What a request can put in a model name reaches stderr, /logs and /logs/stream on one line. */
static void
a_message_cannot_forge_a_line(void **state)
{
    char *hist = calloc(1, 300 * 1024), *err = calloc(1, 8192);
    struct log_sub *sub = log_subscribe(keep_line, NULL);
    FILE *tmp = tmpfile();
    int saved = dup(2);

    (void)state;
    assert_non_null(tmp);
    assert_int_not_equal(dup2(fileno(tmp), 2), -1);
    log_info("req=1 model=%s status=404", "x\r\n2026-01-01T00:00:00.000Z info req=2 GET /admin");
    assert_int_not_equal(dup2(saved, 2), -1);
    close(saved);
    assert_false(has_control(got, got_len));
    assert_non_null(strstr(got, " info req=1 model=x\\r\\n2026-01-01T00:00:00.000Z info req=2"));
    rewind(tmp);
    assert_true(fread(err, 1, 8191, tmp) > 0);
    assert_ptr_equal(strchr(err, '\n'), err + strlen(err) - 1); /* one line, ended once */
    assert_non_null(strstr(err, "model=x\\r\\n2026"));
    fclose(tmp);

    log_capture("[llama-server] \x1b]0;pwned\x07 done", 30); /* a child's output too */
    assert_string_equal(got, "[llama-server] \\x1b]0;pwned\\x07 done");
    log_history(append, hist);
    assert_non_null(strstr(hist, "model=x\\r\\n2026"));
    assert_non_null(strstr(hist, "\\x1b]0;pwned\\x07 done\n"));
    for (char *p = hist; *p; p++)
        assert_true(*p == '\n' || !has_control(p, 1));
    log_unsubscribe(sub);
    free(hist);
    free(err);
}

/* Control bytes escaped past the message buffer's size: the line is cut, never an escape. */
static void
long_messages_are_cut_between_escapes(void **state)
{
    char *big = malloc(4000);
    struct log_sub *sub = log_subscribe(keep_line, NULL);
    int saved, devnull = open("/dev/null", O_WRONLY);

    (void)state;
    memset(big, '\n', 3999);
    big[3999] = '\0';
    log_set_level(LOG_LEVEL_WARN);
    log_info("%s", big); /* below the level: not formatted, not stored */
    got_len = 0;
    saved = dup(2);
    assert_int_not_equal(dup2(devnull, 2), -1); /* 2 KiB of "\\n" on the terminal helps no one */
    log_warnx("%s", big);
    assert_int_not_equal(dup2(saved, 2), -1);
    close(saved);
    close(devnull);
    assert_true(got_len > 2000 && got_len < 2200);
    assert_false(has_control(got, got_len));
    assert_memory_equal(got + got_len - 2, "\\n", 2);
    log_set_level(LOG_LEVEL_INFO);
    log_unsubscribe(sub);
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes_each_control_byte),
        cmocka_unit_test(a_message_cannot_forge_a_line),
        cmocka_unit_test(long_messages_are_cut_between_escapes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
