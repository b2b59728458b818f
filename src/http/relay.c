#include "relay.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    size_t len;
} passing[] = {
    {"content-type", 12},
    {"cache-control", 13},
    {"content-encoding", 16},
};

bool
http_relay_passes(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(passing) / sizeof(passing[0]); i++)
        if (passing[i].len == len && strncasecmp(passing[i].name, name, len) == 0)
            return true;
    return false;
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
