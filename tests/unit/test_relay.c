/* The relay policy: what of an upstream's response reaches the end user, on every road. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/relay.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static void
content_headers_pass_and_the_rest_stays(void **state)
{
    const struct http_header in[] = {
        H("Content-Type", "text/event-stream"),
        H("Set-Cookie", "a=b"),
        H("Location", "http://evil/"),
        H("CACHE-CONTROL", "no-cache"),
        H("Transfer-Encoding", "chunked"),
        H("Connection", "keep-alive"),
        H("Content-Length", "12"),
        H("content-encoding", "gzip"),
        H("Server", "llama.cpp"),
    };
    struct http_header out[8];
    size_t n;

    (void)state;
    n = http_relay_filter(in, sizeof(in) / sizeof(in[0]), out, 8);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].name, "Content-Type");
    assert_string_equal(out[1].name, "CACHE-CONTROL");
    assert_string_equal(out[2].name, "content-encoding");
    assert_int_equal(http_relay_filter(in, 9, out, 1), 1); /* bounded by max */
    assert_false(http_relay_passes("content-typ", 11));
    assert_false(http_relay_passes("content-type-x", 14));
}

static void
event_streams_flush_early(void **state)
{
    (void)state;
    assert_true(http_relay_flush_early("text/event-stream; charset=utf-8", 32));
    assert_true(http_relay_flush_early("Text/Event-Stream", 17));
    assert_false(http_relay_flush_early("application/json", 16));
    assert_false(http_relay_flush_early("text/event", 10));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(content_headers_pass_and_the_rest_stays),
        cmocka_unit_test(event_streams_flush_early),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
