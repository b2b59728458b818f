/* libFuzzer target: whatever bytes a peer gets into a log line (a model name from a request or
 * a GPU machine's registration, a file name, a child's output), the line the subscribers get
 * and the history keeps holds no control byte, and the escape keeps every other byte as it is. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char line[1 << 16], tail[(1 << 16) + 1]; /* a line is cut at 64 KiB */
static size_t line_len, tail_len, lines;

static void
check_line(void *arg, const char *s, size_t len)
{
    (void)arg;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            abort();
    if (len >= sizeof(line))
        abort();
    memcpy(line, s, len);
    line_len = len;
    lines++;
}

/* Keeps the history's last line_len + 1 bytes: the newest line and its newline. */
static void
keep_tail(void *arg, const char *text, size_t len)
{
    size_t want = line_len + 1, keep;

    (void)arg;
    if (len >= want) {
        memcpy(tail, text + len - want, want);
        tail_len = want;
        return;
    }
    keep = tail_len + len > want ? want - len : tail_len;
    memmove(tail, tail + tail_len - keep, keep);
    memcpy(tail + keep, text, len);
    tail_len = keep + len;
}

/* Reading the escapes back gives the input, up to where it was cut. A backslash stays as it is;
 * an escape stands only for a control byte, so a byte equal to the input's is always itself. */
static void
check_round_trip(const uint8_t *data, size_t size, const char *out, size_t len)
{
    size_t i = 0, o = 0;

    for (; o < len; i++) {
        unsigned char c = o + 1 < len ? (unsigned char)out[o + 1] : 0;
        unsigned want = c == 'n' ? '\n' : c == 'r' ? '\r' : '\t';

        if (i >= size)
            abort();
        if (data[i] == (unsigned char)out[o]) {
            o++;
            continue;
        }
        if (out[o] != '\\' || (data[i] >= 0x20 && data[i] != 0x7f))
            abort();
        if (c == 'x' && o + 3 < len)
            want = (unsigned)strtoul((char[3]){out[o + 2], out[o + 3], 0}, NULL, 16);
        else if (c != 'n' && c != 'r' && c != 't')
            abort();
        if (data[i] != want)
            abort();
        o += c == 'x' ? 4 : 2;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct log_sub *sub;
    size_t cap = size % 97 + 1, len;
    char *out = malloc(size * 4 + 1), *small = malloc(cap);

    if (sub == NULL)
        sub = log_subscribe(check_line, NULL);
    len = log_escape(out, size * 4 + 1, (const char *)data, size);
    if (len != strlen(out))
        abort();
    check_round_trip(data, size, out, len);
    len = log_escape(small, cap, (const char *)data, size); /* cut, never inside an escape */
    if (len >= cap || len != strlen(small))
        abort();
    check_round_trip(data, size, small, len);
    lines = 0;
    log_capture((const char *)data, size);
    if (lines != 1)
        abort();
    tail_len = 0;
    log_history(keep_tail, NULL); /* the history kept what the subscribers got */
    if (tail_len != line_len + 1 || memcmp(tail, line, line_len) != 0 || tail[line_len] != '\n')
        abort();
    free(out);
    free(small);
    return 0;
}
