/* Error bodies in the OpenAI shape, so every client library shows our message. */
#ifndef GOINFER_HTTP_ERRORS_H
#define GOINFER_HTTP_ERRORS_H

#include <stdarg.h>

/* Returns a malloc'd {"error":{"message":..,"type":..,"code":status}}. */
char *http_error_json_v(int status, const char *type, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
char *http_error_json(int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
