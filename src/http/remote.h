/*
 * Outbound HTTPS to cloud upstreams (OpenRouter and other OpenAI-compatible APIs): libcurl's
 * multi interface driven by the libuv loop (uv_poll per socket, one uv_timer), HTTP/2 when the
 * server offers it, certificates verified (the system's store, or a CA file), the usual proxy
 * variables (https_proxy, no_proxy...) honoured by libcurl.
 *
 * The same callbacks and options as client.h's fetches (struct http_fetch_cb, struct
 * http_fetch_opts), so the proxy drives both roads alike. Local upstreams keep client.c (see its
 * header for why); the cloud road pays TLS anyway, and libcurl's TLS and HTTP/2 are the point.
 *
 * A fetch is retried (up to retries more times) when it failed to connect or the upstream
 * answered 5xx, but only while no byte of it has reached the callbacks: once on_response ran,
 * what happens is the caller's. Callbacks run on the loop, never from inside
 * http_remote_start or http_remote_cancel. After on_done, or after http_remote_cancel, the
 * fetch is gone and no callback of it runs again.
 */
#ifndef GOINFER_HTTP_REMOTE_H
#define GOINFER_HTTP_REMOTE_H

#include <uv.h>

#include "http/client.h"

struct http_remote;
struct http_remote_fetch;

struct http_remote_opts {
    const char *ca_file; /* PEM bundle to verify the server with; NULL: the system's */
    int retries;         /* more attempts before the first byte (connect error, 5xx) */
};

struct http_remote *http_remote_new(uv_loop_t *loop);
/* The owner is done with it: it goes once its fetches have finished or been cancelled. */
void http_remote_release(struct http_remote *r);

/* Starts a fetch; o and ro are read now, except o->body, borrowed until on_done or cancel. */
struct http_remote_fetch *http_remote_start(struct http_remote *r, const struct http_fetch_opts *o,
                                            const struct http_remote_opts *ro,
                                            const struct http_fetch_cb *cb, void *arg);
/* Ends the transfer (its connection or HTTP/2 stream is reset, so the upstream sees the abort);
 * no callback runs after. May be called from inside this fetch's callbacks. */
void http_remote_cancel(struct http_remote_fetch *f);
/* After on_body returned HTTP_FETCH_PAUSE: deliver again. */
void http_remote_resume(struct http_remote_fetch *f);

#endif
