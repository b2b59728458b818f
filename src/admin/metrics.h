/*
 * Prometheus metrics: requests by model and status, latency and time-to-first-byte
 * histograms, generation speed per model (from llama-server's own timings), connections.
 * The registry is process-wide and bounded (models past the cap count as "other").
 */
#ifndef GOINFER_ADMIN_METRICS_H
#define GOINFER_ADMIN_METRICS_H

#include "core/buf.h"
#include "http/server.h"
#include "swap/swap.h"

/* Times each model's loads (goinfer_model_load_duration_seconds); the watch goes with s. */
void metrics_watch(struct swap *s);
/* A request ended (the server's completion hook). */
void metrics_request_done(struct http_request *req);
/* llama-server reported predicted tokens per second for model. */
void metrics_tokens(const char *model, double per_second, double predicted);
/* Appends the text exposition format to out. */
void metrics_render(struct buf *out, size_t open_connections, size_t running_models);
/* Scans a response chunk for llama-server's final "timings" (predicted_per_second, predicted_n,
 * prompt_n, predicted_ms) and OpenAI's "usage" (prompt_tokens, completion_tokens): fills
 * req->usage, so the activity store has them without a second scan, and counts the generation
 * for model. */
void metrics_scan_timings(struct http_request *req, const char *model, const char *data,
                          size_t len);

#endif
