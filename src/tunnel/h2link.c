#include "h2link.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

#define FLUSH_BATCH (64 * 1024) /* bytes gathered before a write */

static void
on_dead_now(uv_timer_t *t)
{
    struct h2link *l = t->data;

    uv_timer_stop(t);
    l->on_dead(l->arg, l->why);
}

/* Reported from the loop, never from inside a caller that may still use what the owner frees. */
void
h2link_fail(struct h2link *l, const char *why)
{
    if (l->dead)
        return;
    l->dead = true;
    snprintf(l->why, sizeof(l->why), "%s", why);
    uv_timer_start(&l->timer, on_dead_now, 0, 0);
}

static int
send_batch(struct h2link *l)
{
    int rc = l->out.len > 0 && !l->dead ? l->send(l->arg, l->out.data, l->out.len) : 0;

    buf_reset(&l->out);
    if (rc < 0)
        h2link_fail(l, "the connection closed");
    return rc;
}

/* One TLS record and one write for everything queued, not one per frame. */
static void
flush_now(struct h2link *l)
{
    const uint8_t *data;
    ssize_t n = 0;

    while (!l->dead && (n = nghttp2_session_mem_send(l->session, &data)) > 0) {
        buf_append(&l->out, data, (size_t)n);
        if (l->out.len >= FLUSH_BATCH && send_batch(l) < 0)
            return;
    }
    if (n < 0)
        h2link_fail(l, nghttp2_strerror((int)n));
    else
        send_batch(l);
    /* a protocol error ends the session with GOAWAY, not an error code: the link is done */
    if (!l->dead && !nghttp2_session_want_read(l->session) &&
        !nghttp2_session_want_write(l->session))
        h2link_fail(l, "the session ended (GOAWAY after a protocol error)");
}

static void
on_check(uv_check_t *c)
{
    struct h2link *l = c->data;

    uv_check_stop(c);
    if (l->dead || l->session == NULL)
        return;
    flush_now(l);
    if (!l->dead && l->on_flushed != NULL)
        l->on_flushed(l->arg);
}

/* Sending waits for the end of this loop turn (a uv_check), so that every frame a turn makes
 * (headers, data, end of stream, window updates) goes out in one TLS record and one write. */
void
h2link_flush(struct h2link *l)
{
    if (l->dead || l->session == NULL || uv_is_active((uv_handle_t *)&l->check))
        return;
    uv_check_start(&l->check, on_check);
}

int
h2link_input(struct h2link *l, const char *data, size_t len)
{
    ssize_t n;

    if (l->dead)
        return -EPIPE;
    l->last_rx = uv_now(l->timer.loop);
    n = nghttp2_session_mem_recv(l->session, (const uint8_t *)data, len);
    if (n < 0) {
        char why[128];

        snprintf(why, sizeof(why), "HTTP/2 error: %s", nghttp2_strerror((int)n));
        h2link_fail(l, why);
        return -EPROTO;
    }
    h2link_flush(l);
    return l->dead ? -1 : 0;
}

void
h2link_frame(struct h2link *l, const nghttp2_frame *f)
{
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK))
        l->ping_sent = 0;
}

static void
on_tick(uv_timer_t *t)
{
    struct h2link *l = t->data;
    uint64_t now = uv_now(t->loop);

    if (l->dead)
        return;
    if (l->ping_sent && now - l->ping_sent >= l->timeout_ms) {
        char why[96];

        snprintf(why, sizeof(why), "no answer to a PING for %llu ms",
                 (unsigned long long)l->timeout_ms);
        h2link_fail(l, why);
        return;
    }
    if (!l->ping_sent && now - l->last_rx >= l->ping_ms) {
        l->ping_sent = now;
        nghttp2_submit_ping(l->session, NGHTTP2_FLAG_NONE, NULL);
        h2link_flush(l);
    }
}

void
h2link_init(struct h2link *l, uv_loop_t *loop)
{
    buf_init(&l->out, SIZE_MAX);
    uv_check_init(loop, &l->check);
    l->check.data = l;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->last_rx = uv_now(loop);
}

void
h2link_start(struct h2link *l, uint32_t max_streams)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2LINK_STREAM_WINDOW},
    };
    uint64_t tick = l->timeout_ms < l->ping_ms ? l->timeout_ms : l->ping_ms;

    nghttp2_submit_settings(l->session, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(l->session, NGHTTP2_FLAG_NONE, 0, H2LINK_CONN_WINDOW);
    tick = tick / 4 > 0 ? tick / 4 : 1; /* detection within a quarter of the limits */
    if (!l->dead)                       /* a failure already reported keeps its timer */
        uv_timer_start(&l->timer, on_tick, tick, tick);
    h2link_flush(l);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct h2link *l = h->data;

    if (--l->closing > 0)
        return;
    nghttp2_session_del(l->session);
    l->session = NULL;
    buf_cleanup(&l->out);
    if (l->on_closed)
        l->on_closed(l->arg);
}

void
h2link_stop(struct h2link *l)
{
    if (!l->dead && l->session != NULL)
        flush_now(l); /* a last word (drain, GOAWAY) still goes */
    l->dead = true;
    l->closing = 2;
    uv_close((uv_handle_t *)&l->timer, on_handle_closed);
    uv_close((uv_handle_t *)&l->check, on_handle_closed);
}

int
h2link_lines_input(struct buf *in, const uint8_t *data, size_t len, h2link_line_cb cb, void *arg)
{
    char *nl;

    if (buf_append(in, data, len) < 0) {
        buf_reset(in);
        return -EMSGSIZE;
    }
    while (in->len > 0 && (nl = memchr(in->data, '\n', in->len)) != NULL) {
        size_t n = (size_t)(nl - in->data);

        cb(arg, in->data, n);
        buf_consume(in, n + 1);
    }
    return 0;
}

void
h2link_lines_send(struct h2link *l, struct buf *out, int32_t id, const char *text)
{
    size_t n = strlen(text);

    buf_append(out, text, n);
    if (n == 0 || text[n - 1] != '\n')
        buf_append(out, "\n", 1);
    nghttp2_session_resume_data(l->session, id);
    h2link_flush(l);
}

ssize_t
h2link_lines_read(struct buf *out, uint8_t *dst, size_t len)
{
    size_t n = out->len < len ? out->len : len;

    if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    memcpy(dst, out->data, n);
    buf_consume(out, n);
    return (ssize_t)n;
}
