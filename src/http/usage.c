#include "usage.h"

#include <stdlib.h>
#include <string.h>

#define TAIL 4096

/* The number after "key": in data, or -1 when absent (or cut by a chunk boundary). */
static double
number_after(const char *data, size_t len, const char *key)
{
    size_t k = strlen(key);
    const char *p = memmem(data, len, key, k);
    char tmp[32];
    size_t n;

    if (p == NULL)
        return -1;
    p += k;
    n = (size_t)(data + len - p);
    n = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    return strtod(tmp, NULL);
}

bool
http_usage_scan(struct http_usage *u, const char *data, size_t len, double *predicted_n)
{
    size_t skip = len > TAIL ? len - TAIL : 0;
    const char *tail = data + skip;
    size_t n_tail = len - skip;
    double tps = number_after(tail, n_tail, "\"predicted_per_second\":");
    double n = number_after(tail, n_tail, "\"predicted_n\":");
    double prompt = number_after(tail, n_tail, "\"prompt_tokens\":");
    double completion = number_after(tail, n_tail, "\"completion_tokens\":");
    double cost = number_after(tail, n_tail, "\"cost\":");

    *predicted_n = n;
    if (tps < 0 && completion < 0)
        return false;
    if (prompt < 0) { /* llama-server's timings: the prompt is what it read plus its cache */
        double cached = number_after(tail, n_tail, "\"cache_n\":");

        prompt = number_after(tail, n_tail, "\"prompt_n\":");
        if (prompt >= 0 && cached > 0)
            prompt += cached;
    }
    u->reported = true;
    u->prompt_tokens = (int64_t)prompt;
    u->completion_tokens = (int64_t)(completion >= 0 ? completion : n);
    u->tokens_per_s = tps;
    u->predicted_ms = number_after(tail, n_tail, "\"predicted_ms\":");
    if (cost >= 0) /* OpenRouter's, in USD */
        u->cost_usd = cost;
    return true;
}
