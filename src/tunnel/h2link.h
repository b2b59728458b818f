/*
 * What both ends of a tunnel share around their nghttp2 session: feeding it bytes, flushing
 * what it wants to send to a transport, and the keepalive (a PING after ping_ms of silence,
 * the link declared dead when no answer comes within timeout_ms).
 */
#ifndef GOINFER_TUNNEL_H2LINK_H
#define GOINFER_TUNNEL_H2LINK_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"

struct h2link {
    nghttp2_session *session;
    int (*send)(void *arg, const char *data, size_t len); /* the transport; -1 when gone */
    void (*on_dead)(void *arg, const char *why);
    void (*on_closed)(void *arg);  /* after h2link_stop: the owner may free itself */
    void (*on_flushed)(void *arg); /* optional: after queued frames were sent */
    void *arg;
    uv_timer_t timer;
    uv_check_t check; /* sends at the end of the loop turn */
    int closing;      /* handles still closing after h2link_stop */
    uint64_t ping_ms, timeout_ms;
    uint64_t last_rx, ping_sent; /* loop times; ping_sent 0: none outstanding */
    struct buf out;              /* frames gathered for one write */
    bool dead;
    char why[128]; /* what killed it, for on_dead */
};

/* Windows: 1 MiB per stream, 16 MiB per connection, credited by hand (nghttp2_session_consume)
 * once bytes were written downstream. */
#define H2LINK_STREAM_WINDOW (1 << 20)
#define H2LINK_CONN_WINDOW   (16 << 20)

/* Before any input: the keepalive clock. */
void h2link_init(struct h2link *l, uv_loop_t *loop);
/* Starts the keepalive timer and sends our SETTINGS; the session must exist. */
void h2link_start(struct h2link *l, uint32_t max_streams);
/* Returns 0, or -1 when the peer broke the protocol (on_dead was called). */
int h2link_input(struct h2link *l, const char *data, size_t len);
/* Sends what the session has queued, at the end of this loop turn. */
void h2link_flush(struct h2link *l);
/* Declares the link dead; on_dead runs from the loop (safe inside nghttp2 callbacks). */
void h2link_fail(struct h2link *l, const char *why);
/* Sends what is still queued (a last word), then frees the session once the timer handle is closed,
 * then calls on_closed; call once. */
void h2link_stop(struct h2link *l);
/* For a session's on_frame_recv: notes PING answers. */
void h2link_frame(struct h2link *l, const nghttp2_frame *f);

/* ---- the control stream's NDJSON lines, handled alike at both ends ---- */

typedef void (*h2link_line_cb)(void *arg, const char *line, size_t len);

/* Appends data to in and hands each complete line (without its newline) to cb.
 * Returns -1 when a line outgrows in's maximum (in is then emptied). */
int h2link_lines_input(struct buf *in, const uint8_t *data, size_t len, h2link_line_cb cb,
                       void *arg);
/* Queues text (one or more lines; a last newline is added when missing) on stream id's body,
 * whose data provider reads out with h2link_lines_read, and sends it. */
void h2link_lines_send(struct h2link *l, struct buf *out, int32_t id, const char *text);
/* For a data provider: as much of out as fits in dst, or NGHTTP2_ERR_DEFERRED when empty. */
ssize_t h2link_lines_read(struct buf *out, uint8_t *dst, size_t len);

#endif
