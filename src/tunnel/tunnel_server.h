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
/*
 * The models the clients serve, once each and leaving out the hidden names (the local models
 * of the same name), as OpenAI model objects joined by commas, without brackets. Made again
 * only when the fleet's set of names, hidden or created changed: with tens of thousands of
 * models a request costs a copy, not a merge on the only loop. Borrowed until the next call.
 */
const char *tunnel_server_models_json(struct tunnel_server *ts, const char *const *hidden,
                                      size_t n_hidden, json_int_t created, size_t *len);
/* Prometheus lines: clients connected, and each one's streams and reported load. */
void tunnel_server_metrics(struct tunnel_server *ts, struct buf *out);
/* [{"peer", "pin", "models", "in_flight"}] for /running and the admin view. */
json_t *tunnel_server_clients(struct tunnel_server *ts);

/* ---- a GPU machine's control lines, parsed without I/O (tests/fuzz/fuzz_register.c) ---- */

#define TUNNEL_MAX_MODELS   10000 /* models one registration may carry */
#define TUNNEL_MODEL_ID_MAX 256   /* bytes in one model name */

struct tunnel_model {
    char *id;
    bool hot;    /* loaded now: no start-up delay */
    bool vision; /* has a projector for images */
};

enum tunnel_msg_type {
    TUNNEL_MSG_INVALID,  /* not a JSON object with a string "type" */
    TUNNEL_MSG_OTHER,    /* a type this version does not know: ignored */
    TUNNEL_MSG_REGISTER, /* what it serves */
    TUNNEL_MSG_LOAD,     /* its busy slots */
    TUNNEL_MSG_DRAINING, /* it takes no new requests */
};

struct tunnel_msg {
    enum tunnel_msg_type type;
    unsigned busy;  /* load */
    unsigned slots; /* register, from here on */
    char version[64];
    struct tunnel_model *models; /* distinct valid names, in the order sent */
    size_t n_models;
    json_t *index;       /* name -> its position in models */
    size_t over, bad_id; /* left out: past TUNNEL_MAX_MODELS; empty, too long, control chars */
};

/* {"type":"register","version":"...","slots":N,"models":[{"id","hot","vision"}]},
 * {"type":"load","busy":N}, {"type":"draining"}: fills m whatever the line holds. */
void tunnel_msg_parse(struct tunnel_msg *m, const char *line, size_t len);
void tunnel_msg_cleanup(struct tunnel_msg *m);

#endif
