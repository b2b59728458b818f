/* Allocation that aborts on out-of-memory: the real defence is a cap on every peer-controlled size.
 */
#ifndef GOINFER_CORE_XMALLOC_H
#define GOINFER_CORE_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated formatted string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
