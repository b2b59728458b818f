/* libFuzzer target: the HTTP/1.1 request assembler alone, with no socket (so far more runs a
 * second than fuzz_http's loopback): arbitrary bytes in, fed in pieces whose size the first
 * byte picks, pipelined requests taken one after another. Hooks refuse heads under /deny and
 * bodies past 4 KiB under /cap, as the server's admission and body limits do. Every request
 * that completes must hold to the limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
head(void *arg, struct http_request *req)
{
    (void)arg;
    if (req->path == NULL || req->method_name == NULL)
        __builtin_trap();
    return strncmp(req->path, "/deny", 5) == 0 ? -1 : 0;
}

static int
body(void *arg, size_t n)
{
    struct http_request *req = arg;

    return strncmp(req->path, "/cap", 4) == 0 && req->body.len + n > 4096 ? -1 : 0;
}

static const struct h1_hooks hooks = {head, body};

static void
check(const struct h1 *h, const struct http_request *req)
{
    if (req->n_headers > HTTP_MAX_HEADERS || req->body.len > req->body.max ||
        h->url.len + h->hdr.len > h->header_bytes + 2 || req->path[0] == '\0')
        __builtin_trap();
    for (size_t i = 0; i < req->n_headers; i++)
        if (memchr(req->headers[i].name, '\0', req->headers[i].name_len) != NULL)
            __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_request req;
    struct h1 h;
    size_t piece, n, at = 1;

    if (size == 0)
        return 0;
    memset(&req, 0, sizeof(req));
    buf_init(&req.body, 16384);
    h1_init(&h, 2048, &req, &hooks, &req);
    piece = (size_t)data[0] % 64 + 1;
    while (at < size && (h.state == H1_READING || h.state == H1_COMPLETE)) {
        size_t len = size - at < piece ? size - at : piece;

        if (h.state == H1_COMPLETE) {
            check(&h, &req);
            h1_next(&h);
        }
        n = h1_feed(&h, (const char *)data + at, len);
        if (n == 0 && h.state == H1_READING)
            break;
        at += n;
    }
    if (h.state == H1_COMPLETE)
        check(&h, &req);
    h1_cleanup(&h);
    buf_cleanup(&req.body);
    free(req.path);
    free(req.query);
    return 0;
}
