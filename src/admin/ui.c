#include "ui.h"

#include <stddef.h>
#include <string.h>

#include "http/errors.h"

/* Embedded at build time from src/admin/ui/ (tools/embed). */
extern const unsigned char admin_ui_index_html[], admin_ui_app_js[], admin_ui_app_css[];
extern const size_t admin_ui_index_html_len, admin_ui_app_js_len, admin_ui_app_css_len;

static const struct asset {
    const char *path, *type;
    const unsigned char *data;
    const size_t *len;
} assets[] = {
    {"/ui", "text/html; charset=utf-8", admin_ui_index_html, &admin_ui_index_html_len},
    {"/ui/", "text/html; charset=utf-8", admin_ui_index_html, &admin_ui_index_html_len},
    {"/ui/app.js", "text/javascript; charset=utf-8", admin_ui_app_js, &admin_ui_app_js_len},
    {"/ui/app.css", "text/css; charset=utf-8", admin_ui_app_css, &admin_ui_app_css_len},
};

void
admin_ui_page(struct http_request *req)
{
    for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++) {
        const struct asset *a = &assets[i];
        /* No inline script or style anywhere: the page's own files only, never framed. */
        const struct http_header h[] = {
            {"Content-Type", 12, a->type, strlen(a->type)},
            {"Content-Security-Policy", 23,
             "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'", 64},
            {"X-Frame-Options", 15, "DENY", 4},
            {"X-Content-Type-Options", 22, "nosniff", 7},
            {"Cache-Control", 13, "no-cache", 8},
        };

        if (strcmp(req->path, a->path) != 0)
            continue;
        if (http_stream_start(req, 200, h, sizeof(h) / sizeof(h[0]), (int64_t)*a->len) == 0)
            http_stream_write(req, (const char *)a->data, *a->len);
        http_stream_end(req);
        return;
    }
    http_respond_error(req, 404, "not_found", "no such file of the admin app: %s (see /ui)",
                       req->path);
}
