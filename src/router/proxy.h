/* Forwards one request to the llama-server of a model and streams the answer back as it comes. */
#ifndef GOINFER_ROUTER_PROXY_H
#define GOINFER_ROUTER_PROXY_H

#include "conf/swapconf.h"
#include "http/client.h"
#include "http/remote.h"
#include "http/server.h"
#include "models/catalog.h"
#include "swap/swap.h"

/* A peer (llama-swap's peers:): a remote OpenAI-compatible server; an https:// one (a cloud
 * API such as OpenRouter) goes through remote (libcurl), a plain http:// one through client. */
struct proxy_peer {
    struct http_client *client;   /* borrowed: outlives the request */
    struct http_remote *remote;   /* borrowed: outlives the request */
    const struct conf_peer *conf; /* borrowed for the request's life (its generation) */
    const char *model;            /* the id the peer knows the model by */
};

/* Takes over req until its response ends; m is borrowed for as long. path is the upstream
 * path (copied). fallback (copied; NULL for none) answers instead when the model cannot start
 * (it failed, or its queue is full) and nothing was sent to the client yet. */
void proxy_forward(struct http_request *req, struct swap *swap, const struct model_def *m,
                   const char *path, long idle_s, const struct proxy_peer *fallback);

/* Takes over req (whose log_model is the name asked for) until its response ends: req's path
 * and query appended to the peer's URL, its key as Bearer and x-api-key in place of the
 * caller's (which never passes), its filters applied to the body, "model" set to the peer's
 * id. The answer goes back as a local model's does. */
void proxy_forward_peer(struct http_request *req, const struct proxy_peer *peer, long idle_s);

#endif
