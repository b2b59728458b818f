/*
 * llama-swap's peers: remote OpenAI-compatible servers (another Goinfer or llama-swap, a cloud
 * API) that serve the models they list. Which peer serves a name is pure; forwarding is the
 * proxy's, with the peer's key injected.
 */
#ifndef GOINFER_ROUTER_PEERS_H
#define GOINFER_ROUTER_PEERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "conf/swapconf.h"
#include "core/buf.h"

/* The models a peer serves beyond its configured ones: those fetched from it (Goinfer's
 * modelsRefresh:). ids returns the peer's list, NULL-terminated, or NULL; borrowed until the
 * loop runs again. */
struct peers_extra {
    char *const *(*ids)(const void *arg, const struct conf_peer *p);
    const void *arg;
};

/* The peer that serves name, as llama-swap resolves it: "<peer id>/<model id>" exactly, else a
 * bare model id that exactly one peer lists. Sets *model to the id the peer knows. NULL when
 * no peer, or more than one, serves it. x may be NULL. */
const struct conf_peer *peers_find(const struct conf_peer *v, size_t n, const struct peers_extra *x,
                                   const char *name, const char **model);
/* One peer model as the listings show it: id "<peer id>/<model id>", llama-swap's name
 * "<peer id>: <model id>". A new reference. */
json_t *peers_model(const struct conf_peer *p, const char *model, long long created);
/* Appends an OpenAI model object for each peer model, named "<peer id>/<model id>", joined by
 * commas; returns the bytes appended. */
size_t peers_list(const struct conf_peer *v, size_t n, const struct peers_extra *x,
                  long long created, struct buf *out);
/* Whether name matches one of the fnmatch(3) patterns (a '*' matches '/' too); an empty or NULL
 * list matches everything. */
bool peers_allowed(char *const *patterns, const char *name);

#endif
