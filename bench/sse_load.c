/*
 * The two ends of bench/sse_bench.py, in C so that the measuring does not dominate what is
 * measured (a single Python process writing and reading 20,000 events a second had a p99 of
 * its own of 16-23 ms at 1,000 streams, direct).
 *
 * One thread is a FAKE SSE upstream: every request gets `events` chunked events `gap_ms`
 * apart, each stamped with CLOCK_MONOTONIC as it is written; each stream starts at a random
 * offset within the gap, as independent generations would. Another thread reads: for each
 * line "N PORT" on stdin it opens N streams to 127.0.0.1:PORT at once, reads every event,
 * and prints "p50 p99 count" of the delays (read time minus stamp, in ms).
 *
 * Usage: sse_load EVENTS GAP_MS   (prints the upstream's port first)
 */
#include <sys/resource.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static int n_events;
static uint64_t gap_ms;

static uint64_t
now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(suggested);
    b->len = suggested;
}

static void
on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Writes now, else queues a copy (a slow reader is part of what we measure, not an error). */
static void
on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void
send_bytes(uv_stream_t *s, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    uv_write_t *w;

    if (n == (int)len)
        return;
    if (n < 0)
        n = 0;
    w = malloc(sizeof(*w) + len - (size_t)n);
    memcpy(w + 1, data + n, len - (size_t)n);
    b = uv_buf_init((char *)(w + 1), (unsigned)(len - (size_t)n));
    if (uv_write(w, s, &b, 1, on_written) != 0)
        free(w);
}

/* ---- the FAKE upstream ---- */

struct upconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    int sent, open_handles;
    size_t matched; /* of "\r\n\r\n" */
    bool started;
};

static void
upconn_closed(uv_handle_t *h)
{
    struct upconn *u = h->data;

    if (--u->open_handles == 0)
        free(u);
}

static void
upconn_close(struct upconn *u)
{
    if (uv_is_closing((uv_handle_t *)&u->tcp))
        return;
    uv_close((uv_handle_t *)&u->timer, upconn_closed);
    uv_close((uv_handle_t *)&u->tcp, upconn_closed);
}

static void
on_tick(uv_timer_t *t)
{
    struct upconn *u = t->data;
    char line[64], chunk[96];
    int n;

    if (u->sent == n_events) {
        send_bytes((uv_stream_t *)&u->tcp, "0\r\n\r\n", 5);
        uv_timer_stop(t);
        u->started = false; /* kept open: a proxy may send its next request on it */
        u->sent = 0;
        return;
    }
    n = snprintf(line, sizeof(line), "data: %llu\n\n", (unsigned long long)now_ns());
    n = snprintf(chunk, sizeof(chunk), "%x\r\n%s\r\n", n, line);
    send_bytes((uv_stream_t *)&u->tcp, chunk, (size_t)n);
    u->sent++;
}

static void
on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    struct upconn *u = s->data;

    for (ssize_t i = 0; i < n && !u->started; i++) { /* the small body is skipped here too */
        u->matched = b->base[i] == "\r\n\r\n"[u->matched] ? u->matched + 1 : 0;
        if (u->matched == 4) { /* the body, small, is ignored */
            u->started = true;
            send_bytes(s, head, sizeof(head) - 1);
            uv_timer_start(&u->timer, on_tick, (uint64_t)rand() % gap_ms, gap_ms);
        }
    }
    if (n < 0)
        upconn_close(u);
    free(b->base);
}

static void
on_up_connection(uv_stream_t *l, int status)
{
    struct upconn *u;

    if (status < 0)
        return;
    u = calloc(1, sizeof(*u));
    uv_tcp_init(l->loop, &u->tcp);
    uv_timer_init(l->loop, &u->timer);
    u->tcp.data = u->timer.data = u;
    u->open_handles = 2;
    if (uv_accept(l, (uv_stream_t *)&u->tcp) != 0) {
        upconn_close(u);
        return;
    }
    uv_tcp_nodelay(&u->tcp, 1);
    uv_read_start((uv_stream_t *)&u->tcp, on_alloc, on_up_read);
}

static void
upstream_thread(void *arg)
{
    uv_run(arg, UV_RUN_DEFAULT);
}

/* ---- the reader ---- */

struct round {
    uv_loop_t *loop;
    double *delays;
    size_t n_delays, cap;
    int open;
};

struct rconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct round *r;
    char carry[64]; /* the unfinished line of the last read */
    size_t carry_len;
    char tail[7]; /* the last bytes read, for the end of the chunked answer */
};

static void
record(struct round *r, const char *line, size_t len, uint64_t at)
{
    char num[32];

