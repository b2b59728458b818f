#include "addrtab.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

/* A power of two; chains stay short up to tens of thousands of addresses. */
#define ADDRTAB_BUCKETS 4096

struct addrtab {
    struct addr_entry *bucket[ADDRTAB_BUCKETS];
};

/* FNV-1a: the keys are short and the table is not exposed to chosen collisions beyond what
 * one client can open (max_connections bounds the entries). */
static size_t
hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h & (ADDRTAB_BUCKETS - 1);
}

struct addrtab *
addrtab_new(void)
{
    return xcalloc(1, sizeof(struct addrtab));
}

void
addrtab_free(struct addrtab *t)
{
    free(t);
}

struct addr_entry *
addrtab_get(struct addrtab *t, const char *ip)
{
    size_t h = hash(ip);
    struct addr_entry *e;

    for (e = t->bucket[h]; e != NULL; e = e->next)
        if (strcmp(e->ip, ip) == 0)
            break;
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        snprintf(e->ip, sizeof(e->ip), "%s", ip);
        e->next = t->bucket[h];
        t->bucket[h] = e;
    }
    e->conns++;
    return e;
}

void
addrtab_put(struct addrtab *t, struct addr_entry *e)
{
    struct addr_entry **pp;

    if (e == NULL || --e->conns > 0)
        return;
    for (pp = &t->bucket[hash(e->ip)]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    free(e);
}
