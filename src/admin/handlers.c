#include "handlers.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/audit.h"
#include "admin/metrics.h"
#include "core/list.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "http/errors.h"

struct logstream {
    struct http_request *req;
    struct admin_logstreams *all;
    struct log_sub *sub;
    uint64_t dropped;
    struct logstream *prev, *next;
};

void
admin_running(struct http_request *req, struct swap *swap, struct tunnel_server *tunnels,
              char *const *warnings)
{
    json_t *o = json_pack("{s:o}", "running", swap_running(swap));

    if (warnings != NULL && warnings[0] != NULL) { /* said only when there are some */
        json_t *w = json_array();

        for (size_t i = 0; warnings[i] != NULL; i++)
            json_array_append_new(w, json_string(warnings[i]));
        json_object_set_new(o, "warnings", w);
    }

    if (tunnels != NULL) /* a server: the GPU machines behind it too */
        json_object_set_new(o, "tunnels", tunnel_server_clients(tunnels));
    http_respond_json(req, 200, o);
}

void
admin_unload(struct http_request *req, struct swap *swap)
{
    int n = swap_unload_all(swap);

    audit_record(req, "models.unload", NULL, 200);
    http_respond_json(req, 200, json_pack("{s:s, s:i}", "status", "ok", "stopping", n));
}

void
admin_unload_model(struct http_request *req, struct swap *swap, const struct model_def *m)
{
    int n = swap_unload(swap, m);

    audit_record(req, "model.unload", m->name, 200);
    /* llama.cpp's router answers {"success":true}; llama-swap's "OK": both read this one */
    http_respond_json(req, 200,
                      json_pack("{s:b, s:s, s:s, s:i}", "success", 1, "status", "ok", "model",
                                m->name, "stopping", n));
}

struct load {
    struct swap_lease lease;
    struct http_request *req;
    const struct model_def *m;
};

static void
on_load_abort(struct http_request *req, void *data)
{
    struct load *l = data;

    audit_record(req, "model.load", l->m->name, 499); /* the client left before the answer */
    swap_release(&l->lease); /* a wait given up; a start already under way goes on */
    free(l);
}

static const struct http_handler load_handler = {on_load_abort, NULL};

/* Ready (or failed): answered, and the model stays loaded until its ttl or an unload. */
static void
on_loaded(struct swap_lease *lease, int err, const char *msg, void *arg)
{
    struct load *l = arg;
    int status = err == 0 ? 200 : err == -EBUSY ? 429 : err == -EPERM ? 404 : 502;

    (void)lease;
    http_detach(l->req);
    audit_record(l->req, "model.load", l->m->name, status);
    if (err == 0)
        http_respond_json(
            l->req, 200,
            json_pack("{s:b, s:s, s:s}", "success", 1, "status", "ok", "model", l->m->name));
    else if (err == -EPERM)
        http_respond_error(l->req, status, "model_disabled", "%s", msg);
    else
        http_respond_error(l->req, status, "upstream_error", "model %s could not be loaded: %s",
                           l->m->name, msg);
    swap_release(&l->lease);
    free(l);
}

void
admin_load_model(struct http_request *req, struct swap *swap, const struct model_def *m)
{
    struct load *l = xcalloc(1, sizeof(*l));

    l->req = req;
    l->m = m;
    http_attach(req, &load_handler, l);
    swap_acquire(swap, &l->lease, m, on_loaded, l);
}

static void
write_history(void *arg, const char *text, size_t len)
{
    http_stream_write(arg, text, len);
}

void
admin_logs(struct http_request *req)
{
    struct http_header h = {"Content-Type", 12, "text/plain; charset=utf-8", 25};

    http_stream_start(req, 200, &h, 1, -1);
    log_history(write_history, req);
    http_stream_end(req);
}

static void
logstream_close(struct logstream *ls)
{
    log_unsubscribe(ls->sub);
    DLIST_UNLINK(ls->all->first, ls);
    free(ls);
}

static void
on_logstream_abort(struct http_request *req, void *data)
{
    (void)req;
    logstream_close(data);
}

static const struct http_handler logstream_handler = {on_logstream_abort, NULL};

/* A slow reader loses lines (and is told how many) rather than growing our memory. */
bool
admin_log_room(struct http_request *req, uint64_t *dropped, char *note, size_t size)
{
    note[0] = '\0';
    if (http_over_high_water(req)) {
        (*dropped)++;
        return false;
    }
    if (*dropped > 0)
        snprintf(note, size, "[%llu lines dropped: reader too slow]", (unsigned long long)*dropped);
    *dropped = 0;
    return true;
}

static void
on_log_line(void *arg, const char *line, size_t len)
{
    struct logstream *ls = arg;
    char note[64];

    if (!admin_log_room(ls->req, &ls->dropped, note, sizeof(note)))
        return;
    if (note[0] != '\0') {
        http_stream_write(ls->req, note, strlen(note));
        http_stream_write(ls->req, "\n", 1);
    }
    http_stream_write(ls->req, line, len);
    http_stream_write(ls->req, "\n", 1);
}

void
admin_logs_stream(struct admin_logstreams *all, struct http_request *req)
{
    struct http_header h[2] = {{"Content-Type", 12, "text/plain; charset=utf-8", 25},
                               {"X-Accel-Buffering", 17, "no", 2}};
    struct logstream *ls = xcalloc(1, sizeof(*ls));

    ls->req = req;
    ls->all = all;
    http_attach(req, &logstream_handler, ls);
    http_stream_start(req, 200, h, 2, -1);
    http_stream_flush(req);
    if (req->query == NULL || strstr(req->query, "no-history") == NULL)
        log_history(write_history, req);
    ls->sub = log_subscribe(on_log_line, ls);
    DLIST_PUSH(all->first, ls);
}

void
admin_logs_end(struct admin_logstreams *all)
{
    while (all->first) {
        struct http_request *req = all->first->req;

        logstream_close(all->first);
        http_stream_end(req); /* detaches: its abort will not run */
    }
}

void
admin_reload(struct http_request *req, void (*reload)(void *arg, const char *why), void *arg)
{
    if (reload == NULL) {
        audit_record(req, "config.reload", NULL, 501);
        http_respond_error(req, 501, "not_implemented", "reload is not available here");
        return;
    }
    reload(arg, "POST /reload");
    audit_record(req, "config.reload", NULL, 200);
    http_respond_json(req, 200,
                      json_pack("{s:s, s:s}", "status", "ok", "note",
                                "see GET /logs for whether the new configuration was taken"));
}

void
admin_metrics(struct http_request *req, struct http_server *server, struct swap *swap,
              struct tunnel_server *tunnels)
{
    struct buf b;

    buf_init(&b, 1 << 20);
    metrics_render(&b, server ? http_server_active(server) : 0, swap_count_running(swap));
    if (tunnels != NULL)
        tunnel_server_metrics(tunnels, &b);
    http_respond(req, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
    buf_cleanup(&b);
}
