/*
 * The server's end of the reverse tunnel (DESIGN.md section 6): GPU machines dial in over TLS
 * with ALPN goinfer/1 and a client certificate, prove the token in one HTTP/1.1 upgrade, then
 * the roles swap: this side is the HTTP/2 client and sends each end user's request down one
 * stream of the connection the GPU machine opened.
 */
#ifndef GOINFER_TUNNEL_SERVER_H
#define GOINFER_TUNNEL_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conf/tunnelconf.h"
#include "http/server.h"
#include "tunnel/control.h"

#define TUNNEL_PATH "/.well-known/goinfer-tunnel"

struct tunnel_server;

/* Borrows conf for its life. */
struct tunnel_server *tunnel_server_new(uv_loop_t *loop, const struct conf_tunnel_server *conf);
/* After a reload: tunnels whose client key is no longer allowed are closed. */
void tunnel_server_recheck(struct tunnel_server *ts);
/* Planned shutdown: each client is told to finish what it runs and come back in back_in_ms;
 * new tunnels get 503 with Retry-After, queued requests 503. */
void tunnel_server_drain(struct tunnel_server *ts, uint64_t back_in_ms);
/* Closes every tunnel (clients reconnect elsewhere) and frees ts once they are gone. */
void tunnel_server_free(struct tunnel_server *ts);
/* GET TUNNEL_PATH with Upgrade: ptth: checks pin and proof, answers 101 or the refusal. */
void tunnel_server_accept(struct tunnel_server *ts, struct http_request *req);
/* Sends req to a connected client that serves model (copied). Returns false (nothing sent)
 * when none does; otherwise the request is answered, one way or another. */
bool tunnel_server_forward(struct tunnel_server *ts, struct http_request *req, const char *model);
/* A model some client serves (the default when a request names none), or NULL. */
const char *tunnel_server_any_model(const struct tunnel_server *ts);
/* Whether a registered client serves model: one lookup in the fleet's set of names. */
bool tunnel_server_serves(const struct tunnel_server *ts, const char *model);
/* How many distinct models the registered clients serve; names gets the first max of them,
 * borrowed until the next registration changes. */
size_t tunnel_server_some_models(const struct tunnel_server *ts, const char **names, size_t max);
/* A server's model control on one GPU machine (pin): sends req (its JSON body names model) to
 * that machine's path, "/models/load" or "/models/unload"; answers 404 (no such machine or
 * model there) or 403 (the machine's owner did not set client.allow_admin) itself. */
void tunnel_server_admin(struct tunnel_server *ts, struct http_request *req, const char *machine,
                         const char *model, const char *path);
/* One tunnelled model as /v1/models/<id> shows it (state, modalities), or NULL. */
json_t *tunnel_server_model(struct tunnel_server *ts, const char *id, json_int_t created);
/*
 * The models the clients serve, once each and leaving out the hidden names (the local models
 * of the same name), as OpenAI model objects joined by commas, without brackets. Made again
 * only when the fleet's set of names, hidden or created changed: with tens of thousands of
 * models a request costs a copy, not a merge on the only loop; a model loading or unloading on
 * a GPU machine also makes it again (each entry has its status). Borrowed until the next call.
 */
const char *tunnel_server_models_json(struct tunnel_server *ts, const char *const *hidden,
                                      size_t n_hidden, json_int_t created, size_t *len);
/* Prometheus lines: clients connected, and each one's streams and reported load. */
void tunnel_server_metrics(struct tunnel_server *ts, struct buf *out);
/* A GPU machine says one of its models loads ("loading", progress llama.cpp's object or NULL,
 * borrowed for the call) or no longer does ("loaded", "unloaded"). */
typedef void (*tunnel_model_cb)(const char *model, const char *status, const json_t *progress,
                                void *arg);
struct tunnel_watch;
/* cb runs on each such line until tunnel_server_unwatch (which a callback may call). A NULL ts
 * watches nothing and returns NULL. */
struct tunnel_watch *tunnel_server_watch(struct tunnel_server *ts, tunnel_model_cb cb, void *arg);
void tunnel_server_unwatch(struct tunnel_watch *w);
/* [{"peer", "pin", "models", "in_flight"}] for /running and the admin view. */
json_t *tunnel_server_clients(struct tunnel_server *ts);

#endif
