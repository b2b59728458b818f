#include "proc.h"

#include <sys/prctl.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define LINE_MAX_BYTES 4096
#define TAIL_BYTES     2048

struct pipe_in {
    uv_pipe_t pipe;
    struct proc *p;
    struct buf line;
    bool eof;
};

struct proc {
    uv_process_t process;
    uv_timer_t kill_timer;
    struct pipe_in out[2];
    char *tag;
    proc_exit_cb cb;
    void *arg;
    bool exited, reported, freeing;
    int64_t status;
    int term_signal;
    int open_handles;
    char tail[TAIL_BYTES];
    size_t tail_len;
};

static char *launcher;

void
proc_set_launcher(const char *self_exe)
{
    free(launcher);
    launcher = xstrdup(self_exe);
}

int
proc_launcher_main(int argc, char **argv)
{
    char *end = NULL;
    long ppid;

    if (argc < 4)
        return 2;
    ppid = strtol(argv[2], &end, 10);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || end == argv[2] || getppid() != (pid_t)ppid)
        _exit(1); /* the parent is already gone: do not start an orphan */
    execv(argv[3], argv + 3);
    fprintf(stderr, "cannot execute %s: %s\n", argv[3], strerror(errno));
    _exit(127);
}

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

static void
emit_line(struct proc *p, const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    if (n == 0)
        return;
    char line[LINE_MAX_BYTES + 200];
    int k;

    log_debug("[%s] %.*s", p->tag, (int)n, s);
    if (!log_enabled(LOG_LEVEL_DEBUG)) { /* /logs shows the children's output either way */
        k = snprintf(line, sizeof(line), "[%s] %.*s", p->tag, (int)n, s);
        if (k > 0)
            log_capture(line, (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1);
    }
    tail_add(p, s, n);
}

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
        emit_line(in->p, in->line.data, in->line.len);
        buf_reset(&in->line);
        start = q + 1;
    }
    if (start < end)
        buf_append(&in->line, start, (size_t)(end - start));
    free(b->base);
    if (nread < 0) {
        if (in->line.len > 0)
            emit_line(in->p, in->line.data, in->line.len);
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
on_kill_timeout(uv_timer_t *t)
{
    struct proc *p = t->data;

    log_warnx("%s: pid %d still running after SIGTERM, sending SIGKILL", p->tag, proc_pid(p));
    kill(-proc_pid(p), SIGKILL);
}

static void
on_exit_cb(uv_process_t *h, int64_t status, int term_signal)
{
    struct proc *p = h->data;

    p->exited = true;
    p->status = status;
    p->term_signal = term_signal;
    kill(-proc_pid(p), SIGKILL); /* anything left in its group goes with it */
    uv_timer_start(&p->kill_timer, on_drain_timeout, 1000, 0);
    maybe_report(p);
}

static char **
launcher_argv(char *const argv[])
{
    size_t n = 0;
    char **v;

    while (argv[n])
        n++;
    v = xcalloc(n + 4, sizeof(*v));
    v[0] = launcher;
    v[1] = "--child-exec";
    v[2] = xasprintf("%d", (int)getpid());
    for (size_t i = 0; i < n; i++)
        v[3 + i] = argv[i];
    return v;
}

/* Our environment with extra "K=V" entries first, so they win in getenv(). */
static char **
child_env(char *const extra[])
{
    extern char **environ;
    size_t n = 0, m = 0;
    char **v;

    while (extra && extra[m])
        m++;
    while (environ[n])
        n++;
    v = xcalloc(n + m + 1, sizeof(*v));
    memcpy(v, extra, m * sizeof(*v));
    memcpy(v + m, environ, n * sizeof(*v));
    return v;
}

static void
init_handles(struct proc *p, uv_loop_t *loop, uv_stdio_container_t stdio[3])
{
    uv_timer_init(loop, &p->kill_timer);
    p->kill_timer.data = p;
    p->open_handles = 4; /* timer, two pipes, process (initialized by uv_spawn even on failure) */
    stdio[0].flags = UV_IGNORE;
    for (int i = 0; i < 2; i++) {
        uv_pipe_init(loop, &p->out[i].pipe, 0);
        p->out[i].pipe.data = &p->out[i];
        p->out[i].p = p;
        buf_init(&p->out[i].line, LINE_MAX_BYTES + 1);
        stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[i + 1].data.stream = (uv_stream_t *)&p->out[i].pipe;
    }
}

struct proc *
proc_spawn(uv_loop_t *loop, char *const argv[], char *const env[], const char *tag,
           proc_exit_cb cb, void *arg, int *err)
{
    struct proc *p = xcalloc(1, sizeof(*p));
    uv_process_options_t o;
    uv_stdio_container_t stdio[3];
    char **v = launcher ? launcher_argv(argv) : (char **)argv;
    char **e = env ? child_env(env) : NULL;
    int rc;

    p->tag = xstrdup(tag);
    p->cb = cb;
    p->arg = arg;
    init_handles(p, loop, stdio);
    memset(&o, 0, sizeof(o));
    o.file = v[0];
    o.args = v;
    o.env = e;
    o.exit_cb = on_exit_cb;
    o.flags = UV_PROCESS_DETACHED; /* setsid: its own process group, so we can signal it all */
    o.stdio = stdio;
    o.stdio_count = 3;
    p->process.data = p;
    rc = uv_spawn(loop, &p->process, &o);
    if (v != (char **)argv) {
        free(v[2]);
        free(v);
    }
    free(e);
    if (rc < 0) {
        *err = rc;
        p->exited = p->reported = true;
        proc_free(p);
        return NULL;
    }
    for (int i = 0; i < 2; i++)
        uv_read_start((uv_stream_t *)&p->out[i].pipe, on_alloc, on_output);
    log_info("%s: started pid %d", tag, p->process.pid);
    return p;
}

void
proc_stop(struct proc *p, uint64_t grace_ms)
{
    if (p->exited)
        return;
    log_info("%s: stopping pid %d (SIGTERM, SIGKILL after %llu ms)", p->tag, proc_pid(p),
             (unsigned long long)grace_ms);
    kill(-proc_pid(p), SIGTERM);
    uv_timer_start(&p->kill_timer, on_kill_timeout, grace_ms, 0);
}

static void
on_closed(uv_handle_t *h)
{
    struct proc *p = h->type == UV_NAMED_PIPE ? ((struct pipe_in *)h->data)->p : h->data;

    if (--p->open_handles > 0)
        return;
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
    if (!p->exited)
        kill(-proc_pid(p), SIGKILL);
    p->cb = NULL;
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&p->out[i].pipe, on_closed);
    uv_close((uv_handle_t *)&p->kill_timer, on_closed);
    uv_close((uv_handle_t *)&p->process, on_closed);
}

int
proc_pid(const struct proc *p)
{
    return p->process.pid;
}

const char *
proc_tail(struct proc *p)
{
    p->tail[p->tail_len < TAIL_BYTES ? p->tail_len : TAIL_BYTES - 1] = '\0';
    return p->tail;
}
