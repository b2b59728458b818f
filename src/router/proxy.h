/* Forwards one request to the llama-server of a model and streams the answer back as it comes. */
#ifndef GOINFER_ROUTER_PROXY_H
#define GOINFER_ROUTER_PROXY_H

#include "http/client.h"
#include "http/server.h"
#include "models/catalog.h"
#include "swap/swap.h"

/* Takes over req until its response ends; m is borrowed for as long. path is the upstream
 * path (copied). */
void proxy_forward(struct http_request *req, struct swap *swap, const struct model_def *m,
                   const char *path, long idle_s);

#endif
