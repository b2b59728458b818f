/* The web UI pages Goinfer serves itself. */
#ifndef GOINFER_ADMIN_UI_H
#define GOINFER_ADMIN_UI_H

#include "http/server.h"

/* GET /ui and /ui/<file>: the admin app (models, activity, logs, files, settings, fleet). Its
 * files hold no secret; its API calls carry the key the user types in. */
void admin_ui_page(struct http_request *req);

#endif
