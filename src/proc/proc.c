#include "proc.h"

#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "proc/childmsg.h"

#define LINE_MAX_BYTES 4096
#define TAIL_BYTES     2048
/* After the exit line, SIGTERM follows this late (at most: the grace period) when the child is
 * still there. llama-server acts on the line as on SIGTERM, at once, so this only matters to a
 * child that stopped reading its stdin. */
#define EXIT_LINE_MS 1000

struct pipe_in {
    uv_pipe_t pipe;
    struct proc *p;
    struct buf line;
    bool eof;
};

/* A guard process and the write end of its pipe; pid -1 when none. */
struct guard {
    int pid;
    int fd;
};

/* Where a stop is: what the kill timer sends next. */
enum stop_step { STOP_NONE, STOP_TERM_NEXT, STOP_KILL_NEXT };

struct proc {
    int pid;
    int pidfd;           /* readable when the child exits (Linux 5.3+) */
    int in_fd;           /* the write end of its stdin (llama.cpp's child protocol), or -1 */
    struct guard guard;  /* kills the group if we die (see guard_run) */
    uv_poll_t exit_poll; /* on pidfd */
    uv_timer_t kill_timer;
    struct pipe_in out[2];
    char *tag;
    proc_exit_cb cb;
    proc_line_cb line_cb;
    proc_state_cb state_cb;
    void *arg;
    bool exited, reported, freeing;
    bool talks;      /* started by proc_spawn_engine */
    bool said_ready; /* it said "ready" on the protocol: it reads the exit line from now on */
    enum stop_step stop_step;
    uint64_t grace_ms;
    int64_t status;
    int term_signal;
    int open_handles;
    char tail[TAIL_BYTES];
    size_t tail_len;
};

/* Keeps the last TAIL_BYTES of output, whole lines first out. */
static void
tail_add(struct proc *p, const char *s, size_t n)
{
    if (n + 1 > TAIL_BYTES)
        s += n + 1 - TAIL_BYTES, n = TAIL_BYTES - 1;
    if (p->tail_len + n + 1 > TAIL_BYTES) {
        size_t drop = p->tail_len + n + 1 - TAIL_BYTES;
        char *nl = memchr(p->tail + drop, '\n', p->tail_len - drop);

        drop = nl ? (size_t)(nl - p->tail) + 1 : p->tail_len;
        memmove(p->tail, p->tail + drop, p->tail_len - drop);
        p->tail_len -= drop;
    }
    memcpy(p->tail + p->tail_len, s, n);
    p->tail_len += n;
    p->tail[p->tail_len++] = '\n';
}

/* A state line of the child protocol (stdout only): to the state callback, and to the debug
 * log alone, as llama.cpp's router does (one every 200 ms would flood /logs). */
static bool
state_line(struct proc *p, const char *s, size_t n)
{
    struct proc_child_msg m;

    if (proc_child_msg_parse(s, n, &m) < 0)
        return false;
    log_debug("[%s] %.*s", p->tag, (int)n, s);
    if (m.state == PROC_CHILD_READY)
        p->said_ready = true;
    if (p->state_cb)
        p->state_cb(p, &m, p->arg);
    return true;
}

