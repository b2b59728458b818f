#include "tunnelconf.h"

#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/sections.h"

int
tunnelconf_set_server(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {
        YKEY_STRING("token", struct conf, tunnel_server.token),
        YKEY_LIST("clients", struct conf, tunnel_server.clients),
        YKEY_U64("ping_interval", struct conf, tunnel_server.ping_interval),
        YKEY_U64("ping_timeout", struct conf, tunnel_server.ping_timeout),
        YKEY_U64("max_queue", struct conf, tunnel_server.max_queue),
        {NULL, NULL, 0}};

    struct conf_tunnel_server *s = &((struct conf *)obj)->tunnel_server;
    int rc;

    (void)k;
    ((struct conf *)obj)->tunnel_accept = true;
    rc = ymap(y, n, "server", keys, obj);
    if (rc == 0 && (s->ping_interval == 0 || s->ping_timeout == 0))
        return yerr(y, n, "ping_interval", "ping_interval and ping_timeout are seconds, 1 or more");
    return rc;
}

static int
set_servers(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {YKEY_STRING("url", struct conf_tunnel_peer, url),
                                       YKEY_STRING("pin", struct conf_tunnel_peer, pin),
                                       YKEY_STRING("token", struct conf_tunnel_peer, token),
                                       {NULL, NULL, 0}};
    struct conf_tunnel_client *c = &((struct conf *)obj)->tunnel_client;

    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(y, n, k->name, "expected a list of servers, each with url, pin and token");
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        struct conf_tunnel_peer *p;
        int rc;

        if (c->n_servers == CONF_MAX_SERVERS)
            return yerr(y, n, k->name, "too many servers (16 at most)");
        p = &c->servers[c->n_servers++];
        rc = ymap(y, ynode(y, *i), "client.servers", keys, p);
        if (rc < 0)
            return rc;
        if (p->url == NULL || p->pin == NULL || p->token == NULL)
            return yerr(y, ynode(y, *i), k->name,
                        "each server needs url, pin and token (the server prints all three "
                        "when it starts)");
        if (strncmp(p->url, "https://", 8) != 0)
            return yerr(y, ynode(y, *i), "url", "must start with https:// (the tunnel is TLS)");
    }
    return 0;
}

int
tunnelconf_set_client(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {
        YKEY_STRING("cert", struct conf, tunnel_client.cert),
        YKEY_STRING("key", struct conf, tunnel_client.key),
        YKEY_U64("ping_interval", struct conf, tunnel_client.ping_interval),
        YKEY_U64("ping_timeout", struct conf, tunnel_client.ping_timeout),
        YKEY_U64("slots", struct conf, tunnel_client.slots),
        YKEY_BOOL("allow_admin", struct conf, tunnel_client.allow_admin),
        {"servers", set_servers, 0},
        {NULL, NULL, 0}};

    struct conf_tunnel_client *c = &((struct conf *)obj)->tunnel_client;
    int rc = ymap(y, n, "client", keys, obj);

    (void)k;
    if (rc == 0 && (c->slots == 0 || c->slots > 10000))
        return yerr(y, n, "slots", "must be between 1 and 10000");
    if (rc == 0 && (c->ping_interval == 0 || c->ping_timeout == 0))
        return yerr(y, n, "ping_interval", "ping_interval and ping_timeout are seconds, 1 or more");
    return rc;
}

void
tunnelconf_defaults(struct conf_tunnel_server *s, struct conf_tunnel_client *c)
{
    s->ping_interval = c->ping_interval = 15;
    s->ping_timeout = c->ping_timeout = 10;
    s->max_queue = 64;
    c->slots = 64;
}

void
tunnelconf_cleanup(struct conf_tunnel_server *s, struct conf_tunnel_client *c)
{
    free(s->token);
    strv_free(s->clients);
    free(c->cert);
    free(c->key);
    for (size_t i = 0; i < c->n_servers; i++) {
        free(c->servers[i].url);
        free(c->servers[i].pin);
        free(c->servers[i].token);
    }
}

static bool
same_text(const char *a, const char *b, const char *dflt)
{
    a = a ? a : dflt;
    b = b ? b : dflt;
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
tunnelconf_client_same(const struct conf_tunnel_client *running,
                       const struct conf_tunnel_client *next)
{
    if (running->n_servers != next->n_servers || running->slots != next->slots ||
        running->allow_admin != next->allow_admin ||
        running->ping_interval != next->ping_interval ||
        running->ping_timeout != next->ping_timeout ||
        !same_text(running->cert, next->cert, TUNNEL_CLIENT_CERT) ||
        !same_text(running->key, next->key, TUNNEL_CLIENT_KEY))
        return false;
    for (size_t i = 0; i < running->n_servers; i++) {
        const struct conf_tunnel_peer *a = &running->servers[i], *b = &next->servers[i];

        if (!same_text(a->url, b->url, NULL) || !same_text(a->pin, b->pin, NULL) ||
            !same_text(a->token, b->token, NULL))
            return false;
    }
    return true;
}
