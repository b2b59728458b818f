/* Static files from disk: llama.cpp's web UI, served at / without starting any model. */
#ifndef GOINFER_ADMIN_STATIC_H
#define GOINFER_ADMIN_STATIC_H

#include <stdbool.h>

#include "http/server.h"

/* Serves req's path from dir (its _gzip/ twin when the client takes gzip). Returns false,
 * answering nothing, when there is no such file, so the caller can say 404. */
bool static_serve(const char *dir, struct http_request *req);
/* The UI folder for a llama-server: <exe>/../../ui (Goinfer's build cache) or the llama.cpp
 * build tree's tools/ui/dist. Returns a malloc'd path, or NULL when there is none. */
char *static_ui_dir_for(const char *llama_exe);

#endif
