#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HISTORY_BYTES (256 * 1024)

enum log_level log_threshold = LOG_LEVEL_INFO;

struct log_sub {
    log_line_cb cb;
    void *arg;
    struct log_sub *next;
};

static char history[HISTORY_BYTES]; /* a ring of whole lines */
static size_t hist_start, hist_len;
static struct log_sub *subs;
static bool broadcasting;

/* Drops whole lines from the front until n more bytes fit. */
static void
history_make_room(size_t n)
{
    while (hist_len > 0 && hist_len + n > HISTORY_BYTES) {
        size_t skip = 0;

        while (skip < hist_len && history[(hist_start + skip) % HISTORY_BYTES] != '\n')
            skip++;
        skip = skip < hist_len ? skip + 1 : hist_len;
        hist_start = (hist_start + skip) % HISTORY_BYTES;
        hist_len -= skip;
    }
}

void
log_capture(const char *line, size_t len)
{
    if (len + 1 > HISTORY_BYTES / 4)
        len = HISTORY_BYTES / 4 - 1;
    history_make_room(len + 1);
    for (size_t i = 0; i <= len; i++)
        history[(hist_start + hist_len + i) % HISTORY_BYTES] = i < len ? line[i] : '\n';
    hist_len += len + 1;
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
log_set_level(enum log_level level)
{
    log_threshold = level;
}

/* Formats one line: "2026-11-24T17:00:00.123Z info message[: strerror]". */
static void vlog(enum log_level level, int saved_errno, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
vlog(enum log_level level, int saved_errno, const char *fmt, va_list ap)
{
    char msg[2048], line[2200], stamp[32];
    struct timespec ts;
    struct tm tm;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (saved_errno != 0)
        n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s: %s", stamp, ts.tv_nsec / 1000000,
                     level_names[level], msg, strerror(saved_errno));
    else
        n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s", stamp, ts.tv_nsec / 1000000,
                     level_names[level], msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    fprintf(stderr, "%s\n", line);
    log_capture(line, (size_t)n);
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
