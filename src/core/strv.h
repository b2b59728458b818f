/* String vectors: NULL-terminated arrays of owned strings (model aliases, flags, lists from the
 * config). An empty vector may be NULL. */
#ifndef GOINFER_CORE_STRV_H
#define GOINFER_CORE_STRV_H

#include <stddef.h>

size_t strv_len(char *const *v);
void strv_free(char **v);
/* Appends a copy of s[0..len) to *v. */
void strv_add(char ***v, const char *s, size_t len);
/* The words of s separated by commas or spaces ("a, b c"); never NULL. */
char **strv_split(const char *s);

#endif
