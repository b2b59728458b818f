/*
 * Outbound HTTP/1.1 to upstreams (llama-server and the like): libuv TCP and http-parser, with
 * a keep-alive pool per client, the way nginx talks to its upstreams. Plain http:// only:
 * upstreams are local processes or hosts on a trusted network.
 *
 * Why not libcurl: per proxied request it cost three more system calls (two poll() and an
 * epoll_ctl) and a fifth of the CPU in its own code; see README, "Benchmarks".
 *
 * Callbacks run on the loop, never from inside http_fetch_start. After on_done, or after
 * http_fetch_cancel, the fetch is gone and no callback of it runs again.
 */
#ifndef GOINFER_HTTP_CLIENT_H
#define GOINFER_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "http/server.h"

/* From on_body: these bytes were taken; deliver no more until http_fetch_resume. */
#define HTTP_FETCH_PAUSE 1

/* on_done's err. */
enum http_fetch_err {
    HTTP_FETCH_OK = 0,
    HTTP_FETCH_EURL,      /* not an http://host:port URL */
    HTTP_FETCH_ECONNECT,  /* resolving or connecting failed */
    HTTP_FETCH_ETIMEDOUT, /* connect, idle or total time ran out */
    HTTP_FETCH_ECLOSED,   /* the upstream closed or reset the connection mid-response */
    HTTP_FETCH_EPROTO,    /* the upstream did not speak HTTP/1.x */
    HTTP_FETCH_EABORTED,  /* on_body returned -1 */
};

struct http_client;
struct http_fetch;

struct http_fetch_cb {
    /* The final response's status and headers (interim 1xx are skipped). */
    void (*on_response)(void *arg, long status, const struct http_header *h, size_t n);
    /* Returns 0, HTTP_FETCH_PAUSE, or -1 to abort the transfer. */
    int (*on_body)(void *arg, const char *data, size_t len);
    /* err is an enum http_fetch_err; msg says what went wrong ("" on success). */
    void (*on_done)(void *arg, int err, const char *msg);
};

struct http_fetch_opts {
    const char *method; /* NULL: GET, or POST when a body is given */
    const char *url;
    const struct http_header *headers;
    size_t n_headers;
    const char *body; /* borrowed: kept by the caller until on_done or http_fetch_cancel */
    size_t body_len;
    long connect_timeout_ms; /* 0: 5 s */
    long timeout_ms;         /* whole transfer; 0 for none (streams) */
    long idle_s;             /* abort when no byte comes for this long (0: never) */
};

/* Splits http[s]://host[:port][/path]; host may be [v6]; the port defaults to 80 or 443.
 * Returns 0, or -1 for anything else. */
int http_url_split(const char *url, char *host, size_t host_size, int *port, const char **path);

struct http_client *http_client_new(uv_loop_t *loop);
/* The owner is done with it: it goes (closing its pooled connections) once the fetches still
 * running have finished or been cancelled; their callbacks still run. */
void http_client_release(struct http_client *c);

struct http_fetch *http_fetch_start(struct http_client *c, const struct http_fetch_opts *o,
                                    const struct http_fetch_cb *cb, void *arg);
/* Closes the fetch's connection at once, so the upstream sees the abort. */
void http_fetch_cancel(struct http_fetch *f);
void http_fetch_resume(struct http_fetch *f);

#endif
