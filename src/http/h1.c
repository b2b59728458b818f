#include "h1.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"

static http_parser_settings settings;

static int
on_message_begin(http_parser *p)
{
    struct h1 *h = p->data;

    buf_reset(&h->hdr);
    buf_reset(&h->url);
    buf_reset(&h->req->body);
    h->n_hdr = 0;
    h->trailer_bytes = 0;
    h->in_value = h->head_done = false;
    return 0;
}

/* What the request line, the headers and any trailers have taken of header_bytes. */
static size_t
head_bytes(const struct h1 *h)
{
    return h->url.len + h->hdr.len + h->trailer_bytes;
}

/* Appends peer bytes to a bounded buffer; past it, the state says which limit. The request
 * line and the headers share one limit, as their sum is what a client makes us hold. */
static int
collect(struct h1 *h, struct buf *b, const char *at, size_t len, enum h1_state why)
{
    if (why == H1_TOO_LARGE && head_bytes(h) + len > h->header_bytes) {
        h->state = why;
        return -1;
    }
    if (buf_append(b, at, len) == 0)
        return 0;
    h->state = why;
    return -1;
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
    struct h1 *h = p->data;

    return collect(h, &h->url, at, len, H1_TOO_LARGE);
}

/* A chunked body's trailers come through the header callbacks after the head: they count
 * against the limit but are dropped, since appending to hdr could move the buffer that the
 * request's header pointers point into. */
static int
trailer(struct h1 *h, size_t len)
{
    h->trailer_bytes += len;
    if (head_bytes(h) <= h->header_bytes)
        return 0;
    h->state = H1_TOO_LARGE;
    return -1;
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    struct h1 *h = p->data;

    if (h->head_done)
        return trailer(h, len);
    if (h->in_value || h->n_hdr == 0) { /* a new header begins */
        if (h->n_hdr > 0 && collect(h, &h->hdr, "", 1, H1_TOO_LARGE) < 0)
            return -1;
        if (h->n_hdr == HTTP_MAX_HEADERS) {
            h->state = H1_TOO_MANY;
            return -1;
        }
        h->hdr_off[h->n_hdr][0] = h->hdr.len;
        h->hdr_off[h->n_hdr][1] = 0; /* 0: no value seen (a name never starts there) */
        h->n_hdr++;
        h->in_value = false;
    }
    return collect(h, &h->hdr, at, len, H1_TOO_LARGE);
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    struct h1 *h = p->data;

    if (h->head_done)
        return trailer(h, len);
    if (!h->in_value) {
        if (collect(h, &h->hdr, "", 1, H1_TOO_LARGE) < 0)
            return -1;
        h->hdr_off[h->n_hdr - 1][1] = h->hdr.len;
        h->in_value = true;
    }
    return collect(h, &h->hdr, at, len, H1_TOO_LARGE);
}

/* An absolute-form target ("http://host/path", which HTTP/1.1 servers must accept): the
 * authority replaces the Host header and the rest is the target. Returns the target; u has
 * room for one more byte. */
static char *
absolute_form(struct http_request *r, char *u)
{
    size_t skip = strncasecmp(u, "http://", 7) == 0    ? 7
                  : strncasecmp(u, "https://", 8) == 0 ? 8
                                                       : 0;
    char *auth = u + skip, *end;
    size_t i;

    if (skip == 0)
        return u;
    end = auth + strcspn(auth, "/?");
    for (i = 0; i < r->n_headers; i++)
        if (r->headers[i].name_len == 4 && strncasecmp(r->headers[i].name, "host", 4) == 0)
            break;
    if (i == r->n_headers && i < HTTP_MAX_HEADERS) {
        r->headers[i].name = "Host";
        r->headers[i].name_len = 4;
        r->n_headers++;
    }
    if (i < r->n_headers) {
        r->headers[i].value = auth;
        r->headers[i].value_len = (size_t)(end - auth);
    }
    if (*end != '/') { /* "http://host" or "http://host?q": the path is "/" */
        memmove(end + 1, end, strlen(end) + 1);
        *end = '/';
    }
    return end;
}

/* Splits the target into path and query (owned by the request). */
static void
split_target(struct http_request *r, const char *u)
{
    const char *q = strchr(u, '?');

    free(r->path);
    r->path = q ? xstrndup(u, (size_t)(q - u)) : xstrdup(u);
    free(r->query);
    r->query = q ? xstrdup(q + 1) : NULL;
}

