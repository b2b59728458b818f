#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

void
buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void
buf_cleanup(struct buf *b)
{
    free(b->data);
    buf_init(b, b->max);
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
}

/* Makes room for n more bytes plus a NUL, growing geometrically. */
static int
reserve(struct buf *b, size_t n)
{
    size_t need, cap;

    if (n > b->max || b->len > b->max - n)
        return -EMSGSIZE;
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);

    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[512];
    char *big = NULL;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(small))
        return buf_append(b, small, (size_t)n);
    va_start(ap, fmt);
    n = vasprintf(&big, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    rc = buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

void
buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

size_t
buf_take(struct buf *b, size_t *off, void *dst, size_t len)
{
    size_t n = b->len - *off < len ? b->len - *off : len;

    if (n > 0)
        memcpy(dst, b->data + *off, n);
    *off += n;
    if (*off == b->len) {
        b->len = *off = 0;
    } else if (*off >= b->len / 2) {
        buf_consume(b, *off);
        *off = 0;
    }
    return n;
}

const char *
buf_cstr(struct buf *b)
{
    /* len <= max always holds, so reserving 0 more bytes (plus the NUL) cannot fail. */
    (void)reserve(b, 0);
    b->data[b->len] = '\0';
    return b->data;
}
