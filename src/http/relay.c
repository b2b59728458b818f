#include "relay.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name, *title; /* HTTP/2's spelling, and the usual one for HTTP/1.1 */
    size_t len;
} passing[] = {
    {"content-type", "Content-Type", 12},
    {"cache-control", "Cache-Control", 13},
    {"content-encoding", "Content-Encoding", 16},
};

/* The index of a passing header, or -1. */
static int
find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(passing) / sizeof(passing[0]); i++)
        if (passing[i].len == len && strncasecmp(passing[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

const char *
http_relay_canonical(const char *name, size_t len)
{
    int i = find(name, len);

    return i < 0 ? NULL : passing[i].name;
}

bool
http_relay_passes(const char *name, size_t len)
{
    return http_relay_canonical(name, len) != NULL;
}

size_t
http_relay_filter(const struct http_header *h, size_t n, struct http_header *out, size_t max)
{
    size_t k = 0;

    for (size_t i = 0; i < n && k < max; i++)
        if (http_relay_passes(h[i].name, h[i].name_len))
            out[k++] = h[i];
    return k;
}

bool
http_relay_flush_early(const char *ctype, size_t len)
{
    return len >= 17 && strncasecmp(ctype, "text/event-stream", 17) == 0;
}

int
http_relay_start(struct http_request *req, int status, const struct http_header *h, size_t n,
                 int64_t content_length)
{
    struct http_header out[HTTP_RELAY_MAX + 1];
    size_t k = http_relay_filter(h, n, out, HTTP_RELAY_MAX);
    bool early = false;
    int rc;

    for (size_t i = 0; i < k; i++)
        if (out[i].name_len == 12 && strncasecmp(out[i].name, "content-type", 12) == 0)
            early = http_relay_flush_early(out[i].value, out[i].value_len);
    out[k++] = (struct http_header){"X-Accel-Buffering", 17, "no", 2};
    rc = http_stream_start(req, status, out, k, content_length);
    if (rc == 0 && early)
        http_stream_flush(req);
    return rc;
}

void
http_relay_head_reset(struct http_relay_head *rh)
{
    rh->n = rh->used = 0;
}

void
http_relay_head_add(struct http_relay_head *rh, const char *name, size_t nlen, const char *value,
                    size_t vlen)
{
    int i = find(name, nlen);

    if (i < 0 || rh->n == HTTP_RELAY_MAX || vlen > sizeof(rh->store) - rh->used)
        return;
    memcpy(rh->store + rh->used, value, vlen);
    rh->h[rh->n++] = (struct http_header){passing[i].title, nlen, rh->store + rh->used, vlen};
    rh->used += vlen;
}