static void
emit_line(struct proc *p, const char *s, size_t n, bool from_stdout)
{
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    if (n == 0)
        return;
    char line[LINE_MAX_BYTES + 200];
    int k;

    if (from_stdout && p->talks && state_line(p, s, n))
        return;
    log_debug("[%s] %.*s", p->tag, (int)n, s);
    if (!log_enabled(LOG_LEVEL_DEBUG)) { /* /logs shows the children's output either way */
        k = snprintf(line, sizeof(line), "[%s] %.*s", p->tag, (int)n, s);
        if (k > 0)
            log_capture(line, (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1);
    }
    tail_add(p, s, n);
    if (p->line_cb)
        p->line_cb(p, s, n, p->arg);
}

static void release_guard(struct guard *g);

static void
maybe_report(struct proc *p)
{
    if (p->reported || !p->exited || !p->out[0].eof || !p->out[1].eof)
        return;
    p->reported = true;
    uv_timer_stop(&p->kill_timer);
    if (p->cb)
        p->cb(p, p->status, p->term_signal, p->arg);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    b->base = xmalloc(8192);
    b->len = 8192;
}

/* Splits output into lines; an over-long line is emitted in pieces. */
static void
on_output(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct pipe_in *in = s->data;
    char *q, *start = b->base, *end = b->base + (nread > 0 ? nread : 0);

    for (q = start; q < end; q++) {
        if (*q != '\n' && in->line.len + (size_t)(q - start) < LINE_MAX_BYTES)
            continue;
        buf_append(&in->line, start, (size_t)(q - start) + 1);
        emit_line(in->p, in->line.data, in->line.len, in == &in->p->out[0]);
        buf_reset(&in->line);
        start = q + 1;
    }
    if (start < end)
        buf_append(&in->line, start, (size_t)(end - start));
    free(b->base);
    if (nread < 0) {
        if (in->line.len > 0)
            emit_line(in->p, in->line.data, in->line.len, in == &in->p->out[0]);
        buf_reset(&in->line);
        in->eof = true;
        uv_read_stop(s);
        maybe_report(in->p);
    }
}

/* After exit, output still in flight gets a second to arrive; a grandchild holding a pipe
 * open must not delay the report forever. */
static void
on_drain_timeout(uv_timer_t *t)
{
    struct proc *p = t->data;

    p->out[0].eof = p->out[1].eof = true;
    maybe_report(p);
}

static void
close_stdin(struct proc *p)
{
    if (p->in_fd >= 0)
        close(p->in_fd);
    p->in_fd = -1;
}

static void
on_kill_timeout(uv_timer_t *t)
{
    struct proc *p = t->data;

    if (p->stop_step == STOP_TERM_NEXT) {
        log_warnx("%s: pid %d still running after the exit line, sending SIGTERM", p->tag,
                  proc_pid(p));
        kill(-proc_pid(p), SIGTERM);
        proc_kill_after(p, p->grace_ms);
        return;
    }
    log_warnx("%s: pid %d still running after SIGTERM, sending SIGKILL", p->tag, proc_pid(p));
    kill(-proc_pid(p), SIGKILL);
}

/* The pidfd turned readable: reap the child (it is ours alone, so WNOHANG cannot miss it). */
static void
on_exit_poll(uv_poll_t *h, int status, int events)
{
    struct proc *p = h->data;
    int ws = 0;

    pid_t r;

    (void)status;
    (void)events;
    r = waitpid(p->pid, &ws, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR))
        return;
    /* r < 0 (ECHILD): someone reaped it (SIGCHLD ignored); it is gone all the same */
    uv_poll_stop(h);
    p->exited = true;
    p->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 0;
    p->term_signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
    kill(-p->pid, SIGKILL); /* anything left in its group goes with it */
    release_guard(&p->guard);
    close_stdin(p);
    p->stop_step = STOP_NONE;
    uv_timer_start(&p->kill_timer, on_drain_timeout, 1000, 0);
    maybe_report(p);
}

/* Goinfer's own secrets, read from its environment (conf.c): no child needs them, and a
 * llama-server or a cmd could leak them (its /proc/<pid>/environ, a crash report, a log). */
static const char *const secret_env[] = {"GI_API_KEY", "GI_ADMIN_API_KEY", "GI_TUNNEL_TOKEN", NULL};

static bool
is_secret(const char *kv)
{
    for (int i = 0; secret_env[i]; i++) {
        size_t n = strlen(secret_env[i]);

        if (strncmp(kv, secret_env[i], n) == 0 && kv[n] == '=')
            return true;
    }
    return false;
}

/* Our environment without our secrets, with extra "K=V" entries (a model's env:, which may
 * set anything) first, so they win in getenv(). The strings are borrowed. */
static char **
child_env(char *const extra[])
{
    extern char **environ;
    size_t n = 0, m = 0, k;
    char **v;

    while (extra && extra[m])
        m++;
    while (environ[n])
        n++;
    v = xcalloc(n + m + 1, sizeof(*v));
    memcpy(v, extra ? extra : v, m * sizeof(*v));
    k = m;
    for (size_t i = 0; i < n; i++)
        if (!is_secret(environ[i]))
            v[k++] = environ[i];
    return v;
}

