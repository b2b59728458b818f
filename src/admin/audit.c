/* The audit trail: one log line per admin action (the store keeps them too, when open). */
#include "admin/audit.h"

#include "core/log.h"
#include "http/server.h"

void
audit_record(const struct http_request *req, const char *action, const char *target, int status)
{
    log_info("audit: %s%s%s by %s from %s: %d", action, target ? " " : "", target ? target : "",
             "admin key", http_request_peer(req), status);
}
