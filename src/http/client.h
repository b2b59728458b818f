/*
 * Outbound HTTP: libcurl's multi interface driven by the libuv loop
 * (curl_multi_socket_action), so upstream requests never block and stream both ways.
 *
 * Callbacks run on the loop. After on_done, or after http_fetch_cancel, the fetch is gone
 * and no callback of it runs again.
 */
#ifndef GOINFER_HTTP_CLIENT_H
#define GOINFER_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "http/server.h"

#define HTTP_FETCH_PAUSE 1 /* from on_body: keep these bytes, deliver them after resume */

struct http_client;
struct http_fetch;

struct http_fetch_cb {
    /* The final response's status and headers (interim 1xx are skipped). */
    void (*on_response)(void *arg, long status, const struct http_header *h, size_t n);
    /* Returns 0, HTTP_FETCH_PAUSE, or -1 to abort the transfer. */
    int (*on_body)(void *arg, const char *data, size_t len);
    /* err is 0 or a CURLcode; msg says what went wrong. */
    void (*on_done)(void *arg, int err, const char *msg);
};

struct http_fetch_opts {
    const char *method; /* NULL: GET, or POST when a body is given */
    const char *url;
    const struct http_header *headers;
    size_t n_headers;
    const char *body; /* copied */
    size_t body_len;
    long connect_timeout_ms;
    long timeout_ms; /* whole transfer; 0 for none (streams) */
    long idle_s;     /* abort when no byte comes for this long (0: never) */
};

struct http_client *http_client_new(uv_loop_t *loop);
/* The owner is done with it: it goes (closing its pooled connections) once the fetches still
 * running have finished or been cancelled; their callbacks still run. */
void http_client_release(struct http_client *c);

struct http_fetch *http_fetch_start(struct http_client *c, const struct http_fetch_opts *o,
                                    const struct http_fetch_cb *cb, void *arg);
void http_fetch_cancel(struct http_fetch *f);
void http_fetch_resume(struct http_fetch *f);

#endif
