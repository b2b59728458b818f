/*
 * Fleet scheduling decisions, pure: which GPU machine takes a request, and how long a client
 * waits before it dials again. They take facts and a random source and return a choice, with
 * no sockets, clocks or globals, so unit tests feed them crafted fleets and a fixed sequence.
 */
#ifndef GOINFER_TUNNEL_FLEET_H
#define GOINFER_TUNNEL_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A uniform integer in [0, bound); bound > 0. */
typedef uint32_t (*fleet_rand_cb)(void *arg, uint32_t bound);

/* arc4random_uniform, for the program (seeded by the kernel). */
uint32_t fleet_rand_system(void *arg, uint32_t bound);

/* A GPU machine as the scheduler sees it for one request. */
struct fleet_cand {
    bool serves;    /* registered, not draining, has the model (and a projector if asked) */
    bool hot;       /* the model is loaded there */
    unsigned load;  /* busy slots: its report or our streams in flight, the larger */
    unsigned slots; /* its admission limit */
};

/*
 * Hot over cold (a cold machine pays its load time), then the less loaded of two candidates
 * drawn at random among those with a free slot (load compared as a fraction of slots; a tie
 * goes either way). Returns the index, or -1 when none has a free slot; *known says whether
 * any serves the model at all (full ones included): then the caller queues, else it is a 404.
 */
int fleet_pick(const struct fleet_cand *c, size_t n, fleet_rand_cb rnd, void *arg, bool *known);

/* Full jitter: a wait uniform in [1, min(cap, base * 2^attempt)] ms. */
uint64_t fleet_backoff_ms(unsigned attempt, uint64_t base, uint64_t cap, fleet_rand_cb rnd,
                          void *arg);

#endif
