#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HISTORY_BYTES (256 * 1024)

enum log_level log_threshold = LOG_LEVEL_INFO;
static bool json_lines;

struct log_sub {
    log_line_cb cb;
    void *arg;
    struct log_sub *next;
};

static char history[HISTORY_BYTES]; /* a ring of whole lines */
static size_t hist_start, hist_len;
static struct log_sub *subs;
static bool broadcasting;

/* True when s holds a byte that must not reach a log line as it is: a C0 control (newline,
 * carriage return, ESC...) or DEL. One pass, no copy: nearly every message has none. */
static bool
has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return true;
    return false;
}

/* Writes c, or its escape, to e; returns how many bytes. */
static size_t
escape_byte(unsigned char c, char e[4])
{
    static const char hex[] = "0123456789abcdef";

    e[0] = (char)c;
    if (c >= 0x20 && c != 0x7f)
        return 1;
    e[0] = '\\';
    if (c == '\n' || c == '\r' || c == '\t') {
        e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        return 2;
    }
    e[1] = 'x';
    e[2] = hex[c >> 4];
    e[3] = hex[c & 15];
    return 4;
}

size_t
log_escape(char *out, size_t outlen, const char *in, size_t len)
{
    size_t o = 0;
    char e[4];

    if (outlen == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        size_t n = escape_byte((unsigned char)in[i], e);

        if (o + n >= outlen)
            break; /* truncated, never inside an escape */
        memcpy(out + o, e, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

/* Drops whole lines from the front until n more bytes fit. */
static void
history_make_room(size_t n)
{
    while (hist_len > 0 && hist_len + n > HISTORY_BYTES) {
        size_t first =
            HISTORY_BYTES - hist_start < hist_len ? HISTORY_BYTES - hist_start : hist_len;
        const char *nl = memchr(history + hist_start, '\n', first);
        size_t skip = nl ? (size_t)(nl - (history + hist_start)) + 1 : hist_len;

        if (nl == NULL && first < hist_len) { /* the line wraps round the ring */
            nl = memchr(history, '\n', hist_len - first);
            skip = nl ? first + (size_t)(nl - history) + 1 : hist_len;
        }
        hist_start = (hist_start + skip) % HISTORY_BYTES;
        hist_len -= skip;
    }
}

/* Appends n bytes at the ring's end, in at most two copies. */
static void
history_put(const char *s, size_t n)
{
    size_t at = (hist_start + hist_len) % HISTORY_BYTES;
    size_t first = HISTORY_BYTES - at < n ? HISTORY_BYTES - at : n;

    memcpy(history + at, s, first);
    memcpy(history, s + first, n - first);
    hist_len += n;
}

/* Stores a line known to hold no control byte, and passes it to the subscribers. */
static void
capture(const char *line, size_t len)
{
    if (len + 1 > HISTORY_BYTES / 4)
        len = HISTORY_BYTES / 4 - 1;
    history_make_room(len + 1);
    history_put(line, len);
    history_put("\n", 1);
    if (broadcasting)
        return;
    broadcasting = true;
    for (struct log_sub *s = subs, *next; s != NULL; s = next) {
        next = s->next;
        s->cb(s->arg, line, len);
    }
    broadcasting = false;
}

void
log_capture(const char *line, size_t len)
{
    char *esc;

    if (!has_control(line, len)) {
        capture(line, len);
        return;
    }
    esc = malloc(len * 4 + 1);
    if (esc == NULL)
        fatalx("out of memory");
    capture(esc, log_escape(esc, len * 4 + 1, line, len));
    free(esc);
}

void
log_history(log_line_cb cb, void *arg)
{
    size_t first = HISTORY_BYTES - hist_start;

    if (hist_len <= first) {
        cb(arg, history + hist_start, hist_len);
        return;
    }
    cb(arg, history + hist_start, first);
    cb(arg, history, hist_len - first);
}

struct log_sub *
log_subscribe(log_line_cb cb, void *arg)
{
    struct log_sub *s = calloc(1, sizeof(*s));

    if (s == NULL)
        fatalx("out of memory");
    s->cb = cb;
    s->arg = arg;
    s->next = subs;
    subs = s;
    return s;
}

void
log_unsubscribe(struct log_sub *s)
{
    for (struct log_sub **pp = &subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            free(s);
            return;
        }
    }
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
log_set_json(bool json)
{
    json_lines = json;
}

/* The length of the UTF-8 sequence at s (at most n bytes), or 0 when it is not one. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xe0) == 0xc0 ? 2
                 : (s[0] & 0xf0) == 0xe0 ? 3
                 : (s[0] & 0xf8) == 0xf0 ? 4
                                         : 0;

    if (len == 0 || len > n || (len == 2 && s[0] < 0xc2))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Appends s (n bytes, no control byte: vlog escaped them) as a JSON string's contents; a byte
 * that is not UTF-8 (a client's, in a model name) becomes U+FFFD, so the line stays JSON. */
static void
json_put(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len((const unsigned char *)s + i, n - i);

        if (k == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        if (s[i] == '"' || s[i] == '\\')
            fputc('\\', f);
        fwrite(s + i, 1, k, f);
        i += k;
    }
}

/* The last occurrence of needle that starts in [begin, end), or NULL. */
static const char *
last_of(const char *begin, const char *end, const char *needle)
{
    size_t n = strlen(needle);

    if (end - begin < (ptrdiff_t)n)
        return NULL;
    for (const char *p = end - n; p >= begin; p--)
        if (memcmp(p, needle, n) == 0)
            return p;
    return NULL;
}

/* A number as the access line writes it (digits and a point): JSON as it is. */
static bool
is_number(const char *v, size_t n)
{
    return n > 0 && n < 32 && strspn(v, "0123456789.") >= n && v[0] != '.';
}

static void
json_field(FILE *f, const char *key, const char *v, size_t n)
{
    if (is_number(v, n) && strcmp(key, "model") != 0 && strcmp(key, "backend") != 0 &&
        strcmp(key, "client") != 0) {
        fprintf(f, ",\"%s\":%.*s", key, (int)n, v);
        return;
    }
    fprintf(f, ",\"%s\":\"", key);
    json_put(f, v, n);
    fputc('"', f);
}

/*
 * The access line's fields ("req=ID METHOD PATH model=M backend=B status=S bytes=N ttfb=Xms
 * total=Yms client=C") as JSON fields of their own. They are found from the right: only the
 * model comes from a client and may hold anything, " status=" included; every value is a
 * JSON string unless it is a plain number. A line that is not an access line adds nothing.
 */
static void
json_access_fields(FILE *f, const char *m)
{
    static const char *const keys[] = {"client", "total",   "ttfb", "bytes",
                                       "status", "backend", "model"};

    enum { N_KEYS = sizeof(keys) / sizeof(keys[0]) };

    const char *sp1 = strchr(m, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    const char *end = m + strlen(m), *v[N_KEYS];
    size_t n[N_KEYS];

    if (strncmp(m, "req=", 4) != 0 || sp2 == NULL)
        return;
    for (size_t i = 0; i < N_KEYS; i++) {
        char want[16];
        const char *p;
        size_t k = (size_t)snprintf(want, sizeof(want), " %s=", keys[i]);

        p = last_of(sp2, end, want);
        if (p == NULL)
            return;
        v[i] = p + k;
        n[i] = (size_t)(end - v[i]);
        if ((i == 1 || i == 2) && n[i] > 2) /* "1.5ms" */
            n[i] -= 2;
        end = p;
    }
    json_field(f, "req", m + 4, (size_t)(sp1 - m - 4));
    json_field(f, "method", sp1 + 1, (size_t)(sp2 - sp1 - 1));
    json_field(f, "path", sp2 + 1, (size_t)(end - sp2 - 1));
    for (size_t i = N_KEYS; i-- > 0;) {
        char key[16];

        snprintf(key, sizeof(key), "%s%s", keys[i], i == 1 || i == 2 ? "_ms" : "");
        json_field(f, key, v[i], n[i]);
    }
}

/* One JSON line on stderr: time, level, msg, and an access line's fields. */
static void
json_line(const char *stamp, enum log_level level, const char *m, const char *err)
{
    flockfile(stderr);
    fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", stamp, level_names[level]);
    json_put(stderr, m, strlen(m));
    if (err != NULL) {
        fputs(": ", stderr);
        json_put(stderr, err, strlen(err));
    }
    fputc('"', stderr);
    json_access_fields(stderr, m);
    fputs("}\n", stderr);
    funlockfile(stderr);
}

void
log_set_level(enum log_level level)
{
    log_threshold = level;
}

/* Formats one line: "2026-11-24T17:00:00.123Z info message[: strerror]", the message's control
 * bytes escaped: whatever a caller passes (a model name from a request, a file name, a GPU
 * machine's registration), it stays inside its own line, on stderr, in /logs and the streams. */
static void vlog(enum log_level level, int saved_errno, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
vlog(enum log_level level, int saved_errno, const char *fmt, va_list ap)
{
    char msg[2048], esc[2048], line[2200], stamp[40];
    const char *m = msg;
    struct timespec ts;
    struct tm tm;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    if (has_control(msg, strlen(msg))) {
        log_escape(esc, sizeof(esc), msg, strlen(msg));
        m = esc;
    }
    if (saved_errno != 0)
        n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s: %s", stamp, ts.tv_nsec / 1000000,
                     level_names[level], m, strerror(saved_errno));
    else
        n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s", stamp, ts.tv_nsec / 1000000,
                     level_names[level], m);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    if (json_lines) {
        char iso[64];

        snprintf(iso, sizeof(iso), "%s.%03ldZ", stamp, ts.tv_nsec / 1000000);
        json_line(iso, level, m, saved_errno != 0 ? strerror(saved_errno) : NULL);
    } else {
        fprintf(stderr, "%s\n", line);
    }
    capture(line, (size_t)n);
}

void
log_emit(enum log_level level, bool with_errno, const char *fmt, ...)
{
    int saved_errno = with_errno ? errno : 0;
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    vlog(level, saved_errno, fmt, ap);
    va_end(ap);
}

void
fatal(const char *fmt, ...)
{
    int saved_errno = errno;
    va_list ap;

    va_start(ap, fmt);
    vlog(LOG_LEVEL_ERROR, saved_errno, fmt, ap);
    va_end(ap);
    exit(1);
}

void
fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
    va_end(ap);
    exit(1);
}
