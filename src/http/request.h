/*
 * A request, whatever road it came by (a connection, a tunnel's stream): its fields, the table
 * its response leaves through, and the table of a handler that answers it over time. The
 * functions that act on them are in server.h; request assembly (h1.c) needs only this.
 */
#ifndef GOINFER_HTTP_REQUEST_H
#define GOINFER_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_EXTRA   6 /* headers a request adds to its answer (CORS, Allow, Retry-After...) */

struct http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* What the upstream said of its work: llama-server's final "timings" (or OpenAI's "usage"),
 * found by the proxy as the answer passes, for the metrics and the activity store. Zeroed as a
 * request begins; a count < 0 was not reported. */
struct http_usage {
    bool reported;
    int64_t prompt_tokens, completion_tokens;
    double tokens_per_s;   /* < 0: not reported */
    double predicted_ms;   /* generation time, < 0: not reported */
    uint64_t t_first_byte; /* uv_hrtime() of the upstream's first body byte, 0: none yet */
    double ttft_ms;        /* time to first token, < 0: unknown */
    double cost_usd;       /* the provider's final usage "cost" (USD), < 0: not reported */
};

#define HTTP_KEY_NAME_MAX 72 /* "apiKeys[12345]", a virtual key's name (64) */

struct http_request;
struct http_server;
struct tls_conn;

/*
 * How a request's response leaves: an HTTP/1.1 connection (server.c) or a sink such as a
 * tunnel's stream (local.c). The response functions (server.h) do what every road shares (status,
 * timing, the access line, HEAD) and call only this table; nothing else knows the road.
 */
struct http_transport {
    /* The head: the handler's headers, then the request's added ones (req->extra). */
    int (*head)(struct http_request *req, const struct http_header *h, size_t n,
                int64_t content_length);
    int (*body)(struct http_request *req, const char *data, size_t len);
    void (*flush)(struct http_request *req); /* send the head now, without body bytes */
    /* The response is over (req->ended, access line written): whole, or cut short. The
     * request may be freed on return. */
    void (*end)(struct http_request *req, bool cut);
    size_t (*queued)(const struct http_request *req); /* response bytes not yet passed on */
    const char *(*peer)(const struct http_request *req);
    const struct tls_conn *(*tls)(const struct http_request *req);
};

typedef void (*http_handler_cb)(struct http_request *req, void *arg);
typedef void (*http_request_cb)(struct http_request *req);

/* What a handler that answers over time (a proxied or tunnelled response, a log stream) hears
 * of its client; see http_attach for when. */
struct http_handler {
    void (*abort)(struct http_request *req, void *data); /* gone before the response ended */
    void (*drain)(struct http_request *req, void *data); /* after http_wait_drain */
};

/* Decides on a request as soon as its head is complete, before any of its body is read:
 * returns true to read the body and run the handler, false when it answered already (the body
 * is then discarded unread, and no "100 Continue" was sent). */
typedef bool (*http_admit_cb)(struct http_request *req, void *arg);

struct http_request {
    uint64_t id;
    struct http_server *srv;
    const struct http_transport *tp;
    void *tp_ctx;      /* the transport's own: its connection, its sink */
    unsigned services; /* bit set of the listener's services */
    int method;        /* enum http_method */
    const char *method_name;
    char *path;  /* NUL-terminated path, no query */
    char *query; /* NUL-terminated query without '?', or NULL */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
    struct buf body;

    /* Set by the handler. */
    const void *route; /* what the admit callback chose; NULL when it did not run */
    const struct http_handler *handler; /* through http_attach only */
    void *handler_data;
    bool want_drain;
    char *log_model; /* for the access line; owned */
    const char *log_backend;
    char key_name[HTTP_KEY_NAME_MAX]; /* which key the router accepted ("api_key"), or "" */
    struct http_usage usage;          /* the upstream's token counts, when it said them */
    void *grant; /* a virtual key's admission and reservation (keys/broker.h), settled and
                    freed by keys_settle when the request ends */
    struct http_header extra[HTTP_MAX_EXTRA]; /* added to whatever response starts; borrowed */
    size_t n_extra;

    /* Response state, owned by the server. */
    int status;
    bool started, chunked, ended, keep_alive;
    uint64_t bytes_out;
    uint64_t t_start, t_first; /* uv_hrtime() */
};

#endif
