/*
 * The model lists of the peers that ask for it (Goinfer's modelsRefresh: on a peers: entry):
 * GET <proxy>/v1/models at start and every modelsRefresh seconds, the ids kept that match the
 * peer's allow: patterns, served beside its configured models (peers_find, peers_list). A
 * list survives a reload while the peer keeps its name, URL and key; a failed fetch keeps the
 * last list and is tried again within a minute.
 */
#ifndef GOINFER_ROUTER_PEERLIST_H
#define GOINFER_ROUTER_PEERLIST_H

#include <stddef.h>
#include <uv.h>

#include "conf/swapconf.h"
#include "http/client.h"
#include "http/remote.h"
#include "router/peers.h"

struct peerlist;

/* Borrows client and remote until peerlist_stop. */
struct peerlist *peerlist_new(uv_loop_t *loop, struct http_client *client,
                              struct http_remote *remote);
/* The peers in force (a new generation's): lists of peers that stay are kept, new ones are
 * fetched at once, gone ones dropped. v is read now (copied). */
void peerlist_set(struct peerlist *pl, const struct conf_peer *v, size_t n);
/* What peers_find and peers_list take to see the fetched models. */
struct peers_extra peerlist_extra(const struct peerlist *pl);
/* Shutdown: fetches cancelled, no more refreshes; the lists stay readable until free. */
void peerlist_stop(struct peerlist *pl);
/* After the loop has run since peerlist_stop. NULL is a no-op. */
void peerlist_free(struct peerlist *pl);

#endif