/*
 * In the child, between fork and exec: only async-signal-safe calls. Its own session (so the
 * whole group can be signalled), killed if we die (no orphan even after kill -9), default
 * signals (we ignore SIGPIPE), stdin from in (a pipe we hold) or /dev/null when in is -1,
 * stdout/stderr to our pipes.
 */
static noreturn void
child_exec(const char *exe, char *const argv[], char **env, const int io[3], int errfd,
           pid_t parent)
{
    struct sigaction dfl;
    sigset_t none;
    int fd, e;

    setsid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(1);
    /* Our handlers (libuv's) must not run here: default them all, then unblock. */
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    fd = io[0] >= 0 ? io[0] : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || dup2(fd, 0) < 0 || dup2(io[1], 1) < 0 || dup2(io[2], 2) < 0)
        _exit(126);
    /* Libraries open fds without O_CLOEXEC (curl's wakeup pair): none may reach the child. */
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(exe, argv, env);
    e = errno;
    if (write(errfd, &e, sizeof(e)) < 0)
        _exit(127);
    _exit(127);
}

/* A command name without '/' is looked up in PATH here, before fork, as a shell would. */
static char *
resolve(const char *name)
{
    const char *path = getenv("PATH"), *p;

    if (strchr(name, '/') != NULL || path == NULL)
        return xstrdup(name);
    for (p = path; *p;) {
        size_t n = strcspn(p, ":");
        char *full = xasprintf("%.*s/%s", (int)n, n ? p : ".", name);

        if (access(full, X_OK) == 0)
            return full;
        free(full);
        p += n + (p[n] == ':');
    }
    return xstrdup(name);
}

/*
 * The guard: a child of ours (a fork without exec, so it costs a fork, not a program load) in a
 * session of its own, every signal blocked, no descriptor but the read end of a pipe whose only
 * write end we hold. It reads the child's process group from the pipe, then waits: a byte
 * means the child is gone and reaped, so it exits; end of file means we died, however
 * (SIGKILL, a crash: the kernel closes our end), and it kills the whole group first.
 * PR_SET_PDEATHSIG alone reaches only the child, not what a wrapper such as `sh -c` started
 * under it. Only async-signal-safe calls here.
 */
static noreturn void
guard_run(int lifeline)
{
    pid_t pgid = 0;
    size_t got = 0;
    ssize_t n;
    char c;

    setsid();
    if (chdir("/") != 0 || dup2(lifeline, 0) < 0)
        _exit(1);
    syscall(SYS_close_range, 1U, ~0U, 0U);
    prctl(PR_SET_NAME, "goinfer-guard");
    while (got < sizeof(pgid)) {
        n = read(0, (char *)&pgid + got, sizeof(pgid) - got);
        if (n == 0 || (n < 0 && errno != EINTR))
            _exit(0); /* no child was started */
        got += n > 0 ? (size_t)n : 0;
    }
    do
        n = read(0, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1 && pgid > 1)
        kill(-pgid, SIGKILL);
    _exit(0);
}

/* Starts a guard. Called with every signal blocked, which the guard keeps. */
static int
start_guard(struct guard *g)
{
    int fds[2], e = 0;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    g->pid = fork();
    if (g->pid == 0)
        guard_run(fds[0]);
    if (g->pid < 0)
        e = -errno;
    close(fds[0]);
    g->fd = fds[1];
    if (e < 0) {
        close(fds[1]);
        g->fd = -1;
    }
    return e;
}

/* Tells the guard the group it watches (once the child exists). */
static void
arm_guard(const struct guard *g, pid_t pgid)
{
    if (write(g->fd, &pgid, sizeof(pgid)) != (ssize_t)sizeof(pgid))
        log_warn("child group %d: guard not armed", (int)pgid);
}

/* The child is gone and reaped (or was never armed): the guard leaves without killing anything,
 * at once, so waiting for it here costs a context switch. */
static void
release_guard(struct guard *g)
{
    if (g->pid <= 0)
        return;
    if (write(g->fd, "q", 1) != 1)
        log_warn("guard %d release", g->pid);
    close(g->fd);
    while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    g->pid = g->fd = -1;
}

/* Forks and execs behind a guard; returns the pid, or -errno when exec failed (told through
 * a CLOEXEC pipe that exec closes on success). */
