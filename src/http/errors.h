/* JSON bodies: errors in the OpenAI shape, so every client library shows our message, and
 * JSON answers. */
#ifndef GOINFER_HTTP_ERRORS_H
#define GOINFER_HTTP_ERRORS_H

#include <jansson.h>
#include <stdarg.h>

struct http_request;

/* Returns a malloc'd {"error":{"message":..,"type":..,"code":status}}. */
char *http_error_json_v(int status, const char *type, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
char *http_error_json(int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Answers o (taken over) as application/json. */
void http_respond_json(struct http_request *req, int status, json_t *o);

#endif
