/*
 * What the model listings say of a local model: an OpenAI model object, with llama.cpp's
 * router status and modalities (so its web UI can pick and load models) and llama-swap's
 * name, description, capabilities and metadata; GET /models adds what the GGUF header says.
 */
#ifndef GOINFER_ROUTER_LISTING_H
#define GOINFER_ROUTER_LISTING_H

#include <jansson.h>
#include <stdbool.h>

#include "models/catalog.h"

/* id is m's name or, with includeAliasesInList, one of its aliases. Takes status. */
json_t *listing_model(const struct model_def *m, const char *id, json_t *status, json_int_t created,
                      bool gguf);
/* GET /props with no model named: llama.cpp's router answer, so its web UI shows a picker. */
json_t *listing_router_props(void);

#endif
