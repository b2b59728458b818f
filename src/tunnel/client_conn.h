/*
 * The tunnel client's two halves and what they share: dial.c dials a server and keeps the
 * connection (resolve, connect, TLS, the upgrade, backoff and reconnecting), tunnel_client.c
 * is the GPU end on it (the HTTP/2 server session, the streams run by our own handler, the
 * control stream). Private to src/tunnel/.
 */
#ifndef GOINFER_TUNNEL_CLIENT_CONN_H
#define GOINFER_TUNNEL_CLIENT_CONN_H

#include <sys/socket.h>

#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "http/server.h"
#include "http/tls.h"
#include "tunnel/h2link.h"
#include "tunnel/tunnel_client.h"

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS  60000
#define STABLE_MS       60000  /* a connection this old resets the backoff */
#define REFUSED_WAIT_MS 30000  /* identity refused: someone must fix the allowlist first */
#define MAX_WAIT_MS     300000 /* the longest Retry-After or reconnect-after honoured */
#define MAX_ADDRS       8      /* addresses of one server name dialled, each its own tunnel */
#define CONTROL_PATH    "/.goinfer/control"
#define TICK_MS         250   /* how often register and load are reconsidered */
#define CONTROL_WAIT_MS 10000 /* a server that opens no control stream in this time is odd */
#define LOAD_EVERY_MS   5000  /* a load report at least this often */
#define USER_TIMEOUT_MS 30000 /* TCP_USER_TIMEOUT: unacknowledged data this long kills it */

struct tunnel_client {
    uv_loop_t *loop;
    struct conf_tunnel_client conf_copy; /* a reload must not change what a dial points at */
    const struct conf_tunnel_client *conf;
    struct tls_ctx *tls;
    struct http_server *srv; /* runs the streams' requests, as our listeners would */
    unsigned services;
    char *local_key;
    struct tdial *dials;
    size_t n_dials;
    int closing_handles; /* at free: freed when the last timer has closed */
    tunnel_describe_cb describe;
    void *describe_arg;
    uv_timer_t tick; /* register and load reports */
    bool stopping;   /* draining for shutdown: no new streams, no reconnects */
    size_t bodies;   /* request-body bytes its streams hold, all servers together */
    size_t bodies_max;
};

/* One address of a configured server, dialled again and again. Slot 0 of each server resolves
 * its name; every further address the name has gets a slot of its own (HA behind one name). */
struct tdial {
    struct tunnel_client *tc;
    const struct conf_tunnel_peer *peer;
    char host[256];
    int port;
    struct tdial *first;          /* slot 0 of this server (itself for slot 0) */
    struct sockaddr_storage addr; /* the address this slot dials (slots past 0) */
    char addr_name[INET6_ADDRSTRLEN];
    char label[320];     /* for the log: the URL, and the address for slots past 0 */
    bool active;         /* a slot past 0 is in use while the name has that many addresses */
    uv_timer_t retry;    /* the wait before the next attempt */
    uv_timer_t deadline; /* connecting, TLS and the upgrade must be done by then */
    unsigned attempt;
    uint64_t come_back_ms; /* the server's reconnect-after, for the next wait */
    struct tconn *conn;    /* the current attempt, or NULL while waiting */
};

enum tconn_state { C_CONNECTING, C_TLS, C_UPGRADE, C_H2 };

struct tconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_getaddrinfo_t resolve;
    struct tdial *d;
    struct tls_conn *tls;
    enum tconn_state state;
    struct buf head; /* the server's answer to our upgrade */
    struct h2link h2;
    bool h2_started, closing;
    int pending; /* libuv callbacks still to come; freed at 0 */
    uint64_t up_at;
    struct cstream *streams;
    struct cstream *ctl; /* the server's control stream */
    struct buf ctl_in, ctl_out;
    char *registered;   /* the register line last sent */
    unsigned busy_sent; /* the load last reported, and when */
    uint64_t load_at;
    bool drain_asked; /* the server asked us to leave once idle */
};

/* One end user's request, run against our own listener. */
struct cstream {
    struct tconn *c;
    int32_t id;
    char method[16], ctype[128], accept[128];
    char *path;
    struct buf body, out;
    size_t body_held;         /* counted in the client's total until the stream ends (the request
                                 it runs takes the buffer over, and frees it with itself) */
    size_t out_sent;          /* bytes of out already handed to nghttp2 */
    uint64_t waiting;         /* since when out has held bytes the server did not take */
    struct http_request *req; /* while our handler answers it */
    bool started, eof, responded;
    struct cstream *prev, *next;
};

/* dial.c */
void tdial_start(struct tdial *d);
/* Ends this attempt and schedules the next: wait_ms 0 means the backoff decides. */
void tconn_fail(struct tconn *c, const char *why, uint64_t wait_ms);
int tdial_parse_url(struct tdial *d, const char *url);
/* A server's wait for us, honoured within reason: it can't send us away for good. */
uint64_t tconn_bounded_wait(long long ms);

/* tunnel_client.c */
nghttp2_session *tconn_session_new(struct tconn *c);
/* Everything queued was handed to the socket: streams waiting for room may go on. */
void tconn_on_flushed(void *arg);
void tconn_stream_free(struct cstream *s);

#endif
