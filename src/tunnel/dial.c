/*
 * Dialling a Goinfer server and keeping the connection: resolve (every address of the name,
 * each its own slot), connect, TLS 1.3 with our identity and the server's pin, the upgrade
 * with the token proof, then HTTP/2 handed to the GPU end (tunnel_client.c). On any failure,
 * full-jitter backoff, the server's Retry-After or reconnect-after, and again.
 */
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "http/client.h" /* http_url_split */
#include "tunnel/client_conn.h"
#include "tunnel/fleet.h"
#include "tunnel/proof.h"

static void on_plain(struct tconn *c, const char *data, size_t len);

/* A server's wait for us is honoured, within reason: it can't send us away for good. */
uint64_t
tconn_bounded_wait(long long ms)
{
    return ms <= 0 ? 0 : ms > MAX_WAIT_MS ? MAX_WAIT_MS : (uint64_t)ms;
}

static void
on_written(uv_write_t *w, int status)
{
    (void)status; /* a failed write shows up as a read error too */
    free(w);
}

static int
send_cipher(struct tconn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    uv_write_t *w;

    if (n == (int)len)
        return 0;
    n = n > 0 ? n : 0;
    w = xmalloc(sizeof(*w) + len - (size_t)n);
    memcpy((char *)(w + 1), data + n, len - (size_t)n);
    b = uv_buf_init((char *)(w + 1), (unsigned)(len - (size_t)n));
    n = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (n < 0)
        free(w); /* no callback will */
    return n < 0 ? n : 0;
}

static int
send_cipher_cb(void *arg, const char *data, size_t len)
{
    return send_cipher(arg, data, len);
}

static void
deliver_plain(void *arg, const char *data, size_t len)
{
    struct tconn *c = arg;

    if (!c->closing)
        on_plain(c, data, len);
}

static int
send_plain(void *arg, const char *data, size_t len)
{
    struct tconn *c = arg;
    const struct tls_stream io = {send_cipher_cb, deliver_plain, c};

    if (c->closing)
        return -EPIPE;
    return tls_stream_output(c->tls, &io, data, len);
}

static void
conn_free_maybe(struct tconn *c)
{
    if (c->pending > 0)
        return;
    tls_conn_free(c->tls);
    buf_cleanup(&c->head);
    buf_cleanup(&c->ctl_in);
    buf_cleanup(&c->ctl_out);
    free(c->registered);
    free(c);
}

static void
on_conn_closed(uv_handle_t *h)
{
    struct tconn *c = h->data;

    c->pending--;
    conn_free_maybe(c);
}

static void
on_h2_closed(void *arg)
{
    struct tconn *c = arg;

    c->pending--;
    conn_free_maybe(c);
}

static void
on_retry(uv_timer_t *t)
{
    tdial_start(t->data);
}

/* Full jitter: a random wait up to min(cap, base * 2^attempt). */
static uint64_t
backoff_ms(struct tdial *d)
{
    return fleet_backoff_ms(d->attempt++, BACKOFF_BASE_MS, BACKOFF_CAP_MS, fleet_rand_system, NULL);
}

/* Ends this attempt and schedules the next: wait_ms 0 means the backoff decides. */
void
tconn_fail(struct tconn *c, const char *why, uint64_t wait_ms)
{
    struct tdial *d = c->d;
    uint64_t now = uv_now(d->tc->loop);

    if (c->closing)
        return;
    c->closing = true;
    if (c->h2_started) { /* its last flush still sees every stream; nothing is sent after */
        c->pending++;
        h2link_stop(&c->h2);
    }
    while (c->streams != NULL)
        tconn_stream_free(c->streams);
    if (c->up_at && now - c->up_at >= STABLE_MS)
        d->attempt = 0;
    if (wait_ms == 0 && d->come_back_ms > 0)
        wait_ms = d->come_back_ms; /* the server said when */
    if (wait_ms == 0)
        wait_ms = backoff_ms(d);
    d->come_back_ms = 0;
    if (d->tc->stopping)
        log_info("tunnel: connection to %s closed: %s", d->label, why);
    else
        log_warnx("tunnel: connection to %s lost: %s; reconnecting in %llu ms", d->label, why,
                  (unsigned long long)wait_ms);
    c->pending++;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    d->conn = NULL;
    uv_timer_stop(&d->deadline);
    if (!d->tc->stopping && (d == d->first || d->active))
        uv_timer_start(&d->retry, on_retry, wait_ms, 0);
}

static void
on_h2_dead(void *arg, const char *why)
{
    tconn_fail(arg, why, 0);
}

