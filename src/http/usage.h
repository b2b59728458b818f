/* What an upstream says of its work, read from its answer as it passes: llama-server's final
 * "timings", OpenAI's "usage", OpenRouter's "cost". Pure: bytes in, http_usage out, so every
 * road that relays an answer (the proxy, a tunnel's stream) fills the same fields. */
#ifndef GOINFER_HTTP_USAGE_H
#define GOINFER_HTTP_USAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"

/* Searches the tail of one piece of an answer (a large answer is not scanned end to end on the
 * loop); returns true and updates u when it held a report. *predicted_n: llama-server's count
 * of generated tokens, or -1. */
bool http_usage_scan(struct http_usage *u, const char *data, size_t len, double *predicted_n);

#endif
