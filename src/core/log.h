/* Logging: leveled, lower-case messages, one line each, to stderr. */
#ifndef GOINFER_CORE_LOG_H
#define GOINFER_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdnoreturn.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

extern enum log_level log_threshold;

void log_set_level(enum log_level level);
/* json: stderr gets one JSON object per line, {"time","level","msg"} (an access line's fields
 * too: req, method, path, model, backend, status, bytes, ttfb_ms, total_ms, client); the history
 * (/logs) keeps the text lines either way. */
void log_set_json(bool json);

/* The level is tested before the arguments are evaluated. */
#define log_enabled(level) ((level) <= log_threshold)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_enabled(LOG_LEVEL_INFO))                                                           \
            log_emit(LOG_LEVEL_INFO, false, __VA_ARGS__);                                          \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                          \
            log_emit(LOG_LEVEL_DEBUG, false, __VA_ARGS__);                                         \
    } while (0)
/* log_warn appends strerror(errno); log_warnx does not. */
#define log_warn(...)  log_emit(LOG_LEVEL_WARN, true, __VA_ARGS__)
#define log_warnx(...) log_emit(LOG_LEVEL_WARN, false, __VA_ARGS__)

void log_emit(enum log_level level, bool with_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Recent lines (ours and the children's) for GET /logs, and live subscribers for /logs/stream.
 * A subscriber's callback must not block; lines logged from inside it are not re-broadcast.
 */
typedef void (*log_line_cb)(void *arg, const char *line, size_t len);
struct log_sub;

/* Adds a line to the history and subscribers without printing it (child output); its control
 * bytes are escaped as log_escape does. */
void log_capture(const char *line, size_t len);
/* Calls cb with the stored history, oldest first, as one block of lines. */
void log_history(log_line_cb cb, void *arg);
struct log_sub *log_subscribe(log_line_cb cb, void *arg);
void log_unsubscribe(struct log_sub *s);

/* Copies in to out with each control byte (C0, DEL) written as \n, \r, \t or \xHH, so it
 * cannot end or forge a line; NUL-terminated, truncated to outlen. Returns the length. */
size_t log_escape(char *out, size_t outlen, const char *in, size_t len);

noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
