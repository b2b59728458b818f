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

enum cors_action {
    CORS_PASS,      /* headers added as needed: go on with the request */
    CORS_PREFLIGHT, /* an allowed preflight: headers added, answer it with cors_preflight */
    CORS_REFUSED,   /* a denied origin: answered 403 */
};

/* Decides CORS for req from its head: adds "Vary: Origin" to every answer (a cache must not
 * serve one origin's answer to another, nor an answer without CORS headers to a browser) and
 * the allow headers for an allowed origin. */
enum cors_action cors_handle(char *const *origins, struct http_request *req);
/* The same, with also (when not NULL) asked of an origin the list does not hold: the origins
 * that virtual keys and browser tokens name. */
typedef bool (*cors_also_cb)(void *arg, const char *origin, size_t len);
enum cors_action cors_handle_with(char *const *origins, cors_also_cb also, void *arg,
                                  struct http_request *req);
/* Answers a preflight that cors_handle allowed (204, no key needed). */
void cors_preflight(struct http_request *req);

#endif
