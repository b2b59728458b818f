/*
 * Resumable uploads of model files, in chunks (a tus-like protocol):
 *
 *   POST   /api/uploads          {"name","size","sha256"?}  -> 201 {"id","offset":0,...}
 *   PATCH  /api/uploads/<id>     Upload-Offset: <n>, body: the next chunk -> {"offset",...}
 *   GET    /api/uploads/<id>     (HEAD too) -> {"offset",...}, header Upload-Offset
 *   DELETE /api/uploads/<id>     cancels
 *
 * Why chunks and not one streamed body: every request body stays bounded by limits.body_bytes
 * and read whole by the one HTTP server path that all other routes use (no second body mode to
 * harden), a dropped connection loses at most one chunk, and a resume is just the next PATCH at
 * the offset GET tells. The cost is one chunk in memory per upload in flight, bounded by
 * limits.body_bytes_in_flight like any body.
 *
 * The file is written as <folder>/.goinfer-upload-<id>.part beside a small .json saying what
 * it becomes; both are hidden, so discovery ignores them. Each chunk is written and hashed
 * (SHA-256, OpenSSL EVP, state kept per upload) on the thread pool, in parallel. After a
 * restart the state is rebuilt from those files: the offset is the part's size and the hash is
 * recomputed from its bytes. The last chunk's answer comes after the GGUF header was checked
 * and the file renamed into place (never over an existing file), with its sha256; the catalog
 * is then rescanned.
 */
#ifndef GOINFER_ADMIN_UPLOAD_H
#define GOINFER_ADMIN_UPLOAD_H

#include <jansson.h>

#include "admin/files.h"

#define ADMIN_UPLOADS_MAX 64 /* uploads open at once */

struct admin_uploads;

/* Borrows env for its life (the router's, refreshed at reloads). */
struct admin_uploads *admin_uploads_new(const struct admin_files_env *env);
/* At exit, once the loop ran dry (no chunk in flight): closes files, keeps them on disk. */
void admin_uploads_free(struct admin_uploads *u);

void admin_uploads_create(struct admin_uploads *u, struct http_request *req);
void admin_uploads_chunk(struct admin_uploads *u, struct http_request *req);
void admin_uploads_status(struct admin_uploads *u, struct http_request *req);
void admin_uploads_cancel(struct admin_uploads *u, struct http_request *req);
/* The uploads open now: [{"id","name","size","offset","folder","state"}]. */
json_t *admin_uploads_json(const struct admin_uploads *u);

#endif
