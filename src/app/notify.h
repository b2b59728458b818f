/*
 * systemd's notify protocol, spoken directly: one datagram per message to the unix socket named
 * by $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@'), so Goinfer needs
 * no libsystemd. Without $NOTIFY_SOCKET every call does nothing.
 *
 * READY=1 (with MAINPID=, so a process started by a graceful restart becomes the unit's main
 * process; the unit needs NotifyAccess=all), RELOADING=1, STOPPING=1, STATUS= a line of what is
 * served, and WATCHDOG=1 from the loop every half $WATCHDOG_USEC.
 */
#ifndef GOINFER_APP_NOTIFY_H
#define GOINFER_APP_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* Fills buf (size len) with the STATUS= text; called from the loop. */
typedef void (*notify_status_cb)(void *arg, char *buf, size_t len);

/* Reads the environment, opens the socket, starts the watchdog timer (unreferenced: it never
 * keeps the loop alive) and the status refresh. status may be NULL. Call once. */
void notify_start(uv_loop_t *loop, notify_status_cb status, void *arg);
/* READY=1, MAINPID= and the status line: we listen and serve. */
void notify_ready(void);
/* RELOADING=1 before a reload, READY=1 and the new status after it. */
void notify_reloading(void);
void notify_reloaded(void);
/* STOPPING=1; the watchdog and status timers end. hand_off: a restart's new process took over
 * (it sent MAINPID=), so only the timers end: a STOPPING=1 would stop the unit. */
void notify_stopping(bool hand_off);
/* Sends text (lines "KEY=value") as one datagram. Returns 0, -ENOENT when there is no socket,
 * or -errno. */
int notify_send(const char *text);

#endif
