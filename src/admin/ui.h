/* The web UI pages Goinfer serves itself. */
#ifndef GOINFER_ADMIN_UI_H
#define GOINFER_ADMIN_UI_H

#include "http/server.h"

/* GET /ui: a page with the models, the running children and the live logs. The page holds no
 * secret; its API calls carry the key the user types in. */
void admin_ui_page(struct http_request *req);

#endif
