/* Request assembly from bytes (h1.c), with no socket: pieces of any size, pipelining, the one
 * limit on request line plus headers, absolute-form targets, hooks that answer from the head
 * or refuse a body part. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/h1.h"

struct seen {
    int heads, refuse_head;
    size_t body_bytes, refuse_body_past;
};

static int
head(void *arg, struct http_request *req)
{
    struct seen *s = arg;

    (void)req;
    s->heads++;
    return s->refuse_head ? -1 : 0;
}

static int
body(void *arg, size_t n)
{
    struct seen *s = arg;

    s->body_bytes += n;
    return s->refuse_body_past && s->body_bytes > s->refuse_body_past ? -1 : 0;
}

static const struct h1_hooks hooks = {head, body};

struct fixture {
    struct http_request req;
    struct h1 h;
    struct seen seen;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    buf_init(&f->req.body, 1000);
    h1_init(&f->h, 200, &f->req, &hooks, &f->seen);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    h1_cleanup(&f->h);
    buf_cleanup(&f->req.body);
    free(f->req.path);
    free(f->req.query);
    free(f);
    return 0;
}

/* Feeds s one byte at a time; returns the bytes taken. */
static size_t
feed_bytes(struct h1 *h, const char *s)
{
    size_t taken = 0, n = strlen(s);

    while (taken < n && h->state == H1_READING)
        taken += h1_feed(h, s + taken, 1);
    return taken;
}

static void
a_request_byte_by_byte_then_the_next(void **state)
{
    struct fixture *f = *state;
    const char *two = "POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                      "GET /health HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t taken = feed_bytes(&f->h, two);

    assert_int_equal(f->h.state, H1_COMPLETE);
    assert_string_equal(f->req.method_name, "POST");
    assert_string_equal(f->req.path, "/v1/x");
    assert_string_equal(f->req.query, "a=1");
    assert_int_equal(f->req.body.len, 3);
    assert_memory_equal(f->req.body.data, "abc", 3);
    assert_true(f->req.keep_alive);
    h1_next(&f->h);
    assert_int_equal(h1_feed(&f->h, two + taken, strlen(two) - taken), strlen(two) - taken);
    assert_int_equal(f->h.state, H1_COMPLETE);
    assert_string_equal(f->req.path, "/health");
    assert_null(f->req.query);
    assert_int_equal(f->seen.heads, 2);
}

/* 150 bytes of target and 60 of headers pass 200 together, though each alone would not. */
static void
one_limit_for_the_line_and_the_headers(void **state)
{
    struct fixture *f = *state;
    char req[512];

    snprintf(req, sizeof(req), "GET /%0150d HTTP/1.1\r\nX-Pad: %060d\r\n\r\n", 0, 0);
    h1_feed(&f->h, req, strlen(req));
    assert_int_equal(f->h.state, H1_TOO_LARGE);
    assert_int_equal(f->seen.heads, 0);
}

static void
an_absolute_target_names_the_host(void **state)
{
    struct fixture *f = *state;
    const char *req = "GET http://example.org:8080?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    const char *host = NULL;

    h1_feed(&f->h, req, strlen(req));
    assert_int_equal(f->h.state, H1_COMPLETE);
    assert_string_equal(f->req.path, "/");
    assert_string_equal(f->req.query, "q=1");
    for (size_t i = 0; i < f->req.n_headers; i++)
        if (strcmp(f->req.headers[i].name, "Host") == 0)
            host = f->req.headers[i].value;
    assert_non_null(host);
    assert_memory_equal(host, "example.org:8080", 16);
}

/* A hook that answers from the head stops the assembly before any body byte. */
static void
the_head_hook_answers_before_the_body(void **state)
{
    struct fixture *f = *state;
    const char *req = "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";

    f->seen.refuse_head = 1;
    h1_feed(&f->h, req, strlen(req));
    assert_int_equal(f->h.state, H1_ANSWERED);
    assert_int_equal(f->seen.body_bytes, 0);
    assert_int_equal(f->req.body.len, 0);
    assert_true(h1_has_body(&f->h));
    assert_int_equal(h1_content_length(&f->h), 5);
}

/* A chunked body asked for part by part, refused past a bound; and one past body.max. */
static void
body_parts_are_asked_for_and_bounded(void **state)
{
    struct fixture *f = *state;
    const char *req = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";

    f->seen.refuse_body_past = 6;
    h1_feed(&f->h, req, strlen(req));
    assert_int_equal(f->h.state, H1_ANSWERED);
    assert_int_equal(f->req.body.len, 4);
    assert_int_equal(h1_content_length(&f->h), -1);
}

static void
a_declared_body_over_the_limit_is_refused_first(void **state)
{
    struct fixture *f = *state;
    const char *req = "POST /x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";

    h1_feed(&f->h, req, strlen(req));
    assert_int_equal(f->h.state, H1_BODY_LIMIT);
    assert_int_equal(f->seen.heads, 0); /* too large for anyone: no hook is asked */
}

/* A chunked body's trailers come through the header callbacks: they are counted and dropped,
 * and the request's headers (pointers into the head's buffer) stay where they were. */
static void
trailers_leave_the_head_alone(void **state)
{
    struct fixture *f = *state;
    char req[512];
    const char *host;
    size_t n;

    n = (size_t)snprintf(req, sizeof(req),
                         "POST /x HTTP/1.1\r\nHost: h\r\nOrigin: http://o\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: %080d\r\n\r\n",
                         0);
    h1_feed(&f->h, req, n);
    assert_int_equal(f->h.state, H1_COMPLETE);
    assert_int_equal(f->req.n_headers, 3);
    host = f->req.headers[0].value;
    assert_string_equal(host, "h");
    assert_string_equal(f->req.headers[1].value, "http://o");
    assert_int_equal(f->req.body.len, 5);
}

/* Trailers count against the same limit as the head. */
static void
trailers_are_bounded(void **state)
{
    struct fixture *f = *state;
    char req[512];
    size_t n;

    n = (size_t)snprintf(req, sizeof(req),
                         "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "1\r\na\r\n0\r\nX-T: %0200d\r\n\r\n",
                         0);
    h1_feed(&f->h, req, n);
    assert_int_equal(f->h.state, H1_TOO_LARGE);
}

static void
garbage_is_malformed(void **state)
{
    struct fixture *f = *state;

    h1_feed(&f->h, "\x16\x03\x01 hello\r\n\r\n", 14);
    assert_int_equal(f->h.state, H1_MALFORMED);
    assert_non_null(h1_error(&f->h));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_request_byte_by_byte_then_the_next, setup, teardown),
        cmocka_unit_test_setup_teardown(one_limit_for_the_line_and_the_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(an_absolute_target_names_the_host, setup, teardown),
        cmocka_unit_test_setup_teardown(the_head_hook_answers_before_the_body, setup, teardown),
        cmocka_unit_test_setup_teardown(body_parts_are_asked_for_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(a_declared_body_over_the_limit_is_refused_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(trailers_leave_the_head_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(trailers_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_is_malformed, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