static void
send_upgrade(struct tconn *c)
{
    char pin[TLS_PIN_SIZE], proof[TUNNEL_PROOF_SIZE], req[512];
    struct tdial *d = c->d;
    int n;

    if (tls_conn_peer_pin(c->tls, pin) < 0 || strcmp(pin, d->peer->pin) != 0) {
        log_warnx("tunnel: %s presented key %s, not the pin configured for it (%s): refusing "
                  "to talk to it",
                  d->label, pin, d->peer->pin);
        tconn_fail(c, "server pin mismatch", REFUSED_WAIT_MS);
        return;
    }
    if (tunnel_proof(c->tls, d->peer->token, proof) < 0) {
        tconn_fail(c, "TLS exporter unavailable", 0);
        return;
    }
    n = snprintf(req, sizeof(req),
                 "GET /.well-known/goinfer-tunnel HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\n"
                 "Upgrade: ptth\r\nAuthorization: Goinfer proof=%s\r\n\r\n",
                 d->host, proof);
    c->state = C_UPGRADE;
    if (send_plain(c, req, (size_t)n) < 0)
        tconn_fail(c, "write failed", 0);
}

/* Retry-After in seconds among the head's lines (head_len bytes, not the body's), in ms. */
static uint64_t
retry_after_ms(const char *head, size_t head_len)
{
    for (const char *p = head, *end = head + head_len; p != NULL && p < end;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);

        if (eol == NULL)
            break;
        p = eol + 2;
        if ((size_t)(end - p) > 12 && strncasecmp(p, "retry-after:", 12) == 0)
            return tconn_bounded_wait(strtoll(p + 12, NULL, 10) * 1000);
    }
    return 0;
}

/* The status of "HTTP/1.x SSS ...", or 0 when the line is not that. */
static int
status_of(const char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
        line[8] != ' ' || !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]))
        return 0;
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

/* The server's answer to our upgrade; on 101 the rest of the bytes are HTTP/2. */
static void
upgrade_answer(struct tconn *c, const char *data, size_t len)
{
    struct tdial *d = c->d;
    const char *end;
    int status = 0;
    size_t used;

    if (buf_append(&c->head, data, len) < 0) {
        tconn_fail(c, "the server's answer to the upgrade is over 64 KiB", 0);
        return;
    }
    buf_cstr(&c->head);
    end = strstr(c->head.data, "\r\n\r\n");
    if (end == NULL)
        return;
    status = status_of(c->head.data, (size_t)(end - c->head.data));
    if (status != 101) {
        const char *body = end + 4;
        uint64_t wait = retry_after_ms(c->head.data, (size_t)(end + 2 - c->head.data));

        log_warnx("tunnel: %s refused the tunnel with %d: %.300s", d->label, status, body);
        tconn_fail(c, "refused",
                   wait                             ? wait
                   : status == 401 || status == 403 ? REFUSED_WAIT_MS
                                                    : 0);
        return;
    }
    used = (size_t)(end + 4 - c->head.data);
    c->state = C_H2;
    uv_timer_stop(&d->deadline);
    c->up_at = uv_now(d->tc->loop);
    c->h2 = (struct h2link){.send = send_plain,
                            .on_dead = on_h2_dead,
                            .on_closed = on_h2_closed,
                            .on_flushed = tconn_on_flushed,
                            .arg = c,
                            .ping_ms = d->tc->conf->ping_interval * 1000,
                            .timeout_ms = d->tc->conf->ping_timeout * 1000};
    c->h2.session = tconn_session_new(c);
    c->h2_started = true;
    h2link_init(&c->h2, d->tc->loop);
    h2link_start(&c->h2, (uint32_t)d->tc->conf->slots + 1); /* and the control stream */
    log_info("tunnel: connected to %s; serving its users", d->label);
    if (c->head.len > used)
        on_plain(c, c->head.data + used, c->head.len - used);
    buf_reset(&c->head);
}

static void
on_plain(struct tconn *c, const char *data, size_t len)
{
    if (c->state == C_H2) {
        h2link_input(&c->h2, data, len);
    } else if (c->state == C_UPGRADE)
        upgrade_answer(c, data, len);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char chunk[64 * 1024];

    (void)h, (void)suggested;
    *b = uv_buf_init(chunk, sizeof(chunk));
}

static void
on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct tconn *c = st->data;
    const struct tls_stream io = {send_cipher_cb, deliver_plain, c};
    char err[256];

    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        tconn_fail(
            c, nread == UV_EOF ? "the server closed the connection" : uv_strerror((int)nread), 0);
        return;
    }
    if (tls_stream_input(c->tls, &io, b->base, (size_t)nread, err, sizeof(err)) < 0)
        tconn_fail(c, err, 0);
    else if (c->state == C_TLS && tls_conn_ready(c->tls)) /* nothing to deliver before it */
        send_upgrade(c);
}

