/*
 * HTTP/1.1 server: libuv TCP + http-parser. One request at a time per connection; the whole
 * request body is read (bounded) before the handler runs, the response may stream.
 *
 * Lifetime: a request belongs to its connection. The handler borrows it from the handler call
 * until it ends the response (http_respond*, http_stream_end, http_abort) or until on_abort
 * tells it the client is gone; after either it must not touch the request again.
 */
#ifndef GOINFER_HTTP_SERVER_H
#define GOINFER_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "http/request.h"

struct http_limits {
    size_t header_bytes;     /* request line + headers */
    size_t body_bytes;       /* request body */
    uint64_t header_ms;      /* time to receive a request's headers (slowloris) */
    uint64_t keepalive_ms;   /* idle time between requests */
    size_t write_high;       /* queued response bytes above which on_drain is armed */
    uint64_t write_stall_ms; /* a client reading nothing that long, with output queued, is cut */
    size_t max_conns;        /* open connections in all; past it new ones get 503 */
    size_t max_conns_per_ip; /* from one client address; past it 429 */
    size_t body_in_flight;   /* request body bytes being read at once, in all; past it 503 */
    size_t body_per_ip;      /* the same from one client address; past it 429 */
};

struct http_server *http_server_new(uv_loop_t *loop, const struct http_limits *limits,
                                    http_handler_cb handler, void *arg);
/* Binds host:port (port 0 picks one) for the given services, speaking TLS when tls is set
 * (with the context of http_server_set_tls); *bound_port gets the real port. */
int http_server_listen(struct http_server *srv, const char *host, int port, unsigned services,
                       bool tls, int *bound_port);
/* The same over fd, a listening socket inherited from the process we replace (a graceful
 * restart): adopted as it is, made close-on-exec (no child inherits it). Takes ownership of fd
 * on success. */
int http_server_listen_fd(struct http_server *srv, int fd, unsigned services, bool tls,
                          int *bound_port);
/* The socket of the listener bound to host:port, or -1: what a graceful restart hands on. */
int http_server_listener_fd(const struct http_server *srv, const char *host, int port);
/* The certificate for TLS listeners' new connections (a reload may change it); borrowed. */
struct tls_ctx;
void http_server_set_tls(struct http_server *srv, struct tls_ctx *ctx);
/* Stops accepting and closes idle connections; busy ones close after their response. */
void http_server_shutdown(struct http_server *srv);
/* The same when another process takes the listening sockets over (a graceful restart): a
 * connection accepted just before, whose request has not come in whole yet, is answered too
 * (then closed), never cut: only idle keep-alive connections close, which clients retry. */
void http_server_hand_off(struct http_server *srv);
/* Open connections plus running local requests (a shutdown waits for both). */
size_t http_server_active(const struct http_server *srv);
void http_server_free(struct http_server *srv);
/* Called with each request's head before its body is read (the handler's arg). */
void http_server_on_admit(struct http_server *srv, http_admit_cb cb);
/* Called as each request ends, after its access line (metrics). */
void http_server_on_complete(struct http_server *srv, http_request_cb cb);

/* Case-insensitive header lookup; returns the value (length in *len) or NULL. */
const char *http_header_get(const struct http_request *req, const char *name, size_t *len);

