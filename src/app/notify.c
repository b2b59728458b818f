#include "notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define STATUS_BYTES     512
#define STATUS_PERIOD_MS 5000 /* the status line is looked at this often (and sent if changed) */

struct notifier {
    int fd;
    struct sockaddr_un addr;
    socklen_t addr_len;
    uv_timer_t tick;
    bool timer_on;
    uint64_t period_ms;
    bool watchdog;
    notify_status_cb status;
    void *arg;
    char last_status[STATUS_BYTES];
};

static struct notifier n = {.fd = -1};

/* The socket's address from $NOTIFY_SOCKET: "/path" or "@abstract". */
static int
parse_address(const char *s)
{
    size_t len = strlen(s);

    if ((s[0] != '/' && s[0] != '@') || len < 2 || len >= sizeof(n.addr.sun_path))
        return -EINVAL;
    memset(&n.addr, 0, sizeof(n.addr));
    n.addr.sun_family = AF_UNIX;
    memcpy(n.addr.sun_path, s, len);
    if (s[0] == '@')
        n.addr.sun_path[0] = '\0'; /* abstract: the name's length counts, no final NUL */
    n.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (s[0] == '/'));
    return 0;
}

/* Half of $WATCHDOG_USEC in ms, or 0 when there is no watchdog for us. $WATCHDOG_PID names the
 * process systemd started; a process a graceful restart started (our parent is that one) is
 * the unit's main process too once it sends MAINPID=. */
static uint64_t
watchdog_half_ms(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    unsigned long long u;
    char *end;

    if (usec == NULL || *usec == '\0')
        return 0;
    if (pid != NULL && *pid != '\0') {
        long p = strtol(pid, &end, 10);

        if (*end != '\0' || (p != (long)getpid() && p != (long)getppid()))
            return 0;
    }
    u = strtoull(usec, &end, 10);
    if (*end != '\0' || u == 0)
        return 0;
    return u / 2000 > 0 ? u / 2000 : 1;
}

int
notify_send(const char *text)
{
    ssize_t w;

    if (n.fd < 0)
        return -ENOENT;
    w = sendto(n.fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&n.addr, n.addr_len);
    if (w < 0) {
        int e = errno;

        log_debug("notify: cannot send to NOTIFY_SOCKET: %s", strerror(e));
        return -e;
    }
    return 0;
}

/* The status line, "STATUS=..." in out, when it changed since last sent (or force). */
static bool
status_changed(char *out, size_t len, bool force)
{
    char now[STATUS_BYTES] = "";

    if (n.status == NULL)
        return false;
    n.status(n.arg, now, sizeof(now));
    if (!force && strcmp(now, n.last_status) == 0)
        return false;
    memcpy(n.last_status, now, sizeof(now));
    snprintf(out, len, "STATUS=%s\n", now);
    return true;
}

static void
on_tick(uv_timer_t *t)
{
    char msg[STATUS_BYTES + 32] = "";

    (void)t;
    if (n.watchdog)
        snprintf(msg, sizeof(msg), "WATCHDOG=1\n");
    status_changed(msg + strlen(msg), sizeof(msg) - strlen(msg), false);
    if (msg[0] != '\0')
        notify_send(msg);
}

void
notify_start(uv_loop_t *loop, notify_status_cb status, void *arg)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    uint64_t half;

    if (sock == NULL || *sock == '\0' || n.fd >= 0)
        return;
    if (parse_address(sock) < 0) {
        log_warnx("notify: NOTIFY_SOCKET=%s is no socket address; systemd is not told", sock);
        return;
    }
    n.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n.fd < 0) {
        log_warn("notify: socket");
        return;
    }
    n.status = status;
    n.arg = arg;
    half = watchdog_half_ms();
    n.watchdog = half > 0;
    n.period_ms = n.watchdog && half < STATUS_PERIOD_MS ? half : STATUS_PERIOD_MS;
    uv_timer_init(loop, &n.tick);
    uv_unref((uv_handle_t *)&n.tick);
    uv_timer_start(&n.tick, on_tick, n.period_ms, n.period_ms);
    n.timer_on = true;
    if (n.watchdog)
        log_info("notify: watchdog every %llu ms", (unsigned long long)half);
}

void
notify_ready(void)
{
    char msg[STATUS_BYTES + 64];
    int k;

    if (n.fd < 0)
        return;
    k = snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%d\n", (int)getpid());
    status_changed(msg + k, sizeof(msg) - (size_t)k, true);
    notify_send(msg);
}

void
notify_reloading(void)
{
    struct timespec ts;
    char msg[64];

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    notify_send(msg);
}

void
notify_reloaded(void)
{
    char msg[STATUS_BYTES + 32];
    int k;

    if (n.fd < 0)
        return;
    k = snprintf(msg, sizeof(msg), "READY=1\n");
    status_changed(msg + k, sizeof(msg) - (size_t)k, true);
    notify_send(msg);
}

void
notify_stopping(bool hand_off)
{
    if (n.fd < 0)
        return;
    if (!hand_off)
        notify_send("STOPPING=1\nSTATUS=stopping\n");
    if (n.timer_on) {
        uv_close((uv_handle_t *)&n.tick, NULL);
        n.timer_on = false;
    }
}
