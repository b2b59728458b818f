/*
 * src/http/client.c against an upstream in this process (libuv, one loop): an answer whose
 * reader paused at every piece, then the next request on the pooled connection.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "http/client.h"

/* The upstream: answers each request head on a connection with one canned response, whole,
 * in one write, and counts the connections it accepted. */
struct upstream {
    uv_tcp_t listener;
    const char *answer;
    int accepts;
    char head[4096];
    size_t head_len;
};

struct upconn {
    uv_tcp_t tcp;
    struct upstream *up;
    size_t matched; /* bytes of "\r\n\r\n" seen in a row */
};

static void
on_up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(suggested);
    b->len = suggested;
}

static void
on_up_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void
on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct upconn *c = s->data;

    for (ssize_t i = 0; i < n; i++) {
        c->matched = b->base[i] == "\r\n\r\n"[c->matched] ? c->matched + 1 : 0;
        if (c->matched == 4) { /* a request head (GETs only): the answer, all at once */
            uv_write_t *w = malloc(sizeof(*w));
            uv_buf_t out = uv_buf_init((char *)c->up->answer, (unsigned)strlen(c->up->answer));

            c->matched = 0;
            uv_write(w, s, &out, 1, on_up_written);
        }
    }
    if (n < 0)
        uv_close((uv_handle_t *)s, (uv_close_cb)free);
    free(b->base);
}

static void
on_up_connection(uv_stream_t *l, int status)
{
    struct upstream *up = l->data;
    struct upconn *c = calloc(1, sizeof(*c));

    assert_int_equal(status, 0);
    c->up = up;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    up->accepts++;
    uv_read_start((uv_stream_t *)&c->tcp, on_up_alloc, on_up_read);
}

/* The client side: round 0 pauses at every piece and resumes from a timer; round 1 reads. */
struct run {
    uv_loop_t *loop;
    struct http_client *client;
    struct http_fetch *fetch;
    uv_timer_t resume, guard;
    char url[64];
    int round, errs[2];
    size_t got[2];
    bool hung;
};

static void start(struct run *r);

static void
on_response(void *arg, long status, const struct http_header *h, size_t n)
{
    (void)arg, (void)h, (void)n;
    assert_int_equal(status, 200);
}

static int
on_body(void *arg, const char *data, size_t len)
{
    struct run *r = arg;

    (void)data;
    r->got[r->round] += len;
    return r->round == 0 ? HTTP_FETCH_PAUSE : 0;
}

static void
on_done(void *arg, int err, const char *msg)
{
    struct run *r = arg;

    (void)msg;
    r->errs[r->round] = err;
    r->fetch = NULL;
    uv_timer_stop(&r->resume);
    if (++r->round < 2) {
        start(r);
        return;
    }
    uv_stop(r->loop);
}

static void
on_resume(uv_timer_t *t)
{
    struct run *r = t->data;

    if (r->fetch != NULL)
        http_fetch_resume(r->fetch);
}

static void
on_guard(uv_timer_t *t)
{
    struct run *r = t->data;

    r->hung = true;
    uv_stop(r->loop);
}

static void
start(struct run *r)
{
    static const struct http_fetch_cb cb = {on_response, on_body, on_done};
    struct http_fetch_opts o = {.url = r->url, .idle_s = 5};

    r->fetch = http_fetch_start(r->client, &o, &cb, r);
    if (r->round == 0)
        uv_timer_start(&r->resume, on_resume, 5, 5);
}

static void
on_closed(uv_handle_t *h)
{
    (void)h;
}

/* What is still open at the end is the upstream's side of the connections. */
static void
close_upconn(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, (uv_close_cb)free);
}

static void
paused_to_the_end_then_reused(const char *answer, size_t body_len)
{
    uv_loop_t loop;
    struct upstream up = {.answer = answer};
    struct run r = {.loop = &loop};
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof(bound);

    uv_loop_init(&loop);
    uv_tcp_init(&loop, &up.listener);
    up.listener.data = &up;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&up.listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&up.listener, 8, on_up_connection), 0);
    uv_tcp_getsockname(&up.listener, (struct sockaddr *)&bound, &len);
    snprintf(r.url, sizeof(r.url), "http://127.0.0.1:%d/x",
             ntohs(((struct sockaddr_in *)&bound)->sin_port));
    r.client = http_client_new(&loop);
    uv_timer_init(&loop, &r.resume);
    uv_timer_init(&loop, &r.guard);
    r.resume.data = r.guard.data = &r;
    uv_timer_start(&r.guard, on_guard, 3000, 0);
    start(&r);
    uv_run(&loop, UV_RUN_DEFAULT);

    assert_false(r.hung); /* the request after the paused one was answered */
    assert_int_equal(r.errs[0], HTTP_FETCH_OK);
    assert_int_equal(r.errs[1], HTTP_FETCH_OK);
    assert_int_equal(r.got[0], body_len);
    assert_int_equal(r.got[1], body_len);
    assert_int_equal(up.accepts, 1); /* the connection was kept and reused */

    if (r.fetch != NULL)
        http_fetch_cancel(r.fetch);
    http_client_release(r.client);
    uv_close((uv_handle_t *)&r.resume, on_closed);
    uv_close((uv_handle_t *)&r.guard, on_closed);
    uv_close((uv_handle_t *)&up.listener, on_closed);
    uv_walk(&loop, close_upconn, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static void
with_a_length(void **state)
{
    (void)state;
    paused_to_the_end_then_reused("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
                                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                                  30);
}

static void
chunked(void **state)
{
    (void)state;
    paused_to_the_end_then_reused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "a\r\nxxxxxxxxxx\r\na\r\nxxxxxxxxxx\r\na\r\nxxxxxxxxxx\r\n"
                                  "0\r\n\r\n",
                                  30);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(with_a_length),
        cmocka_unit_test(chunked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