/* The collected offsets become header pointers; the target becomes path and query. */
static int
fill_head(struct h1 *h, http_parser *p)
{
    struct http_request *r = h->req;

    if (collect(h, &h->hdr, "", 1, H1_TOO_LARGE) < 0)
        return -1;
    for (size_t i = 0; i < h->n_hdr; i++) {
        size_t n0 = h->hdr_off[i][0], v0 = h->hdr_off[i][1];

        r->headers[i].name = h->hdr.data + n0;
        r->headers[i].name_len = strlen(h->hdr.data + n0);
        r->headers[i].value = v0 ? h->hdr.data + v0 : "";
        r->headers[i].value_len = v0 ? strlen(h->hdr.data + v0) : 0;
    }
    r->n_headers = h->n_hdr;
    if (buf_append(&h->url, "", 1) < 0) { /* room for absolute_form's added '/' */
        h->state = H1_TOO_LARGE;
        return -1;
    }
    h->url.len--;
    split_target(r, absolute_form(r, (char *)buf_cstr(&h->url)));
    r->method = p->method;
    r->method_name = http_method_str(p->method);
    r->keep_alive = http_should_keep_alive(p);
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    struct h1 *h = p->data;

    if (fill_head(h, p) < 0)
        return -1;
    h->head_done = true;
    if (p->content_length != ULLONG_MAX && p->content_length > h->req->body.max) {
        h->state = H1_BODY_LIMIT; /* too large for anyone: said before any hook */
        return -1;
    }
    if (h->hooks->head(h->arg, h->req) < 0) {
        h->state = H1_ANSWERED;
        return -1;
    }
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct h1 *h = p->data;

    if (h->req->body.len + len <= h->req->body.max && h->hooks->body(h->arg, len) < 0) {
        h->state = H1_ANSWERED;
        return -1;
    }
    return collect(h, &h->req->body, at, len, H1_BODY_LIMIT);
}

static int
on_message_complete(http_parser *p)
{
    struct h1 *h = p->data;

    h->state = H1_COMPLETE;
    http_parser_pause(p, 1);
    return 0;
}

static void __attribute__((constructor)) init_settings(void)
{
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

void
h1_init(struct h1 *h, size_t header_bytes, struct http_request *req, const struct h1_hooks *hooks,
        void *arg)
{
    memset(h, 0, sizeof(*h));
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = h;
    buf_init(&h->hdr, header_bytes);
    buf_init(&h->url, header_bytes);
    h->header_bytes = header_bytes;
    h->req = req;
    h->hooks = hooks;
    h->arg = arg;
    h->state = H1_READING;
}

void
h1_cleanup(struct h1 *h)
{
    buf_cleanup(&h->hdr);
    buf_cleanup(&h->url);
}

size_t
h1_feed(struct h1 *h, const char *data, size_t len)
{
    size_t n;
    enum http_errno e;

    if (h->state != H1_READING)
        return 0;
    n = http_parser_execute(&h->parser, &settings, data, len);
    e = HTTP_PARSER_ERRNO(&h->parser);
    if (h->state == H1_READING && e == HPE_HEADER_OVERFLOW)
        h->state = H1_TOO_LARGE;
    else if (h->state == H1_READING && e != HPE_OK)
        h->state = H1_MALFORMED;
    return n;
}

void
h1_next(struct h1 *h)
{
    http_parser_pause(&h->parser, 0);
    buf_reset(&h->hdr);
    buf_reset(&h->url);
    h->state = H1_READING;
}

bool
h1_started(const struct h1 *h)
{
    return h->hdr.len > 0 || h->url.len > 0;
}

bool
h1_has_body(const struct h1 *h)
{
    return (h->parser.flags & F_CHUNKED) ||
           (h->parser.content_length != ULLONG_MAX && h->parser.content_length > 0);
}

int64_t
h1_content_length(const struct h1 *h)
{
    return h->parser.content_length == ULLONG_MAX || (h->parser.flags & F_CHUNKED)
               ? -1
               : (int64_t)h->parser.content_length;
}

bool
h1_is_http11(const struct h1 *h)
{
    return h->parser.http_major == 1 && h->parser.http_minor >= 1;
}

const char *
h1_error(const struct h1 *h)
{
    return http_errno_description(HTTP_PARSER_ERRNO(&h->parser));
}
