/*
 * The OpenAPI description Goinfer serves at GET /api/openapi.json, made from the route table
 * itself (so it cannot drift from what is served) and a summary per route kept here.
 */
#ifndef GOINFER_ROUTER_OPENAPI_H
#define GOINFER_ROUTER_OPENAPI_H

#include <jansson.h>
#include <stddef.h>

enum openapi_access { OPENAPI_PUBLIC, OPENAPI_USER, OPENAPI_ADMIN };

struct openapi_route {
    const char *method; /* "*": every method */
    const char *path;   /* ending in '/': a prefix, documented as <path>{rest} */
    enum openapi_access access;
};

/* What a route does, in a sentence; NULL when nobody wrote it down (a test catches that). */
const char *openapi_summary(const char *method, const char *path);
/* The whole document (OpenAPI 3.0). */
json_t *openapi_document(const struct openapi_route *routes, size_t n, const char *version);

#endif
