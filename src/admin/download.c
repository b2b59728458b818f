/* Background downloads: see download.h. */
#include "admin/download.h"

#include <stdlib.h>

#include "core/xmalloc.h"
#include "http/errors.h"

struct admin_downloads {
    const struct admin_files_env *env;
};

struct admin_downloads *
admin_downloads_new(const struct admin_files_env *env)
{
    struct admin_downloads *d = xcalloc(1, sizeof(*d));

    d->env = env;
    return d;
}

void
admin_downloads_shutdown(struct admin_downloads *d)
{
    (void)d;
}

void
admin_downloads_free(struct admin_downloads *d)
{
    free(d);
}

void
admin_downloads_start(struct admin_downloads *d, struct http_request *req)
{
    (void)d;
    http_respond_error(req, 501, "not_implemented", "downloads are not built yet");
}

void
admin_downloads_list(struct admin_downloads *d, struct http_request *req)
{
    http_respond_json(req, 200, admin_downloads_json(d));
}

void
admin_downloads_cancel(struct admin_downloads *d, struct http_request *req)
{
    admin_downloads_start(d, req);
}

json_t *
admin_downloads_json(const struct admin_downloads *d)
{
    (void)d;
    return json_array();
}
