#include "errors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "http/server.h"

char *
http_error_json_v(int status, const char *type, const char *fmt, va_list ap)
{
    char msg[2048];
    json_t *o;
    char *out;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    o = json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg, "type", type, "code", status);
    out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (out == NULL) /* msg was not UTF-8: keep the status and type at least */
        out = xasprintf("{\"error\":{\"message\":\"(unprintable)\",\"type\":\"%s\",\"code\":%d}}",
                        type, status);
    return out;
}

char *
http_error_json(int status, const char *type, const char *fmt, ...)
{
    va_list ap;
    char *out;

    va_start(ap, fmt);
    out = http_error_json_v(status, type, fmt, ap);
    va_end(ap);
    return out;
}

void
http_respond_json(struct http_request *req, int status, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);

    http_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(o);
}
