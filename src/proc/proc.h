/*
 * Child processes (llama-server): spawned in their own process group through a small
 * launcher that ties them to our life (PR_SET_PDEATHSIG), output captured line by line,
 * stopped with SIGTERM to the group and SIGKILL after a grace period.
 */
#ifndef GOINFER_PROC_PROC_H
#define GOINFER_PROC_PROC_H

#include <stdint.h>
#include <uv.h>

struct proc;

/* Runs once the child has exited and its output is drained; call proc_free from it or later. */
typedef void (*proc_exit_cb)(struct proc *p, int64_t status, int term_signal, void *arg);

/* Path of our own executable, used as the launcher; set once at start-up. */
void proc_set_launcher(const char *self_exe);
/* Entry point of the launcher ("goinfer --child-exec PPID EXE ARGS..."); never returns. */
int proc_launcher_main(int argc, char **argv);

/* Starts argv[0] with argv and our environment plus env ("K=V", NULL-terminated, may be NULL);
 * tag names it in logs. Returns NULL and *err on failure. */
struct proc *proc_spawn(uv_loop_t *loop, char *const argv[], char *const env[], const char *tag,
                        proc_exit_cb cb, void *arg, int *err);
/* SIGTERM to the process group now, SIGKILL after grace_ms; no-op once exited. */
void proc_stop(struct proc *p, uint64_t grace_ms);
void proc_free(struct proc *p);
int proc_pid(const struct proc *p);
/* The last lines the child printed (NUL-terminated, possibly empty). */
const char *proc_tail(struct proc *p);

#endif
