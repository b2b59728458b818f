#include "cors.h"

#include <string.h>
#include <strings.h>

#define ALLOW_HEADERS "Authorization, Content-Type, X-Api-Key, Accept"
#define ALLOW_METHODS "GET, POST, HEAD, OPTIONS"

/* The page's own origin: "scheme://" followed by exactly the Host header. */
static bool
same_origin(const char *origin, size_t n, const char *host, size_t host_len)
{
    const char *sep = memmem(origin, n, "://", 3);

    if (sep == NULL || host == NULL)
        return false;
    sep += 3;
    return (size_t)(origin + n - sep) == host_len && strncasecmp(sep, host, host_len) == 0;
}

enum cors_verdict
cors_check(char *const *origins, const char *origin, size_t n, const char *host, size_t host_len)
{
    if (origin == NULL)
        return CORS_NONE;
    if (same_origin(origin, n, host, host_len))
        return CORS_ALLOWED;
    for (size_t i = 0; origins && origins[i]; i++)
        if (strlen(origins[i]) == n && strncmp(origins[i], origin, n) == 0)
            return CORS_ALLOWED; /* exact: a prefix or a longer name is another site */
    return CORS_DENIED;
}

enum cors_action
cors_handle(char *const *origins, struct http_request *req)
{
    return cors_handle_with(origins, NULL, NULL, req);
}

enum cors_action
cors_handle_with(char *const *origins, cors_also_cb also, void *arg, struct http_request *req)
{
    size_t n = 0, host_len = 0;
    const char *origin = http_header_get(req, "origin", &n);
    const char *host = http_header_get(req, "host", &host_len);
    enum cors_verdict v = cors_check(origins, origin, n, host, host_len);
    bool preflight = strcmp(req->method_name, "OPTIONS") == 0 &&
                     http_header_get(req, "access-control-request-method", NULL) != NULL;

    http_add_header(req, "Vary", "Origin", 6);
    if (v == CORS_NONE)
        return CORS_PASS;
    if (v == CORS_DENIED && also != NULL && also(arg, origin, n))
        v = CORS_ALLOWED;
    if (v == CORS_DENIED) {
        http_respond_error(req, 403, "permission_error",
                           "origin %.*s is not allowed: add it to 'origins' in goinfer.yml "
                           "(or GI_ORIGINS)",
                           (int)n, origin);
        return CORS_REFUSED;
    }
    http_add_header(req, "Access-Control-Allow-Origin", origin, n);
    if (!preflight)
        return CORS_PASS;
    http_add_header(req, "Access-Control-Allow-Methods", ALLOW_METHODS, strlen(ALLOW_METHODS));
    http_add_header(req, "Access-Control-Allow-Headers", ALLOW_HEADERS, strlen(ALLOW_HEADERS));
    return CORS_PREFLIGHT;
}

void
cors_preflight(struct http_request *req)
{
    http_respond(req, 204, "text/plain", "", 0);
}
