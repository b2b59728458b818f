/*
 * The reverse tunnel's settings in goinfer.yml: a `server:` section (accept tunnels from GPU
 * machines on the TLS listeners) and a `client:` section (dial servers, serve their users).
 */
#ifndef GOINFER_CONF_TUNNELCONF_H
#define GOINFER_CONF_TUNNELCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONF_MAX_SERVERS   16
#define TUNNEL_CLIENT_CERT "goinfer-client.crt" /* this machine's identity, by default */
#define TUNNEL_CLIENT_KEY  "goinfer-client.key"

struct conf_tunnel_server {
    char *token;                          /* the secret clients prove (GI_TUNNEL_TOKEN) */
    char **clients;                       /* key pins ("sha256/...") allowed in; NULL-terminated */
    uint64_t ping_interval, ping_timeout; /* seconds */
    uint64_t max_queue;                   /* requests waiting for a busy client, then 503 */
    /* seconds a tunnel stream may go without a byte from its GPU machine, then 504 (set from
       limits.upstream_timeout) */
    uint64_t stream_timeout;
};

struct conf_tunnel_peer {
    char *url;   /* https://host:port of a Goinfer server */
    char *pin;   /* that server's key pin */
    char *token; /* its secret */
};

struct conf_tunnel_client {
    char *cert, *key; /* this machine's identity (generated on first use when missing) */
    struct conf_tunnel_peer servers[CONF_MAX_SERVERS];
    size_t n_servers;
    uint64_t ping_interval, ping_timeout; /* seconds */
    uint64_t slots;      /* requests run at once for each server (MAX_CONCURRENT_STREAMS) */
    uint64_t body_bytes; /* largest request body taken from a server (limits.body_bytes) */
    uint64_t stall_ms;   /* an answer a server takes nothing of this long is dropped
                            (limits.write_stall_timeout) */
    /* request bodies held at once from all servers (limits.body_bytes_in_flight) */
    uint64_t body_in_flight;
    bool allow_admin; /* its servers may load and unload this machine's models; off by default */
};

void tunnelconf_defaults(struct conf_tunnel_server *s, struct conf_tunnel_client *c);
/* Whether a reload leaves the client's settings as they run (a missing cert or key counts
 * as its default, which the running one has filled in). */
bool tunnelconf_client_same(const struct conf_tunnel_client *running,
                            const struct conf_tunnel_client *next);
void tunnelconf_cleanup(struct conf_tunnel_server *s, struct conf_tunnel_client *c);

#endif
