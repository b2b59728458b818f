/* The audit trail: one log line per admin action, and a row in the admin store when open. */
#include "admin/audit.h"

#include <time.h>

#include "admin/store.h"
#include "core/log.h"
#include "http/server.h"

static struct store *trail; /* process-wide, as the metrics registry is */

void
audit_set_store(struct store *st)
{
    trail = st;
}

void
audit_record(const struct http_request *req, const char *action, const char *target, int status)
{
    const char *key = req->key_name[0] ? req->key_name : "no key";
    struct timespec ts;
    struct store_audit u;

    log_info("audit: %s%s%s by %s from %s: %d", action, target ? " " : "", target ? target : "",
             key, http_request_peer(req), status);
    clock_gettime(CLOCK_REALTIME, &ts);
    u = (struct store_audit){
        .t_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
        .key = req->key_name,
        .client = http_request_peer(req),
        .action = action,
        .target = target,
        .status = status,
    };
    store_audit_add(trail, &u);
}
