/*
 * HTTP/1.1 request assembly from bytes, with no socket: http-parser glue, the limits on the
 * request line plus headers and on the body, header offsets turned into the request's header
 * table, absolute-form targets. The connection (server.c) feeds it what it reads and decides,
 * through the hooks, what a head and a body may cost; the HTTP fuzzer drives it directly.
 */
#ifndef GOINFER_HTTP_H1_H
#define GOINFER_HTTP_H1_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/request.h"

enum h1_state {
    H1_READING,    /* more bytes wanted */
    H1_COMPLETE,   /* a whole request is in req; feeding stops until h1_next */
    H1_ANSWERED,   /* a hook answered (from the head, or while the body came): stop reading */
    H1_TOO_MANY,   /* more than HTTP_MAX_HEADERS headers (431) */
    H1_TOO_LARGE,  /* request line and headers over their limit (431) */
    H1_BODY_LIMIT, /* body over req->body.max (413) */
    H1_MALFORMED,  /* not HTTP/1.x (400; h1_error says why) */
};

struct h1_hooks {
    /* The head is in req (method, target, headers, keep_alive): 0 to read the body, or < 0
     * when the hook answered and nothing more is to be read. */
    int (*head)(void *arg, struct http_request *req);
    /* n more body bytes are about to be kept: 0, or < 0 when the hook answered. */
    int (*body)(void *arg, size_t n);
};

struct h1 {
    http_parser parser;
    struct buf hdr; /* header names and values, NUL-separated */
    struct buf url;
    size_t hdr_off[HTTP_MAX_HEADERS][2];
    size_t n_hdr;
    size_t header_bytes;  /* request line + headers (+ a chunked body's trailers) */
    size_t trailer_bytes; /* trailers are counted, never kept: req->headers points into hdr */
    bool in_value, head_done;
    enum h1_state state;
    struct http_request *req; /* borrowed: where each request is assembled */
    const struct h1_hooks *hooks;
    void *arg;
};

void h1_init(struct h1 *h, size_t header_bytes, struct http_request *req,
             const struct h1_hooks *hooks, void *arg);
void h1_cleanup(struct h1 *h);
/* Feeds bytes; returns how many were taken (fewer when a request completed or an error
 * stopped it: h->state says which). */
size_t h1_feed(struct h1 *h, const char *data, size_t len);
/* After a complete request has been answered: ready for the next one. */
void h1_next(struct h1 *h);
/* Whether some of a request has arrived (the head timer's business). */
bool h1_started(const struct h1 *h);
/* The request's head announced a body (one may still be unread). */
bool h1_has_body(const struct h1 *h);
/* Content-Length, or -1 when absent (chunked, or no body). */
int64_t h1_content_length(const struct h1 *h);
bool h1_is_http11(const struct h1 *h);
/* Why the bytes were not HTTP (H1_MALFORMED). */
const char *h1_error(const struct h1 *h);

#endif
