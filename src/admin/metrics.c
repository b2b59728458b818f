#include "metrics.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODELS 128
#define N_BUCKETS  12

static const double bucket_s[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,    2.5,   5,    10,  30};

struct histogram {
    uint64_t counts[N_BUCKETS + 1]; /* the last is +Inf */
    double sum;
    uint64_t n;
};

struct model_stats {
    char name[128];
    uint64_t by_class[6]; /* 1xx..5xx, by status / 100 */
    double tokens, tps_last;
    uint64_t tps_samples;
};

static struct model_stats models[MAX_MODELS + 1]; /* the last is "other" */
static size_t n_models;
static struct histogram total, ttfb;

/* A Prometheus label value: backslash, quote and newline escaped. */
static void
label_copy(char *dst, size_t cap, const char *src)
{
    size_t k = 0;

    for (; *src && k + 3 < cap; src++) {
        if (*src == '"' || *src == '\\' || *src == '\n')
            dst[k++] = '\\';
        dst[k++] = *src == '\n' ? 'n' : *src;
    }
    dst[k] = '\0';
}

static struct model_stats *
stats_for(const char *name)
{
    if (name == NULL)
        name = "-";
    char esc[sizeof(models[0].name)];

    label_copy(esc, sizeof(esc), name);
    for (size_t i = 0; i < n_models; i++)
        if (strcmp(models[i].name, esc) == 0)
            return &models[i];
    if (n_models == MAX_MODELS) {
        memcpy(models[MAX_MODELS].name, "other", 6);
        return &models[MAX_MODELS];
    }
    label_copy(models[n_models].name, sizeof(models[0].name), name);
    return &models[n_models++];
}

static void
observe(struct histogram *h, double v)
{
    size_t i = 0;

    while (i < N_BUCKETS && v > bucket_s[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

void
metrics_request_done(struct http_request *req)
{
    double t = (double)(uv_hrtime() - req->t_start) / 1e9;
    int cls = req->status / 100;

    /* only names that reached a backend: a client must not fill the table with made-up ones */
    stats_for(req->log_backend ? req->log_model : "-")->by_class[cls >= 1 && cls <= 5 ? cls : 0]++;
    observe(&total, t);
    if (req->t_first)
        observe(&ttfb, (double)(req->t_first - req->t_start) / 1e9);
}

void
metrics_tokens(const char *model, double per_second, double predicted)
{
    struct model_stats *m = stats_for(model);

    m->tps_last = per_second;
    m->tps_samples++;
    m->tokens += predicted;
}

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

/*
 * llama-server ends an answer (the last event of a stream) with its "timings" object, and
 * OpenAI's "usage" beside it, so only the tail of each piece is searched: a large answer is
 * not scanned end to end on the loop.
 */
void
metrics_scan_timings(struct http_request *req, const char *model, const char *data, size_t len)
{
    enum { TAIL = 4096 };

    size_t skip = len > TAIL ? len - TAIL : 0;
    const char *tail = data + skip;
    size_t n_tail = len - skip;
    double tps = number_after(tail, n_tail, "\"predicted_per_second\":");
    double n = number_after(tail, n_tail, "\"predicted_n\":");
    double prompt = number_after(tail, n_tail, "\"prompt_tokens\":");
    double completion = number_after(tail, n_tail, "\"completion_tokens\":");
    double cost = number_after(tail, n_tail, "\"cost\":");
    struct http_usage *u = &req->usage;

    if (cost >= 0) /* a cloud provider's (OpenRouter's) price of the request, in USD */
        u->cost_usd = cost;
    if (tps < 0 && completion < 0)
        return;
    if (prompt < 0)
        prompt = number_after(tail, n_tail, "\"prompt_n\":");
    u->reported = true;
    u->prompt_tokens = (int64_t)prompt;
    u->completion_tokens = (int64_t)(completion >= 0 ? completion : n);
    u->tokens_per_s = tps;
    u->predicted_ms = number_after(tail, n_tail, "\"predicted_ms\":");
    if (tps >= 0)
        metrics_tokens(model, tps, n > 0 ? n : 0);
}

static void
render_histogram(struct buf *out, const char *name, const char *help, const struct histogram *h)
{
    uint64_t cum = 0;

    buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cum += h->counts[i];
        buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_s[i], (unsigned long long)cum);
    }
    cum += h->counts[N_BUCKETS];
    buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %g\n%s_count %llu\n", name,
               (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

void
metrics_render(struct buf *out, size_t open_connections, size_t running_models)
{
    buf_printf(out, "# HELP goinfer_requests_total Requests answered, by model and status class.\n"
                    "# TYPE goinfer_requests_total counter\n");
    for (size_t i = 0; i <= MAX_MODELS; i++)
        for (int c = 1; c <= 5 && (i < n_models || i == MAX_MODELS); c++)
            if (models[i].by_class[c])
                buf_printf(out, "goinfer_requests_total{model=\"%s\",code=\"%dxx\"} %llu\n",
                           models[i].name, c, (unsigned long long)models[i].by_class[c]);
    render_histogram(out, "goinfer_request_duration_seconds", "Time to answer a request.", &total);
    render_histogram(out, "goinfer_time_to_first_byte_seconds", "Time to the first response byte.",
                     &ttfb);
    buf_printf(out, "# HELP goinfer_generation_tokens_per_second Last generation speed reported "
                    "by llama-server.\n# TYPE goinfer_generation_tokens_per_second gauge\n");
    for (size_t i = 0; i < n_models; i++)
        if (models[i].tps_samples)
            buf_printf(out, "goinfer_generation_tokens_per_second{model=\"%s\"} %g\n",
                       models[i].name, models[i].tps_last);
    buf_printf(out, "# HELP goinfer_generated_tokens_total Tokens generated, by model.\n"
                    "# TYPE goinfer_generated_tokens_total counter\n");
    for (size_t i = 0; i < n_models; i++)
        if (models[i].tps_samples)
            buf_printf(out, "goinfer_generated_tokens_total{model=\"%s\"} %g\n", models[i].name,
                       models[i].tokens);
    buf_printf(out,
               "# HELP goinfer_connections_open Client connections open.\n"
               "# TYPE goinfer_connections_open gauge\ngoinfer_connections_open %zu\n"
               "# HELP goinfer_models_running llama-server children running or starting.\n"
               "# TYPE goinfer_models_running gauge\ngoinfer_models_running %zu\n",
               open_connections, running_models);
}
