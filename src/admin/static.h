/* llama.cpp's web UI at /: static files from disk, served without starting any model, or, when
 * the llama-server has no UI folder beside it (its UI is built into the program), its own page
 * proxied from a running llama-server. */
#ifndef GOINFER_ADMIN_STATIC_H
#define GOINFER_ADMIN_STATIC_H

#include <stdbool.h>

#include "http/server.h"
#include "models/catalog.h"
#include "swap/swap.h"

/* Serves req's path from dir (its _gzip/ twin when the client takes gzip). Returns false,
 * answering nothing, when there is no such file, so the caller can say 404. */
bool static_serve(const char *dir, struct http_request *req);
/* The UI folder for a llama-server, looked for beside the folder bin/ that holds it (and, for a
 * symbolic link, beside the file it names): ../ui (Goinfer's build cache), a llama.cpp build
 * folder's tools/ui/dist, the source tree's tools/ui/dist (around the build folder, or named by
 * its CMakeCache.txt). Returns a malloc'd path, or NULL. */
char *static_ui_dir_for(const char *llama_exe);
/* Whether a GET of path may be for llama-server's own page: / or a file name (an asset the page
 * asks for). Other unknown paths stay 404 rather than start a model. */
bool static_page_path(const char *path);
/* Whose llama-server serves its page: a model already running (ready first, then starting),
 * so a page view never swaps a model out; else default_model (may be NULL), else the first
 * listed model that can start (its GGUF header reads, its last start did not fail); never one
 * disabled in store. NULL when the catalog lists none. */
struct store;
const struct model_def *static_page_model(const struct catalog *cat, const struct swap *swap,
                                          const char *default_model, const struct store *store);

#endif
