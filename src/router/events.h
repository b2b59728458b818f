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

#include "http/server.h"
#include "swap/swap.h"

/* The open feeds, ended together at shutdown. */
struct events_streams {
    struct event_stream *first;
};

/* Answers req with the feed until the client leaves or events_end; swap is borrowed as long. */
void events_stream(struct events_streams *all, struct swap *swap, struct http_request *req);
/* Ends every open feed (shutdown). */
void events_end(struct events_streams *all);
/* The record of one event, `data: {...}\n\n` (pure; the caller frees it). */
char *events_record(const struct swap_event *ev);

#endif
