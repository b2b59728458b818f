/*
 * Downloads of model files in the background, from a URL or a Hugging Face reference
 * ("org/repo:quant", resolved with the hub's tree API to its files, a split model's parts
 * all):
 *
 *   POST   /api/downloads       {"url"} or {"hf":"org/repo:quant"} -> 202 {"id",...}
 *   GET    /api/downloads       [{"id","state","bytes","total","rate",...}]
 *   DELETE /api/downloads/<id>  cancels (the partial files go)
 *
 * Only from admin.download_hosts, redirects included. Each file goes to a hidden
 * .goinfer-dl-<id>-<name> in the first models folder, resumed with Range after a failure,
 * hashed and checked against the hub's sha256 (its LFS oid) when known, then its GGUF header
 * checked and renamed into place; the catalog is rescanned.
 *
 * Through src/http/client.c, which speaks plain http:// only: an https:// URL is refused with
 * a message saying so (Hugging Face itself needs HTTPS: GI_HF_BASE points at a mirror).
 */
#ifndef GOINFER_ADMIN_DOWNLOAD_H
#define GOINFER_ADMIN_DOWNLOAD_H

#include <jansson.h>

#include "admin/files.h"

#define ADMIN_DOWNLOADS_MAX 32

struct admin_downloads;

/* Borrows env for its life. */
struct admin_downloads *admin_downloads_new(const struct admin_files_env *env);
/* Cancels every running download (shutdown); their callbacks end soon after. */
void admin_downloads_shutdown(struct admin_downloads *d);
void admin_downloads_free(struct admin_downloads *d);

void admin_downloads_start(struct admin_downloads *d, struct http_request *req);
void admin_downloads_list(struct admin_downloads *d, struct http_request *req);
void admin_downloads_cancel(struct admin_downloads *d, struct http_request *req);
json_t *admin_downloads_json(const struct admin_downloads *d);

#endif