static int
fork_exec(char *const argv[], char **env, int fds[3][2], struct guard *g)
{
    int errp[2], e = 0;
    pid_t pid = -1, parent = getpid();
    char *exe = resolve(argv[0]);
    ssize_t n;

    sigset_t all, old;

    if (pipe2(errp, O_CLOEXEC) < 0) {
        free(exe);
        return -errno;
    }
    sigfillset(&all); /* no handler of ours may run in the children before they reset them */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = start_guard(g);
    if (e == 0)
        pid = fork();
    if (pid == 0)
        child_exec(exe, argv, env, (const int[3]){fds[2][0], fds[0][1], fds[1][1]}, errp[1],
                   parent);
    if (pid < 0 && e == 0)
        e = -errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(exe);
    close(errp[1]);
    if (pid < 0) {
        close(errp[0]);
        release_guard(g); /* not armed: it just leaves */
        return e;
    }
    arm_guard(g, pid);
    do
        n = read(errp[0], &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    close(errp[0]);
    if (n == sizeof(e)) {
        waitpid(pid, NULL, 0);
        release_guard(g);
        return -e;
    }
    return pid;
}

/* fds[0] and fds[1]: its stdout and stderr, read by us; fds[2]: its stdin, written by us, when
 * talk (else both ends -1). */
static int
open_pipes(int fds[3][2], bool talk)
{
    int n = talk ? 3 : 2, e;

    fds[2][0] = fds[2][1] = -1;
    for (int i = 0; i < n; i++) {
        if (pipe2(fds[i], O_CLOEXEC) < 0) {
            e = -errno;
            while (i-- > 0)
                close(fds[i][0]), close(fds[i][1]);
            fds[2][0] = fds[2][1] = -1;
            return e;
        }
    }
    if (talk && fcntl(fds[2][1], F_SETFL, O_NONBLOCK) < 0)
        log_warn("stdin pipe"); /* a full pipe then blocks a write: we write one line */
    return 0;
}

/* After the fork, the child's ends (mine too when failed: true). */
static void
close_pipes(int fds[3][2], bool failed)
{
    for (int i = 0; i < 2; i++) {
        close(fds[i][1]);
        if (failed)
            close(fds[i][0]);
    }
    if (fds[2][0] >= 0)
        close(fds[2][0]);
    if (failed && fds[2][1] >= 0)
        close(fds[2][1]);
}

/* Wires the read ends, the pidfd and the timer into the loop. */
static int
watch(struct proc *p, uv_loop_t *loop, int out[3][2])
{
    uv_timer_init(loop, &p->kill_timer);
    p->kill_timer.data = p;
    p->open_handles = 1;
    for (int i = 0; i < 2; i++) {
        uv_pipe_init(loop, &p->out[i].pipe, 0);
        p->out[i].pipe.data = &p->out[i];
        p->out[i].p = p;
        buf_init(&p->out[i].line, LINE_MAX_BYTES + 1);
        uv_pipe_open(&p->out[i].pipe, out[i][0]);
        p->open_handles++;
        uv_read_start((uv_stream_t *)&p->out[i].pipe, on_alloc, on_output);
    }
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (p->pidfd < 0)
        return -errno;
    uv_poll_init(loop, &p->exit_poll, p->pidfd);
    p->exit_poll.data = p;
    p->open_handles++;
    uv_poll_start(&p->exit_poll, UV_READABLE, on_exit_poll);
    return 0;
}

static struct proc *
spawn(uv_loop_t *loop, char *const argv[], char *const env[], const char *tag, bool talk,
      proc_exit_cb cb, void *arg, int *err)
{
    struct proc *p;
    char **e = child_env(env);
    int fds[3][2], pid, rc;
    struct guard g = {-1, -1};

    rc = open_pipes(fds, talk);
    pid = rc < 0 ? rc : fork_exec(argv, e, fds, &g);
    free(e);
    if (pid < 0) {
        if (rc == 0)
            close_pipes(fds, true);
        *err = pid;
        return NULL;
    }
    close_pipes(fds, false);
    p = xcalloc(1, sizeof(*p));
    p->pid = pid;
    p->pidfd = -1;
    p->in_fd = fds[2][1];
    p->talks = talk;
    p->guard = g;
    p->tag = xstrdup(tag);
    p->cb = cb;
    p->arg = arg;
    if (watch(p, loop, fds) < 0)
        fatal("pidfd_open"); /* Linux 5.3+; a broken invariant here, not a peer's doing */
    log_info("%s: started pid %d", tag, pid);
    return p;
}

struct proc *
proc_spawn(uv_loop_t *loop, char *const argv[], char *const env[], const char *tag, proc_exit_cb cb,
           void *arg, int *err)
{
    return spawn(loop, argv, env, tag, false, cb, arg, err);
}

struct proc *
proc_spawn_engine(uv_loop_t *loop, char *const argv[], char *const env[], const char *tag,
                  proc_exit_cb cb, void *arg, int *err)
{
    size_t n = 0;
    const char **all;
    struct proc *p;

    while (env && env[n])
        n++;
    all = xcalloc(n + 2, sizeof(*all));
    if (n > 0)
        memcpy(all, env, n * sizeof(*all));
    /* today's llama-server only looks whether it is set; no port of ours is for it to reach */
    all[n] = "LLAMA_SERVER_ROUTER_PORT=0";
    p = spawn(loop, argv, (char *const *)all, tag, true, cb, arg, err);
    free(all);
    return p;
}

/* The exit line, when the child reads it; false when it cannot be sent. */
static bool
send_exit_line(struct proc *p)
{
    size_t n = strlen(PROC_CHILD_EXIT);

    if (p->in_fd < 0 || !p->said_ready)
        return false;
    return write(p->in_fd, PROC_CHILD_EXIT, n) == (ssize_t)n;
}

void
proc_stop(struct proc *p, uint64_t grace_ms)
{
    uint64_t wait = grace_ms < EXIT_LINE_MS ? grace_ms : EXIT_LINE_MS;

    if (p->exited)
        return;
    p->grace_ms = grace_ms;
    if (send_exit_line(p)) {
        log_info("%s: stopping pid %d (exit line, SIGTERM after %llu ms, SIGKILL %llu ms later)",
                 p->tag, proc_pid(p), (unsigned long long)wait, (unsigned long long)grace_ms);
        p->stop_step = STOP_TERM_NEXT;
        uv_timer_start(&p->kill_timer, on_kill_timeout, wait, 0);
        return;
    }
    log_info("%s: stopping pid %d (SIGTERM, SIGKILL after %llu ms)", p->tag, proc_pid(p),
             (unsigned long long)grace_ms);
    kill(-proc_pid(p), SIGTERM);
    proc_kill_after(p, grace_ms);
}

void
proc_kill_after(struct proc *p, uint64_t ms)
{
    if (p->exited)
        return;
    p->stop_step = STOP_KILL_NEXT;
    uv_timer_start(&p->kill_timer, on_kill_timeout, ms, 0);
}

static void
on_closed(uv_handle_t *h)
{
    struct proc *p = h->type == UV_NAMED_PIPE ? ((struct pipe_in *)h->data)->p : h->data;

    if (--p->open_handles > 0)
        return;
    if (p->pidfd >= 0)
        close(p->pidfd);
    buf_cleanup(&p->out[0].line);
    buf_cleanup(&p->out[1].line);
    free(p->tag);
    free(p);
}

/* Frees after exit; a still-running child is killed first so it cannot outlive us. */
void
proc_free(struct proc *p)
{
    if (p == NULL || p->freeing)
        return;
    p->freeing = true;
    if (!p->exited) { /* only at exit: kill and reap it here rather than leave a zombie */
        kill(-proc_pid(p), SIGKILL);
        waitpid(p->pid, NULL, 0);
        release_guard(&p->guard);
    }
    p->cb = NULL;
    close_stdin(p);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&p->out[i].pipe, on_closed);
    uv_close((uv_handle_t *)&p->kill_timer, on_closed);
    uv_close((uv_handle_t *)&p->exit_poll, on_closed);
}

void
proc_on_line(struct proc *p, proc_line_cb cb)
{
    p->line_cb = cb;
}

void
proc_on_state(struct proc *p, proc_state_cb cb)
{
    p->state_cb = cb;
}

int
proc_pid(const struct proc *p)
{
    return p->pid;
}

const char *
proc_tail(struct proc *p)
{
    p->tail[p->tail_len < TAIL_BYTES ? p->tail_len : TAIL_BYTES - 1] = '\0';
    return p->tail;
}