/* A peer that stops acknowledging what we send is dead after USER_TIMEOUT_MS, even when our
 * PINGs are stuck behind unacknowledged data. */
static void
set_user_timeout(struct tconn *c)
{
    uv_os_fd_t fd;
    unsigned ms = USER_TIMEOUT_MS;

    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct tconn *c = req->data;
    struct buf hello;

    c->pending--;
    if (c->closing)
        return;
    if (status < 0) {
        tconn_fail(c, uv_strerror(status), 0);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1); /* best effort: only latency depends on it */
    set_user_timeout(c);
    status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (status < 0) {
        tconn_fail(c, uv_strerror(status), 0);
        return;
    }
    c->tls = tls_conn_new_client(c->d->tc->tls, c->d->host);
    c->state = C_TLS;
    buf_init(&hello, SIZE_MAX);
    if (tls_conn_start(c->tls, &hello) < 0 || send_cipher(c, hello.data, hello.len) < 0)
        tconn_fail(c, "TLS handshake could not start", 0);
    buf_cleanup(&hello);
}

static void
connect_to(struct tconn *c, const struct sockaddr *addr)
{
    c->pending++;
    if (uv_tcp_connect(&c->connect, &c->tcp, addr, on_connected) < 0) {
        c->pending--;
        tconn_fail(c, "connect failed", 0);
    }
}

/* The name's other addresses (after the first, which slot 0 dials) go to slots 1 and up: a
 * new address starts a tunnel, a changed one is dialled at its slot's next reconnect, and a
 * slot whose address is gone ends with its connection. */
static void
spread_addresses(struct tdial *first, const struct addrinfo *ai)
{
    size_t k = 1;

    for (; ai != NULL && k < MAX_ADDRS; ai = ai->ai_next, k++) {
        struct tdial *d = first + k;
        bool was = d->active;

        memcpy(&d->addr, ai->ai_addr, ai->ai_addrlen);
        uv_ip_name(ai->ai_addr, d->addr_name, sizeof(d->addr_name));
        snprintf(d->label, sizeof(d->label), "%s (%s)", first->peer->url, d->addr_name);
        d->active = true;
        if (!was && !d->tc->stopping) {
            log_info("tunnel: %s has another address, %s: dialling it too", first->peer->url,
                     d->addr_name);
            tdial_start(d);
        }
    }
    for (; k < MAX_ADDRS; k++)
        first[k].active = false;
}

static void
on_resolved(uv_getaddrinfo_t *r, int status, struct addrinfo *res)
{
    struct tconn *c = r->data;

    c->pending--;
    if (c->closing) {
        uv_freeaddrinfo(res);
        conn_free_maybe(c);
        return;
    }
    if (status < 0 || res == NULL) {
        tconn_fail(c, uv_strerror(status), 0);
    } else {
        spread_addresses(c->d, res->ai_next);
        connect_to(c, res->ai_addr);
    }
    uv_freeaddrinfo(res);
}

/* Connecting, TLS and the upgrade must be done within ping_timeout, like a PING's answer:
 * a server that takes the connection and says nothing would hold us forever. */
static void
on_dial_timeout(uv_timer_t *t)
{
    struct tdial *d = t->data;
    char why[96];

    if (d->conn == NULL || d->conn->state == C_H2)
        return;
    snprintf(why, sizeof(why), "no answer within %llu ms",
             (unsigned long long)d->tc->conf->ping_timeout * 1000);
    tconn_fail(d->conn, why, 0);
}

void
tdial_start(struct tdial *d)
{
    struct tconn *c = xcalloc(1, sizeof(*c));
    char port[8];

    c->d = d;
    d->conn = c;
    buf_init(&c->head, 64 * 1024);
    buf_init(&c->ctl_in, 1 << 20);
    buf_init(&c->ctl_out, SIZE_MAX);
    uv_tcp_init(d->tc->loop, &c->tcp);
    c->tcp.data = c->connect.data = c->resolve.data = c;
    uv_timer_start(&d->deadline, on_dial_timeout, d->tc->conf->ping_timeout * 1000, 0);
    if (d != d->first) {
        connect_to(c, (struct sockaddr *)&d->addr);
        return;
    }
    snprintf(port, sizeof(port), "%d", d->port);
    c->pending++;
    if (uv_getaddrinfo(d->tc->loop, &c->resolve, on_resolved, d->host, port,
                       &(struct addrinfo){.ai_socktype = SOCK_STREAM}) < 0) {
        c->pending--;
        tconn_fail(c, "cannot resolve", 0);
    }
}

/* https://host[:port][/...] */
int
tdial_parse_url(struct tdial *d, const char *url)
{
    const char *path;

    return strncmp(url, "https://", 8) == 0
               ? http_url_split(url, d->host, sizeof(d->host), &d->port, &path)
               : -1;
}
