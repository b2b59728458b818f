#include "events.h"

#include <stdlib.h>
#include <string.h>

#include "admin/handlers.h"
#include "core/list.h"
#include "core/log.h"
#include "core/xmalloc.h"

struct event_stream {
    struct http_request *req;
    struct events_streams *all;
    struct swap_watch *watch;
    struct tunnel_watch *tunnel_watch;
    struct log_sub *log; /* the admin feed's: Goinfer's and its models' log lines */
    uint64_t dropped;    /* log lines a slow reader missed since the last it got */
    struct event_stream *prev, *next;
};

char *
events_record(const struct swap_event *ev)
{
    static const char *const values[] = {"unloaded", "loading", "loaded", "unloaded", "unloaded"};
    json_t *data = json_pack("{s:s}", "status", values[ev->state]);
    json_t *o;
    char *text, *rec;

    if (ev->state == SWAP_MODEL_LOADING && ev->load != NULL && ev->load->has_progress &&
        !ev->started)
        json_object_set_new(data, "progress", swap_progress_json(&ev->load->progress));
    if (ev->state == SWAP_MODEL_UNLOADED || ev->state == SWAP_MODEL_FAILED) /* llama.cpp's rule: */
        json_object_set_new(
            data, "exit_code", /* failed is an exit code other than 0 */
            json_integer(ev->state == SWAP_MODEL_FAILED && ev->exit_code == 0 ? 1 : ev->exit_code));
    o = json_pack("{s:s, s:s, s:o}", "model", ev->model->name, "event",
                  ev->started ? "model_status" : "status_change", "data", data);
    text = json_dumps(o, JSON_COMPACT);
    rec = xasprintf("data: %s\n\n", text);
    free(text);
    json_decref(o);
    return rec;
}

char *
events_tunnel_record(const char *model, const char *status, const json_t *progress)
{
    json_t *data = json_pack("{s:s}", "status", status);
    json_t *o;
    char *text, *rec;

    if (progress != NULL)
        json_object_set_new(data, "progress", json_deep_copy(progress));
    if (strcmp(status, "unloaded") == 0)
        json_object_set_new(data, "exit_code", json_integer(0));
    o = json_pack("{s:s, s:s, s:o}", "model", model, "event", "status_change", "data", data);
    text = json_dumps(o, JSON_COMPACT);
    rec = xasprintf("data: %s\n\n", text);
    free(text);
    json_decref(o);
    return rec;
}

static void
stream_close(struct event_stream *es)
{
    if (es->log != NULL)
        log_unsubscribe(es->log);
    swap_unwatch(es->watch);
    tunnel_server_unwatch(es->tunnel_watch);
    DLIST_UNLINK(es->all->first, es);
    free(es);
}

static void
on_stream_abort(struct http_request *req, void *data)
{
    (void)req;
    stream_close(data);
}

static const struct http_handler stream_handler = {on_stream_abort, NULL};

/* A slow reader misses progress records (the next one says as much), never a change of state:
 * those come once per process start or exit. */
static void
on_swap_event(const struct swap_event *ev, void *arg)
{
    struct event_stream *es = arg;
    char *rec;

    if (ev->model->unlisted)
        return;
    if (ev->state == SWAP_MODEL_LOADING && !ev->started && http_over_high_water(es->req))
        return;
    rec = events_record(ev);
    http_stream_write(es->req, rec, strlen(rec));
    free(rec);
}

static void
on_tunnel_model(const char *model, const char *status, const json_t *progress, void *arg)
{
    struct event_stream *es = arg;
    char *rec;

    if (strcmp(status, "loading") == 0 && http_over_high_water(es->req))
        return;
    rec = events_tunnel_record(model, status, progress);
    http_stream_write(es->req, rec, strlen(rec));
    free(rec);
}

char *
events_log_record(const char *line, size_t len)
{
    json_t *o = json_pack("{s:s, s:{s:s%}}", "event", "log", "data", "line", line, len);
    char *text = json_dumps(o, JSON_COMPACT), *rec = xasprintf("data: %s\n\n", text);

    free(text);
    json_decref(o);
    return rec;
}

static void
write_log_line(struct event_stream *es, const char *line, size_t len)
{
    char *rec = events_log_record(line, len);

    http_stream_write(es->req, rec, strlen(rec));
    free(rec);
}

/* The history comes as one text: a record per line. */
static void
on_log_history(void *arg, const char *text, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;

        if (n > 0)
            write_log_line(arg, text, n);
        text += n + (nl != NULL), len -= n + (nl != NULL);
    }
}

static void
on_log_line(void *arg, const char *line, size_t len)
{
    struct event_stream *es = arg;
    char note[64];

    if (!admin_log_room(es->req, &es->dropped, note, sizeof(note)))
        return;
    if (note[0] != '\0')
        write_log_line(es, note, strlen(note));
    write_log_line(es, line, len);
}

void
events_stream(struct events_streams *all, struct swap *swap, struct tunnel_server *tunnels,
              struct http_request *req, bool logs)
{
    struct http_header h[3] = {{"Content-Type", 12, "text/event-stream", 17},
                               {"Cache-Control", 13, "no-cache", 8},
                               {"X-Accel-Buffering", 17, "no", 2}};
    struct event_stream *es = xcalloc(1, sizeof(*es));

    if (strcmp(req->method_name, "HEAD") == 0) { /* the head alone: no feed to hold open */
        free(es);
        http_stream_start(req, 200, h, 3, -1);
        http_stream_end(req);
        return;
    }
    es->req = req;
    es->all = all;
    http_attach(req, &stream_handler, es);
    http_stream_start(req, 200, h, 3, -1);
    http_stream_flush(req);
    es->watch = swap_watch(swap, on_swap_event, es);
    es->tunnel_watch = tunnel_server_watch(tunnels, on_tunnel_model, es);
    if (logs) {
        log_history(on_log_history, es);
        es->log = log_subscribe(on_log_line, es);
    }
    DLIST_PUSH(all->first, es);
}

void
events_end(struct events_streams *all)
{
    while (all->first) {
        struct http_request *req = all->first->req;

        stream_close(all->first);
        http_stream_end(req); /* detaches: its abort will not run */
    }
}
