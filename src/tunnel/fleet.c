#include "fleet.h"

#include <stdlib.h>

uint32_t
fleet_rand_system(void *arg, uint32_t bound)
{
    (void)arg;
    return arc4random_uniform(bound);
}

static bool
open_slot(const struct fleet_cand *c)
{
    return c->serves && c->load < c->slots;
}

int
fleet_pick(const struct fleet_cand *c, size_t n, fleet_rand_cb rnd, void *arg, bool *known)
{
    int a = -1, b = -1;
    uint32_t seen = 0;
    bool hot_only = false;

    *known = false;
    for (size_t i = 0; i < n; i++) {
        *known |= c[i].serves;
        hot_only |= c[i].hot && open_slot(&c[i]);
    }
    for (size_t i = 0; i < n; i++) {
        if (!open_slot(&c[i]) || (hot_only && !c[i].hot))
            continue;
        seen++; /* reservoir sampling keeps two uniformly chosen candidates */
        if (a < 0)
            a = (int)i;
        else if (b < 0)
            b = (int)i;
        else if (rnd(arg, seen) < 2)
            *(rnd(arg, 2) ? &a : &b) = (int)i;
    }
    if (b >= 0) {
        uint64_t la = (uint64_t)c[a].load * c[b].slots, lb = (uint64_t)c[b].load * c[a].slots;

        if (lb < la || (lb == la && rnd(arg, 2)))
            return b;
    }
    return a;
}

uint64_t
fleet_backoff_ms(unsigned attempt, uint64_t base, uint64_t cap, fleet_rand_cb rnd, void *arg)
{
    uint64_t ceiling = base;

    for (unsigned i = 0; i < attempt && ceiling < cap; i++)
        ceiling *= 2;
    if (ceiling > cap)
        ceiling = cap;
    if (ceiling > UINT32_MAX)
        ceiling = UINT32_MAX;
    return (uint64_t)rnd(arg, (uint32_t)ceiling) + 1;
}
