#include "restart.h"

#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define ENV_FDS   "GOINFER_LISTEN_FDS"
#define ENV_READY "GOINFER_READY_FD"

extern char **environ;

static char self_exe[4096];
static int told_fd = -1; /* the new side: where to say we listen */

struct restart {
    uv_pipe_t pipe; /* the read end of the ready pipe */
    uv_timer_t timer;
    int open_handles;
    pid_t pid;
    bool done;
    restart_done_cb cb;
    void *arg;
};

void
restart_init(void)
{
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    const char *deleted = " (deleted)";
    size_t dl = strlen(deleted);

    if (n <= 0 || (size_t)n >= sizeof(self_exe) - 1) {
        self_exe[0] = '\0';
        return;
    }
    self_exe[n] = '\0';
    if ((size_t)n > dl && strcmp(self_exe + n - dl, deleted) == 0)
        self_exe[n - dl] = '\0';
}

/* The environment of the new process: ours without the hand-off variables, plus the new ones. */
static char **
child_env(const struct restart_fd *fds, size_t n, int ready_fd)
{
    size_t count = 0, k = 0;
    struct buf b;
    char **env;

    while (environ[count] != NULL)
        count++;
    env = xcalloc(count + 3, sizeof(*env));
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], ENV_FDS "=", sizeof(ENV_FDS)) != 0 &&
            strncmp(environ[i], ENV_READY "=", sizeof(ENV_READY)) != 0)
            env[k++] = xstrdup(environ[i]);
    buf_init(&b, 4096);
    buf_printf(&b, ENV_FDS "=");
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%d:%s:%d", i ? "," : "", fds[i].fd, fds[i].host, fds[i].port);
    env[k++] = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    env[k++] = xasprintf(ENV_READY "=%d", ready_fd);
    return env;
}

static void
env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

/* After fork, before exec: only async-signal-safe calls. The fds handed on lose close-on-exec
 * in this copy only; every other descriptor keeps it and goes with the exec. */
static void
child_exec(const char *exe, char **argv, char **env, const struct restart_fd *fds, size_t n,
           int ready_fd)
{
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (size_t i = 0; i < n; i++)
        if (fcntl(fds[i].fd, F_SETFD, 0) < 0)
            _exit(127);
    if (fcntl(ready_fd, F_SETFD, 0) < 0)
        _exit(127);
    execve(exe, argv, env);
    _exit(127);
}

static void
on_closed(uv_handle_t *h)
{
    struct restart *r = h->data;

    if (--r->open_handles == 0)
        free(r);
}

/* Once: tells the caller, reaps a new process that failed, and lets the handles go. */
static void
finish(struct restart *r, bool ok, const char *msg)
{
    if (r->done)
        return;
    r->done = true;
    if (!ok && r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0); /* it is ours; SIGKILL makes this short */
    }
    r->cb(r->arg, ok, r->pid, msg);
    uv_close((uv_handle_t *)&r->pipe, on_closed);
    uv_close((uv_handle_t *)&r->timer, on_closed);
}

static void
on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    static char one[16];

    (void)h;
    (void)size;
    *buf = uv_buf_init(one, sizeof(one));
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct restart *r = s->data;

    (void)buf;
    if (n > 0)
        finish(r, true, "listening");
    else if (n < 0)
        finish(r, false, "the new process ended before it listened (see its log lines above)");
}

static void
on_timeout(uv_timer_t *t)
{
    finish(t->data, false, "the new process did not say it listens in time; killed");
}

int
restart_start(uv_loop_t *loop, char **argv, const struct restart_fd *fds, size_t n,
              uint64_t timeout_ms, restart_done_cb done, void *arg, char *err, size_t errlen)
{
    const char *exe = self_exe[0] ? self_exe : "/proc/self/exe";
    struct restart *r;
    char **env;
    int p[2], rc;
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        rc = -errno;
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return rc;
    }
    env = child_env(fds, n, p[1]);
    pid = fork();
    if (pid == 0)
        child_exec(exe, argv, env, fds, n, p[1]);
    rc = pid < 0 ? -errno : 0;
    env_free(env);
    close(p[1]);
    if (rc < 0) {
        snprintf(err, errlen, "fork: %s", strerror(-rc));
        close(p[0]);
        return rc;
    }
    r = xcalloc(1, sizeof(*r));
    *r = (struct restart){.pid = pid, .cb = done, .arg = arg, .open_handles = 2};
    uv_pipe_init(loop, &r->pipe, 0);
    uv_timer_init(loop, &r->timer);
    r->pipe.data = r->timer.data = r;
    uv_timer_start(&r->timer, on_timeout, timeout_ms, 0);
    rc = uv_pipe_open(&r->pipe, p[0]);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->pipe, on_alloc, on_read);
    if (rc < 0) {
        close(p[0]);
        finish(r, false, "cannot watch the new process");
    }
    log_info("restart: started %s as pid %d, handing on %zu listening sockets", exe, (int)pid, n);
    return 0;
}

/* "fd:host:port": host may hold ':' (IPv6), so the port is after the last one. */
static int
parse_one(const char *s, size_t len, struct restart_fd *out)
{
    char *item = xstrndup(s, len), *colon = strchr(item, ':'), *last = strrchr(item, ':'), *end;
    long fd, port;
    int rc = -EINVAL;

    if (colon == NULL || last == colon)
        goto out;
    fd = strtol(item, &end, 10);
    if (end != colon || fd < 3 || fd > 65535 || fcntl((int)fd, F_GETFD) < 0)
        goto out;
    port = strtol(last + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        goto out;
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
        goto out;
    out->fd = (int)fd;
    out->host = xstrndup(colon + 1, (size_t)(last - colon - 1));
    out->port = (int)port;
    rc = 0;
out:
    free(item);
    return rc;
}

size_t
restart_inherited(struct restart_fd *out, size_t max)
{
    const char *v = getenv(ENV_FDS), *p;
    size_t n = 0;

    for (p = v; p != NULL && *p && n < max;) {
        size_t len = strcspn(p, ",");

        if (parse_one(p, len, &out[n]) == 0)
            n++;
        else
            log_warnx("restart: %s: cannot use '%.*s'; ignored", ENV_FDS, (int)len, p);
        p += len + (p[len] == ',');
    }
    unsetenv(ENV_FDS);
    v = getenv(ENV_READY);
    if (v != NULL) { /* kept until restart_tell_ready, but no child may hold it */
        char *end = NULL;
        long fd = strtol(v, &end, 10);

        if (*end == '\0' && fd >= 3 && fd <= 65535 && fcntl((int)fd, F_SETFD, FD_CLOEXEC) == 0)
            told_fd = (int)fd;
        unsetenv(ENV_READY);
    }
    return n;
}

void
restart_tell_ready(void)
{
    if (told_fd < 0)
        return;
    if (write(told_fd, "1", 1) != 1)
        log_warn("restart: telling the old process we listen");
    close(told_fd);
    told_fd = -1;
}
