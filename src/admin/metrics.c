#include "metrics.h"

#include <sys/resource.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/version.h"
#include "http/usage.h"

#define MAX_MODELS 128
#define N_BUCKETS  12
#define MAX_CODES  24 /* distinct status codes per model; more are counted as code "other" */

static const double bucket_s[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,    2.5,   5,    10,  30};
/* A model's load: from a fraction of a second (a tiny model, cached) to minutes (a large one
 * read from a network disk). */
static const double load_bucket_s[N_BUCKETS] = {0.1, 0.25, 0.5, 1,  2.5, 5,
                                                10,  20,   30,  60, 120, 300};

struct histogram {
    uint64_t counts[N_BUCKETS + 1]; /* the last is +Inf */
    double sum;
    uint64_t n;
};

struct code_count {
    int code; /* 0: "other" */
    uint64_t n;
};

struct model_stats {
    char name[128];
    struct code_count codes[MAX_CODES];
    size_t n_codes;
    double tokens, prompt_tokens, tps_last;
    uint64_t tps_samples, usage_samples;
    struct histogram load;
    uint64_t loading_since; /* uv_hrtime() of its load's start; 0 when not loading */
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
observe_in(struct histogram *h, const double *buckets, double v)
{
    size_t i = 0;

    while (i < N_BUCKETS && v > buckets[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

static void
observe(struct histogram *h, double v)
{
    observe_in(h, bucket_s, v);
}

static void
count_code(struct model_stats *m, int code)
{
    if (code < 100 || code > 599)
        code = 0;
    for (size_t i = 0; i < m->n_codes; i++)
        if (m->codes[i].code == code) {
            m->codes[i].n++;
            return;
        }
    if (m->n_codes == MAX_CODES - 1 && code != 0) /* the last slot is "other" */
        code = 0;
    for (size_t i = 0; i < m->n_codes; i++)
        if (m->codes[i].code == code) {
            m->codes[i].n++;
            return;
        }
    m->codes[m->n_codes++] = (struct code_count){code, 1};
}

/* The admin app's own requests (its API, pages, event streams, health and metrics probes):
 * counted, but kept out of the latency histograms, which are about inference. */
static bool
is_admin_path(const char *path)
{
    static const char *const prefixes[] = {"/api/",   "/ui",      "/models/sse",
                                           "/health", "/metrics", "/logs"};

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(path, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

void
metrics_request_done(struct http_request *req)
{
    double t = (double)(uv_hrtime() - req->t_start) / 1e9;

    /* only names that reached a backend: a client must not fill the table with made-up ones */
    count_code(stats_for(req->log_backend ? req->log_model : "-"), req->status);
    if (req->path != NULL && is_admin_path(req->path))
        return;
    observe(&total, t);
    if (req->t_first)
        observe(&ttfb, (double)(req->t_first - req->t_start) / 1e9);
}

static void
on_swap_event(const struct swap_event *ev, void *arg)
{
    struct model_stats *m;

    (void)arg;
    if (ev->model == NULL || ev->model->name == NULL)
        return;
    m = stats_for(ev->model->name);
    if (ev->state == SWAP_MODEL_LOADING && m->loading_since == 0)
        m->loading_since = uv_hrtime();
    else if (ev->state == SWAP_MODEL_LOADED && m->loading_since != 0)
        observe_in(&m->load, load_bucket_s, (double)(uv_hrtime() - m->loading_since) / 1e9);
    if (ev->state != SWAP_MODEL_LOADING)
        m->loading_since = 0;
}

void
metrics_watch(struct swap *s)
{
    swap_watch(s, on_swap_event, NULL);
}

void
metrics_tokens(const char *model, double per_second, double predicted)
{
    struct model_stats *m = stats_for(model);

    m->tps_last = per_second;
    m->tps_samples++;
    m->tokens += predicted;
}

/*
 * llama-server ends an answer (the last event of a stream) with its "timings", and OpenAI's
 * "usage" beside it: http_usage_scan reads them from each piece's tail.
 */
void
metrics_scan_timings(struct http_request *req, const char *model, const char *data, size_t len)
{
    double n = -1;

    if (!http_usage_scan(&req->usage, data, len, &n))
        return;
    if (req->usage.tokens_per_s >= 0)
        metrics_tokens(model, req->usage.tokens_per_s, n > 0 ? n : 0);
    if (req->usage.prompt_tokens > 0) {
        struct model_stats *m = stats_for(model);

        m->prompt_tokens += (double)req->usage.prompt_tokens;
        m->usage_samples++;
    }
}

/* One histogram's series; label is "" or `model="x",` (with its comma). */
static void
render_buckets(struct buf *out, const char *name, const char *label, const double *buckets,
               const struct histogram *h)
{
    uint64_t cum = 0;
    size_t k = strlen(label);

    for (size_t i = 0; i < N_BUCKETS; i++) {
        cum += h->counts[i];
        buf_printf(out, "%s_bucket{%sle=\"%g\"} %llu\n", name, label, buckets[i],
                   (unsigned long long)cum);
    }
    cum += h->counts[N_BUCKETS];
    buf_printf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, (unsigned long long)cum);
    buf_printf(out, "%s_sum%s%.*s%s %g\n%s_count%s%.*s%s %llu\n", name, k ? "{" : "",
               (int)(k ? k - 1 : 0), label, k ? "}" : "", h->sum, name, k ? "{" : "",
               (int)(k ? k - 1 : 0), label, k ? "}" : "", (unsigned long long)h->n);
}

static void
render_histogram(struct buf *out, const char *name, const char *help, const struct histogram *h)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    render_buckets(out, name, "", bucket_s, h);
}

/* Prometheus' standard process metrics, from /proc/self (Linux). */
static void
render_process(struct buf *out)
{
    char stat[1024], *p;
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, btime = 0;
    long long rss = 0;
    double tick = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    size_t n = 0, fds = 0;
    struct rlimit rl;
    FILE *f = fopen("/proc/self/stat", "re");
    DIR *d;
    struct dirent *e;

    if (f != NULL) {
        n = fread(stat, 1, sizeof(stat) - 1, f);
        fclose(f);
    }
    stat[n] = '\0';
    p = strrchr(stat, ')'); /* the command name may hold spaces: fields count from after it */
    if (p == NULL ||
        sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
               "%*d %llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return;
    f = fopen("/proc/stat", "re");
    while (f != NULL && fgets(stat, sizeof(stat), f) != NULL)
        if (sscanf(stat, "btime %llu", &btime) == 1)
            break;
    if (f != NULL)
        fclose(f);
    d = opendir("/proc/self/fd");
    while (d != NULL && (e = readdir(d)) != NULL)
        fds += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    buf_printf(out,
               "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
               "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n"
               "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
               "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %.0f\n"
               "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
               "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n"
               "# HELP process_open_fds Number of open file descriptors.\n"
               "# TYPE process_open_fds gauge\nprocess_open_fds %zu\n"
               "# HELP process_start_time_seconds Start time of the process since unix epoch in "
               "seconds.\n# TYPE process_start_time_seconds gauge\n"
               "process_start_time_seconds %.2f\n",
               (double)(utime + stime) / tick, (double)rss * page, vsize, d ? fds - 1 : 0,
               (double)btime + (double)start / tick); /* fds - 1: opendir's own */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        buf_printf(out,
                   "# HELP process_max_fds Maximum number of open file descriptors.\n"
                   "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                   (unsigned long long)rl.rlim_cur);
}

static void
render_build_info(struct buf *out)
{
    char v[128];

    label_copy(v, sizeof(v), goinfer_version);
    buf_printf(out,
               "# HELP goinfer_build_info The version Goinfer was built from (git describe).\n"
               "# TYPE goinfer_build_info gauge\ngoinfer_build_info{version=\"%s\"} 1\n",
               v);
}

static void
render_loads(struct buf *out)
{
    buf_printf(out, "# HELP goinfer_model_load_duration_seconds Time from a model's start to its "
                    "llama-server being ready.\n"
                    "# TYPE goinfer_model_load_duration_seconds histogram\n");
    for (size_t i = 0; i < n_models; i++) {
        char label[sizeof(models[0].name) + 16];

        if (models[i].load.n == 0)
            continue;
        snprintf(label, sizeof(label), "model=\"%.127s\",", models[i].name);
        render_buckets(out, "goinfer_model_load_duration_seconds", label, load_bucket_s,
                       &models[i].load);
    }
}

static void
render_requests(struct buf *out)
{
    buf_printf(out, "# HELP goinfer_requests_total Requests answered, by model and status code.\n"
                    "# TYPE goinfer_requests_total counter\n");
    for (size_t i = 0; i <= MAX_MODELS; i++) {
        const struct model_stats *m = &models[i];

        if (i >= n_models && i != MAX_MODELS)
            continue;
        for (size_t c = 0; c < m->n_codes; c++) {
            char code[8];

            if (m->codes[c].code == 0)
                memcpy(code, "other", 6);
            else
                snprintf(code, sizeof(code), "%d", m->codes[c].code);
            buf_printf(out, "goinfer_requests_total{model=\"%s\",code=\"%s\"} %llu\n", m->name,
                       code, (unsigned long long)m->codes[c].n);
        }
    }
}

void
metrics_render(struct buf *out, size_t open_connections, size_t running_models)
{
    render_build_info(out);
    render_requests(out);
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
    buf_printf(out, "# HELP goinfer_prompt_tokens_total Prompt tokens processed, by model.\n"
                    "# TYPE goinfer_prompt_tokens_total counter\n");
    for (size_t i = 0; i < n_models; i++)
        if (models[i].usage_samples)
            buf_printf(out, "goinfer_prompt_tokens_total{model=\"%s\"} %g\n", models[i].name,
                       models[i].prompt_tokens);
    render_loads(out);
    buf_printf(out,
               "# HELP goinfer_connections_open Client connections open.\n"
               "# TYPE goinfer_connections_open gauge\ngoinfer_connections_open %zu\n"
               "# HELP goinfer_models_running llama-server children running or starting.\n"
               "# TYPE goinfer_models_running gauge\ngoinfer_models_running %zu\n",
               open_connections, running_models);
    render_process(out);
}