void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len);
/* An error in the OpenAI shape: {"error":{"message":..,"type":..,"code":status}}. */
void http_respond_error(struct http_request *req, int status, const char *type, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
/* Starts a response; content_length < 0 means chunked (or close-delimited for HTTP/1.0). */
int http_stream_start(struct http_request *req, int status, const struct http_header *headers,
                      size_t n_headers, int64_t content_length);
int http_stream_write(struct http_request *req, const char *data, size_t len);
void http_stream_end(struct http_request *req);
/* Sends the headers now rather than with the first body bytes (long-lived streams). */
void http_stream_flush(struct http_request *req);
/*
 * A handler that answers over time attaches to the request: from then on, h->abort runs once
 * if the client leaves before the response ends, and h->drain once after each http_wait_drain
 * when queued output falls below the low-water mark. The one rule: neither runs after the
 * response ended (http_stream_end, http_abort, http_respond*) or after http_detach, so a
 * handler that ends the response or frees its data never clears a callback. abort detaches.
 */
void http_attach(struct http_request *req, const struct http_handler *h, void *data);
void http_detach(struct http_request *req);
void http_wait_drain(struct http_request *req);

/* Ends the exchange by closing the connection: the client sees a truncated response. */
void http_abort(struct http_request *req);
/* Response bytes handed to the kernel's queue but not yet written. */
size_t http_pending_bytes(const struct http_request *req);
bool http_over_high_water(const struct http_request *req);

const char *http_status_text(int status);

/* ---- taking a connection over (the tunnel's 101 Switching Protocols) ---- */

struct http_conn;

struct http_upgrade_cb {
    void (*on_data)(void *arg, const char *data, size_t len); /* plaintext from the peer */
    void (*on_drain)(void *arg); /* queued output fell below the low-water mark */
    void (*on_close)(void *arg); /* the peer went; the connection is closing */
};

/* Answers 101 with Upgrade: protocol and hands the connection to cb: the request ends here,
 * bytes already read behind it go to on_data at once. NULL for a request that came by another
 * road than a connection (nothing to take over). */
struct http_conn *http_upgrade(struct http_request *req, const char *protocol,
                               const struct http_upgrade_cb *cb, void *arg);
int http_conn_send(struct http_conn *c, const char *data, size_t len);
size_t http_conn_queued(const struct http_conn *c);
bool http_conn_over_high_water(const struct http_conn *c);
/* Closes at once; no callback of cb runs after this. */
void http_conn_close(struct http_conn *c);
/* A header for whatever response starts; name and value are borrowed until it is sent. */
void http_add_header(struct http_request *req, const char *name, const char *value,
                     size_t value_len);
/* "address:port" of the request's client. */
const char *http_request_peer(const struct http_request *req);
/* The request's TLS session, NULL on a plain listener or another road. */
const struct tls_conn *http_conn_tls(const struct http_request *req);

/* ---- requests that arrive by another road than a socket (a tunnel's streams) ---- */

/* Where such a request's response goes, in place of HTTP/1.1 bytes on a connection. */
struct http_sink {
    /* The head: the handler's headers and the added ones; content_length < 0 if unknown. */
    void (*head)(void *arg, int status, const struct http_header *h, size_t n,
                 int64_t content_length);
    int (*body)(void *arg, const char *data, size_t len);
    /* The response is over, whole or cut short (the consumer must show the cut). */
    void (*end)(void *arg, bool cut);
    /* Response bytes the sink holds and has not passed on yet (backpressure). */
    size_t (*queued)(void *arg);
};

struct http_local_opts {
    unsigned services;                 /* as if it came on a listener with these */
    const char *method;                /* "POST" */
    const char *target;                /* "/v1/chat/completions?x=y" */
    const struct http_header *headers; /* copied */
    size_t n_headers;
    struct buf *body; /* taken over: left empty */
    const char *peer; /* for the log */
};

/* Runs a request through srv's handler, as a listener would. Returns it while its response
 * runs, or NULL when it ended within the call (sink->end has run then). */
struct http_request *http_local_start(struct http_server *srv, const struct http_local_opts *o,
                                      const struct http_sink *sink, void *arg);
/* The consumer left: the handler's on_abort runs, the request is freed, the sink hears no
 * more. */
void http_local_cancel(struct http_request *req);
/* The sink passed some of what it held on: the handler's on_drain, if it waits for that. */
void http_local_drained(struct http_request *req);

/* ---- for another road's transport (local.c): what it shares with the connections ---- */

uint64_t http_next_request_id(void);
void http_access_log(const struct http_request *req);
/* The client left before the response ended: 499 if nothing was sent, the access line, the
 * handler's on_abort. Once per request, on every road. */
void http_request_gone(struct http_request *req);
/* Output drained: the handler's drain, if it waits for one. */
void http_drained(struct http_request *req);
void http_server_dispatch(struct http_server *srv, struct http_request *req);
size_t http_server_write_high(const struct http_server *srv);
/* Local requests count as active, so a shutdown waits for them as for connections. */
void http_server_count_local(struct http_server *srv, int delta);

#endif
