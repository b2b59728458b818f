/*
 * llama-swap's peers: remote OpenAI-compatible servers (another Goinfer or llama-swap, a cloud
 * API) that serve the models they list. Which peer serves a name is pure; forwarding is the
 * proxy's, with the peer's key injected.
 */
#ifndef GOINFER_ROUTER_PEERS_H
#define GOINFER_ROUTER_PEERS_H

#include <jansson.h>
#include <stddef.h>

#include "conf/swapconf.h"
#include "core/buf.h"

/* The peer that serves name, as llama-swap resolves it: "<peer id>/<model id>" exactly, else a
 * bare model id that exactly one peer lists. Sets *model to the id the peer knows. NULL when
 * no peer, or more than one, serves it. */
const struct conf_peer *peers_find(const struct conf_peer *v, size_t n, const char *name,
                                   const char **model);
/* One peer model as the listings show it: id "<peer id>/<model id>", llama-swap's name
 * "<peer id>: <model id>". A new reference. */
json_t *peers_model(const struct conf_peer *p, const char *model, long long created);
/* Appends an OpenAI model object for each peer model, named "<peer id>/<model id>", joined by
 * commas; returns the bytes appended. */
size_t peers_list(const struct conf_peer *v, size_t n, long long created, struct buf *out);

#endif
