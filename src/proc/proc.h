/*
 * Child processes (llama-server, a cmd): forked into their own process group and tied to our
 * life: the child by PR_SET_PDEATHSIG, and its whole group (what `sh -c` starts under it too)
 * by a guard process that kills the group when we die, kill -9 and crashes included. Watched
 * through a pidfd, output captured line by line, stopped with SIGTERM to the group and SIGKILL
 * after a grace period. Children get our environment without our secrets (GI_API_KEY,
 * GI_ADMIN_API_KEY, GI_TUNNEL_TOKEN).
 */
#ifndef GOINFER_PROC_PROC_H
#define GOINFER_PROC_PROC_H

#include <stdint.h>
#include <uv.h>

#include "proc/childmsg.h"

struct proc;

/* Runs once the child has exited and its output is drained; call proc_free from it or later. */
typedef void (*proc_exit_cb)(struct proc *p, int64_t status, int term_signal, void *arg);

/* Starts argv[0] with argv (each element one argument; no shell) and our environment, less our
 * secrets, plus env ("K=V", NULL-terminated, may be NULL; it wins); tag names it in logs.
 * Returns NULL and *err on failure. */
struct proc *proc_spawn(uv_loop_t *loop, char *const argv[], char *const env[], const char *tag,
                        proc_exit_cb cb, void *arg, int *err);
/* As proc_spawn, for an inference engine that may speak llama.cpp's child protocol
 * (childmsg.h): LLAMA_SERVER_ROUTER_PORT is set (after env, which wins), its stdin is a pipe we
 * hold (a llama-server exits at once when it reads end of file there, so it never outlives us),
 * and its state lines go to the proc_on_state callback instead of the log. */
struct proc *proc_spawn_engine(uv_loop_t *loop, char *const argv[], char *const env[],
                               const char *tag, proc_exit_cb cb, void *arg, int *err);
/* Stops the child, no-op once exited. One that said "ready" on the child protocol gets the
 * line cmd_router_to_child:exit (the stop it expects from llama.cpp's router: a clean one), and
 * SIGTERM to its group only if still there a second later; any other gets SIGTERM now. SIGKILL
 * follows the SIGTERM after grace_ms. */
void proc_stop(struct proc *p, uint64_t grace_ms);
/* SIGKILL to the group after ms unless it has exited (when something else asked it to stop). */
void proc_kill_after(struct proc *p, uint64_t ms);
/* Called with each line the child prints (no newline), e.g. to notice it is ready. */
typedef void (*proc_line_cb)(struct proc *p, const char *line, size_t len, void *arg);
void proc_on_line(struct proc *p, proc_line_cb cb);
/* Called with each state line of the child protocol (proc_spawn_engine's children only). */
typedef void (*proc_state_cb)(struct proc *p, const struct proc_child_msg *m, void *arg);
void proc_on_state(struct proc *p, proc_state_cb cb);
void proc_free(struct proc *p);
int proc_pid(const struct proc *p);
/* The last lines the child printed (NUL-terminated, possibly empty). */
const char *proc_tail(struct proc *p);

#endif
