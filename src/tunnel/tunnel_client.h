/*
 * The GPU machine's end of the reverse tunnel: dials every configured server (TLS 1.3, ALPN
 * goinfer/1, its own certificate, the server's pin checked), upgrades with the token proof,
 * then serves HTTP/2 on the connection it opened: each stream is an end user's request, run
 * against this machine's own Goinfer listener and streamed back. Reconnects with full-jitter
 * backoff (1 s base, 60 s cap; Retry-After wins; 30 s after a refusal of its identity).
 */
#ifndef GOINFER_TUNNEL_CLIENT_H
#define GOINFER_TUNNEL_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "conf/tunnelconf.h"

struct tunnel_client;

/* What this machine serves now: {"models":[{"id","hot","vision"}]}, a new reference. */
typedef json_t *(*tunnel_describe_cb)(void *arg);

/* srv: this process's HTTP server, whose handler answers each stream as a request from a
 * listener with `services` would be; local_key: its user key (NULL when none), sent with each.
 * Borrows conf and srv. Returns NULL with err filled when the identity can't load. */
struct http_server;
struct tunnel_client *tunnel_client_new(uv_loop_t *loop, const struct conf_tunnel_client *conf,
                                        struct http_server *srv, unsigned services,
                                        const char *local_key, tunnel_describe_cb describe,
                                        void *describe_arg, char *err, size_t errlen);
/* Shutdown: tells each server we are draining, takes no new streams, finishes the running
 * ones, then closes; no reconnects. */
void tunnel_client_drain(struct tunnel_client *tc);
/* Tells every server now that model loads (status "loading", with llama.cpp's progress object
 * when there is one; borrowed) or no longer does ("loaded", "unloaded"), so they list it
 * loading with its progress. */
void tunnel_client_model_status(struct tunnel_client *tc, const char *model, const char *status,
                                json_t *progress);
void tunnel_client_free(struct tunnel_client *tc);

#endif
