/*
 * Graceful restart: the process starts a new copy of itself (the same program file, the same
 * argv) that inherits the listening sockets, so no connection is refused while they change
 * hands. The new process adopts the sockets (GOINFER_LISTEN_FDS, "fd:host:port,...") instead
 * of binding, and says through a pipe (GOINFER_READY_FD) once it listens; only then does the
 * old one stop accepting, finish its requests and streams, stop its model processes and exit.
 * A new process that dies or stays silent before that is reported and the old one keeps
 * serving.
 */
#ifndef GOINFER_APP_RESTART_H
#define GOINFER_APP_RESTART_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define RESTART_MAX_FDS 8

/* One listening socket handed on: its descriptor and the address it is bound to. */
struct restart_fd {
    int fd;
    char *host; /* owned */
    int port;
};

/* ok: the new process listens (pid); else msg says what went wrong. */
typedef void (*restart_done_cb)(void *arg, bool ok, pid_t pid, const char *msg);

/* The program to run again: /proc/self/exe's target read now, at start, so a binary replaced
 * on disk since is the one started (the point of most restarts). Call once, early. */
void restart_init(void);
/* Starts the new process with fds inherited (borrowed: only the child's copies change); done
 * is called once, from the loop, within timeout_ms (a silent new process is then killed). The
 * restart frees itself after done. Returns 0, or -errno with err when nothing was started. */
int restart_start(uv_loop_t *loop, char **argv, const struct restart_fd *fds, size_t n,
                  uint64_t timeout_ms, restart_done_cb done, void *arg, char *err, size_t errlen);

/* The new side: the sockets the old process handed on and the pipe to tell it we listen, both
 * removed from the environment (no child sees them) and made close-on-exec. Call once, early.
 * Returns how many sockets were put in out (at most max). */
size_t restart_inherited(struct restart_fd *out, size_t max);
/* The new side: tells the old process we listen (once; nothing when we were not started so). */
void restart_tell_ready(void);

#endif
