/*
 * What each client address holds on a server at once: its open connections and the request
 * body bytes reserved for it. A hash table, so a new connection or a body chunk costs O(1)
 * instead of a walk over every open connection (1,500 of them made each accept a scan).
 *
 * Lifetime: an entry lives while a connection holds it (addrtab_get .. addrtab_put).
 */
#ifndef GOINFER_HTTP_ADDRTAB_H
#define GOINFER_HTTP_ADDRTAB_H

#include <stddef.h>

struct addr_entry {
    char ip[48];
    size_t conns;      /* connections that hold this entry */
    size_t body_bytes; /* request body bytes reserved by them */
    struct addr_entry *next;
};

struct addrtab;

struct addrtab *addrtab_new(void);
/* Frees the table; every entry must have been put back. */
void addrtab_free(struct addrtab *t);
/* The entry for ip, made on first use; counts one more connection. */
struct addr_entry *addrtab_get(struct addrtab *t, const char *ip);
/* One connection fewer; the entry is freed with its last one. */
void addrtab_put(struct addrtab *t, struct addr_entry *e);

#endif
