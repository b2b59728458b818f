/* A growable byte buffer with a hard maximum: appending past it is an error, never a crash. */
#ifndef GOINFER_CORE_BUF_H
#define GOINFER_CORE_BUF_H

#include <stddef.h>

struct buf {
    char *data; /* not NUL-terminated unless buf_cstr() was called */
    size_t len;
    size_t cap;
    size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_cleanup(struct buf *b);
void buf_reset(struct buf *b);
/* Returns 0, or -EMSGSIZE when the result would exceed b->max (b is then unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/*
 * Reads a queue: copies up to len bytes from b->data + *off to dst and advances *off. Emptied,
 * b and *off start over at 0; half read, the rest moves down. Unlike buf_consume after each
 * small read, a large queue costs O(1) per byte.
 */
size_t buf_take(struct buf *b, size_t *off, void *dst, size_t len);
/* NUL-terminates the contents (not counted in len) and returns them. */
const char *buf_cstr(struct buf *b);

#endif