    if (len < 7 || memcmp(line, "data: ", 6) != 0 || len - 6 >= sizeof(num))
        return;
    memcpy(num, line + 6, len - 6);
    num[len - 6] = '\0';
    if (r->n_delays == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4096;
        r->delays = realloc(r->delays, r->cap * sizeof(*r->delays));
    }
    r->delays[r->n_delays++] = (double)(at - strtoull(num, NULL, 10)) / 1e6;
}

static void
on_reader_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rconn *c = s->data;
    uint64_t at = now_ns();
    ssize_t start = 0;

    for (ssize_t i = 0; i < n; i++) {
        if (b->base[i] != '\n')
            continue;
        if (c->carry_len > 0) { /* a line split across reads */
            size_t k = (size_t)(i - start);

            if (c->carry_len + k < sizeof(c->carry)) {
                memcpy(c->carry + c->carry_len, b->base + start, k);
                record(c->r, c->carry, c->carry_len + k, at);
            }
            c->carry_len = 0;
        } else {
            record(c->r, b->base + start, (size_t)(i - start), at);
        }
        start = i + 1;
    }
    if (n > start) {
        size_t k = (size_t)(n - start);

        if (c->carry_len + k < sizeof(c->carry)) {
            memcpy(c->carry + c->carry_len, b->base + start, k);
            c->carry_len += k;
        } else {
            c->carry_len = 0;
        }
    }
    if (n >= (ssize_t)sizeof(c->tail)) {
        memcpy(c->tail, b->base + n - (ssize_t)sizeof(c->tail), sizeof(c->tail));
    } else if (n > 0) {
        memmove(c->tail, c->tail + n, sizeof(c->tail) - (size_t)n);
        memcpy(c->tail + sizeof(c->tail) - (size_t)n, b->base, (size_t)n);
    }
    /* the answer ends with its last chunk (direct) or the proxy's close */
    if (n < 0 || memcmp(c->tail, "\r\n0\r\n\r\n", sizeof(c->tail)) == 0) {
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, on_closed);
        c->r->open--;
    }
    free(b->base);
}

static void
on_reader_connected(uv_connect_t *req, int status)
{
    static const char body[] = "{\"model\":\"sse\",\"stream\":true}";
    struct rconn *c = req->data;
    char head[256];
    int n;

    if (status < 0) {
        fprintf(stderr, "sse_load: connect: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    n = snprintf(head, sizeof(head),
                 "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                 "application/json\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                 sizeof(body) - 1, body);
    send_bytes((uv_stream_t *)&c->tcp, head, (size_t)n);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_reader_read);
}

static int
by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void
run_round(int n, int port)
{
    struct round r = {0};
    struct sockaddr_in addr;

    r.loop = uv_loop_new();
    uv_ip4_addr("127.0.0.1", port, &addr);
    for (int i = 0; i < n; i++) {
        struct rconn *c = calloc(1, sizeof(*c));

        c->r = &r;
        uv_tcp_init(r.loop, &c->tcp);
        c->tcp.data = c->connect.data = c;
        uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, on_reader_connected);
        r.open++;
    }
    uv_run(r.loop, UV_RUN_DEFAULT);
    uv_loop_delete(r.loop);
    qsort(r.delays, r.n_delays, sizeof(*r.delays), by_value);
    if (r.n_delays == 0) {
        printf("0 0 0\n");
    } else {
        size_t p99 = (size_t)((double)r.n_delays * 0.99);

        printf("%.3f %.3f %zu\n", r.delays[r.n_delays / 2], r.delays[p99 ? p99 - 1 : 0],
               r.n_delays);
    }
    fflush(stdout);
    free(r.delays);
}

int
main(int argc, char **argv)
{
    uv_loop_t up_loop;
    uv_tcp_t listener;
    uv_thread_t up;
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    struct rlimit rl;
    int len = sizeof(bound), n, port;

    if (argc != 3 || (n_events = atoi(argv[1])) <= 0 ||
        (gap_ms = strtoull(argv[2], NULL, 10)) == 0) {
        fprintf(stderr, "usage: sse_load EVENTS GAP_MS\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* 1,000 streams are 2,000 sockets here */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    srand((unsigned)now_ns());
    uv_loop_init(&up_loop);
    uv_tcp_init(&up_loop, &listener);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&listener, 4096, on_up_connection) != 0) {
        fprintf(stderr, "sse_load: cannot listen\n");
        return 1;
    }
    uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len);
    printf("%d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    uv_thread_create(&up, upstream_thread, &up_loop);
    while (scanf("%d %d", &n, &port) == 2)
        run_round(n, port);
    return 0; /* the upstream thread ends with the process */
}
