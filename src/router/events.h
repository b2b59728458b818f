/*
 * GET /models/sse: llama.cpp's router feed of model state changes, in its event shapes, so its
 * web UI shows a loading model's progress bar: each event is one
 * `data: {"model":..,"event":..,"data":{"status":..,...}}` record, with the events
 * "model_status" (a load began: {"status":"loading"}) and "status_change" (loading with
 * "progress":{"stages","current","value"}, "loaded", or "unloaded" with "exit_code", non-zero
 * when the start failed).
 */
#ifndef GOINFER_ROUTER_EVENTS_H
#define GOINFER_ROUTER_EVENTS_H

#include <jansson.h>
#include <stdbool.h>

#include "http/server.h"
#include "swap/swap.h"
#include "tunnel/tunnel_server.h"

/* The open feeds, ended together at shutdown. */
struct events_streams {
    struct event_stream *first;
};

/* Answers req with the feed until the client leaves or events_end: the local models' changes,
 * and on a server (tunnels not NULL) those its GPU machines report; both borrowed as long.
 * With logs (the admin app's one feed, GET /api/events), also the log: its history, then each
 * line as it is written, as {"event":"log","data":{"line":...}} records. */
void events_stream(struct events_streams *all, struct swap *swap, struct tunnel_server *tunnels,
                   struct http_request *req, bool logs);
/* Ends every open feed (shutdown). */
void events_end(struct events_streams *all);
/* The record of one event, `data: {...}\n\n` (pure; the caller frees it). */
char *events_record(const struct swap_event *ev);
/* The record of one log line. */
char *events_log_record(const char *line, size_t len);
/* The same for a model a GPU machine reports (status "loading", "loaded" or "unloaded"). */
char *events_tunnel_record(const char *model, const char *status, const json_t *progress);

#endif
