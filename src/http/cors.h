/*
 * CORS: an exact whitelist of origins (no wildcard by default), preflights answered without a
 * key (browsers never send one there), Vary: Origin on every answer to a browser.
 */
#ifndef GOINFER_HTTP_CORS_H
#define GOINFER_HTTP_CORS_H

#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"

enum cors_verdict {
    CORS_NONE,    /* no Origin: not a cross-origin browser request */
    CORS_ALLOWED, /* listed, or the page's own origin */
    CORS_DENIED,
};

/* Pure: origin against the list (NULL-terminated) and the request's Host. */
enum cors_verdict cors_check(char *const *origins, const char *origin, size_t origin_len,
                             const char *host, size_t host_len);

/* Handles CORS for req: answers a preflight (true: done) or a denied origin (true: done with
 * 403); otherwise adds the response headers for an allowed origin and returns false. */
bool cors_handle(char *const *origins, struct http_request *req);

#endif
