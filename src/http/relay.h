/*
 * The policy every backend follows when it relays an upstream's response to the end user
 * (a local llama-server through the proxy, a GPU machine through a tunnel, and both ends of
 * the tunnel itself): one list of headers that pass, one rule for flushing. Written once so a
 * road cannot pass what another strips.
 */
#ifndef GOINFER_HTTP_RELAY_H
#define GOINFER_HTTP_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"

/* The upstream's response headers that reach the end user: the content's own (type, cache
 * policy, encoding). Hop-by-hop headers, lengths and framing are the relay's to set, and
 * anything else (cookies, locations, server names) stays behind. Case-insensitive; returns the
 * header's lower-case name (HTTP/2's spelling), or NULL when it does not pass. */
const char *http_relay_canonical(const char *name, size_t len);
bool http_relay_passes(const char *name, size_t len);
/* Copies the passing headers of h into out (at most max); returns how many. */
size_t http_relay_filter(const struct http_header *h, size_t n, struct http_header *out,
                         size_t max);
/* Whether a response of this Content-Type is flushed head first, before any body byte (an
 * event stream shows the user at once that it is alive). */
bool http_relay_flush_early(const char *ctype, size_t len);
/* Starts req's response from an upstream's status and headers: the passing ones, then
 * "X-Accel-Buffering: no"; flushed at once when it is an event stream. */
int http_relay_start(struct http_request *req, int status, const struct http_header *h, size_t n,
                     int64_t content_length);

#define HTTP_RELAY_MAX 4

/* The passing headers of a response that arrives one header at a time (HTTP/2), copied. */
struct http_relay_head {
    struct http_header h[HTTP_RELAY_MAX];
    size_t n, used;
    char store[512];
};

void http_relay_head_reset(struct http_relay_head *rh);
/* Keeps name: value when it passes and fits; anything else is dropped. */
void http_relay_head_add(struct http_relay_head *rh, const char *name, size_t nlen,
                         const char *value, size_t vlen);

#endif
