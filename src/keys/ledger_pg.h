/*
 * The ledger in PostgreSQL (`ledger: postgresql://...`), so several Goinfer servers share
 * keys, budgets and spend. Two connections: one non-blocking on the loop (PQsetnonblocking,
 * uv_poll on PQsocket) that commits settlements, all those queued meanwhile in one
 * transaction, as increments, so servers add to one total, and that reads every key (rules and
 * shared spend) once a second; one blocking, for what an admin or the command line asks (rare,
 * small).
 */
#ifndef GOINFER_KEYS_LEDGER_PG_H
#define GOINFER_KEYS_LEDGER_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keys/ledger.h"

struct pgl;

bool pgl_is_url(const char *s);
/* loop NULL: the command line (no settlements). */
int pgl_open(uv_loop_t *loop, const char *url, struct pgl **out, char *err, size_t errlen);
void pgl_close(struct pgl *p);
int pgl_load(struct pgl *p, ledger_key_cb cb, void *arg);
/* The same on the loop's connection, without blocking: cb is called when the rows arrive. */
void pgl_refresh(struct pgl *p, ledger_key_cb cb, void *arg);
int pgl_insert(struct pgl *p, struct vkey *k);
int pgl_update(struct pgl *p, const struct vkey *k);
void pgl_settle(struct pgl *p, const struct ledger_entry *e);
size_t pgl_pending(const struct pgl *p);
int pgl_totals(struct pgl *p, int64_t key_id, int64_t *requests, double *usd, double *tokens);

#endif
