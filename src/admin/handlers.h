/*
 * The admin endpoints' handlers: what runs, unload, the log (whole and live), reload, metrics.
 * The router decides who may call them (the admin key) and hands them what they act on.
 */
#ifndef GOINFER_ADMIN_HANDLERS_H
#define GOINFER_ADMIN_HANDLERS_H

#include "http/server.h"
#include "swap/swap.h"
#include "tunnel/tunnel_server.h"

/* The open GET /logs/stream responses, ended together at shutdown. */
struct admin_logstreams {
    struct logstream *first;
};

/* GET /running: the model processes, on a server the GPU machines behind it, and what the
 * configuration in force warned about, when it did (warnings: NULL-terminated, may be NULL). */
void admin_running(struct http_request *req, struct swap *swap, struct tunnel_server *tunnels,
                   char *const *warnings);
/* POST /unload: every idle model stops, busy ones once their requests end. */
void admin_unload(struct http_request *req, struct swap *swap);
/* One model: llama.cpp's POST /models/unload, llama-swap's /api/models/unload/<model>. */
void admin_unload_model(struct http_request *req, struct swap *swap, const struct model_def *m);
/* POST /models/load: answers once the model is ready (or could not start); it then stays. */
void admin_load_model(struct http_request *req, struct swap *swap, const struct model_def *m);
/* GET /logs: the history. */
void admin_logs(struct http_request *req);
/* GET /logs/stream: the history, then each line as it is written; a slow reader loses lines
 * (and is told how many) rather than growing our memory. */
void admin_logs_stream(struct admin_logstreams *all, struct http_request *req);
/* For a live log reader, before each line: false (the line counted in *dropped) while req is
 * over its high-water mark; else true, with note the "[N lines dropped...]" line to send first
 * ("" when none). A slow reader loses lines rather than growing our memory. */
bool admin_log_room(struct http_request *req, uint64_t *dropped, char *note, size_t size);
/* Ends every open log stream (shutdown). */
void admin_logs_end(struct admin_logstreams *all);
/* POST /reload: asks for one; the log says whether the new configuration was taken. */
void admin_reload(struct http_request *req, void (*reload)(void *arg, const char *why), void *arg);
/* GET /metrics, in Prometheus' text format. */
void admin_metrics(struct http_request *req, struct http_server *server, struct swap *swap,
                   struct tunnel_server *tunnels);

#endif
