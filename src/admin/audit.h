/*
 * The audit trail: every admin action (who, what, when, from where, and how it ended), in the
 * log and in the admin store once it is open. Every handler that changes something calls
 * audit_record once, just before it answers (a request may be gone once answered).
 */
#ifndef GOINFER_ADMIN_AUDIT_H
#define GOINFER_ADMIN_AUDIT_H

#include "http/request.h"

struct store;

/* The store the trail is written to (borrowed until the next call; NULL: the log only). */
void audit_set_store(struct store *st);
/* action: a short verb phrase ("model.enable", "file.delete"); target: what it acted on (a
 * model, a file name) or NULL; status: the HTTP status answered. */
void audit_record(const struct http_request *req, const char *action, const char *target,
                  int status);

#endif
