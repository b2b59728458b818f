#include "ui.h"

#include <stddef.h>

extern const unsigned char admin_ui_html[];
extern const size_t admin_ui_html_len;

void
admin_ui_page(struct http_request *req)
{
    static const struct http_header h[] = {
        {"Content-Type", 12, "text/html; charset=utf-8", 24},
        {"Content-Security-Policy", 23,
         "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'", 73},
        {"X-Frame-Options", 15, "DENY", 4},
        {"Cache-Control", 13, "no-cache", 8},
    };

    if (http_stream_start(req, 200, h, sizeof(h) / sizeof(h[0]), (int64_t)admin_ui_html_len) == 0)
        http_stream_write(req, (const char *)admin_ui_html, admin_ui_html_len);
    http_stream_end(req);
}
