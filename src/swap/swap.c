#include "swap.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "proc/proc.h"

enum inst_state { ST_STOPPED, ST_STARTING, ST_READY, ST_STOPPING };

static const char *const state_names[] = {"stopped", "starting", "ready", "stopping"};

struct swap_instance {
    struct swap *swap;
    const struct model_entry *model;
    enum inst_state state;
    struct proc *proc;
    char url[64];
    int inflight;
    struct http_fetch *probe;
    long probe_status;
    uv_timer_t probe_timer;
    uint64_t started_at;
    bool unload_when_idle;
};

struct swap {
    uv_loop_t *loop;
    struct http_client *client;
    const struct swap_conf *conf;
    struct swap_instance *inst; /* one per model, same order as the model list */
    size_t n_inst;
    struct swap_lease *queue, **queue_tail;
    bool shutting_down;
    void (*shutdown_done)(void *);
    void *shutdown_arg;
    int closing_timers;
};

static void schedule(struct swap *s);
static void start_instance(struct swap_instance *in);

/* ---- the wait queue ---- */

static void
queue_remove(struct swap *s, struct swap_lease *l)
{
    struct swap_lease **pp;

    for (pp = &s->queue; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    s->queue_tail = &s->queue;
    while (*s->queue_tail)
        s->queue_tail = &(*s->queue_tail)->next;
}

/* Fails every waiting lease for in (or all of them when in is NULL). */
static void
fail_waiting(struct swap *s, struct swap_instance *in, int err, const char *msg)
{
    struct swap_lease *l = s->queue, *next;

    for (; l != NULL; l = next) {
        next = l->next;
        if (in != NULL && l->inst != in)
            continue;
        queue_remove(s, l);
        l->state = SWAP_LEASE_IDLE;
        l->cb(l, err, msg, l->arg);
    }
}

/* ---- readiness: poll /health every few ms, so a model is used the moment it is up ---- */

static void probe_now(uv_timer_t *t);

static void
probe_later(struct swap_instance *in)
{
    uv_timer_start(&in->probe_timer, probe_now, in->swap->conf->probe_ms, 0);
}

static void
give_up_start(struct swap_instance *in)
{
    char *why = xasprintf("llama-server for model %s was not ready within %llu ms; see its log "
                          "lines above, or raise healthCheckTimeout",
                          in->model->name, (unsigned long long)in->swap->conf->ready_timeout_ms);

    log_warnx("%s", why);
    fail_waiting(in->swap, in, -ETIMEDOUT, why);
    free(why);
    in->state = ST_STOPPING;
    proc_stop(in->proc, in->swap->conf->stop_grace_ms);
}

static void
on_probe_response(void *arg, long status, const struct http_header *h, size_t n)
{
    struct swap_instance *in = arg;

    (void)h;
    (void)n;
    in->probe_status = status;
}

static void
on_probe_done(void *arg, int err, const char *msg)
{
    struct swap_instance *in = arg;

    (void)msg;
    in->probe = NULL;
    if (in->state != ST_STARTING)
        return;
    if (err == 0 && in->probe_status == 200) {
        in->state = ST_READY;
        log_info("model %s: ready on %s in %.0f ms", in->model->name, in->url,
                 (double)(uv_hrtime() - in->started_at) / 1e6);
        schedule(in->swap);
        return;
    }
    if (uv_hrtime() - in->started_at > in->swap->conf->ready_timeout_ms * 1000000ull) {
        give_up_start(in);
        return;
    }
    probe_later(in);
}

static void
probe_now(uv_timer_t *t)
{
    struct swap_instance *in = t->data;
    static const struct http_fetch_cb cb = {on_probe_response, NULL, on_probe_done};
    char url[96];
    struct http_fetch_opts o = {.url = url, .connect_timeout_ms = 1000, .timeout_ms = 2000};

    if (in->state != ST_STARTING || in->probe != NULL)
        return;
    snprintf(url, sizeof(url), "%s/health", in->url);
    in->probe_status = 0;
    in->probe = http_fetch_start(in->swap->client, &o, &cb, in);
}

/* ---- children ---- */

static void
on_child_exit(struct proc *p, int64_t status, int term_signal, void *arg)
{
    struct swap_instance *in = arg;
    struct swap *s = in->swap;
    enum inst_state was = in->state;

    uv_timer_stop(&in->probe_timer);
    http_fetch_cancel(in->probe);
    in->probe = NULL;
    in->proc = NULL;
    in->state = ST_STOPPED;
    in->unload_when_idle = false;
    if (was == ST_STARTING) {
        char *why = xasprintf("llama-server for model %s exited at start-up (%s %d); its last "
                              "output: %s",
                              in->model->name, term_signal ? "signal" : "exit code",
                              term_signal ? term_signal : (int)status, proc_tail(p));

        log_warnx("%s", why);
        fail_waiting(s, in, -ECHILD, why);
        free(why);
    } else if (was == ST_READY) {
        log_warnx("model %s: llama-server exited unexpectedly (%s %d); the next request restarts "
                  "it",
                  in->model->name, term_signal ? "signal" : "exit code",
                  term_signal ? term_signal : (int)status);
    } else {
        log_info("model %s: stopped", in->model->name);
    }
    proc_free(p);
    if (s->shutting_down) {
        for (size_t i = 0; i < s->n_inst; i++)
            if (s->inst[i].proc != NULL)
                return;
        if (s->shutdown_done)
            s->shutdown_done(s->shutdown_arg);
        s->shutdown_done = NULL;
        return;
    }
    schedule(s);
}

/* A free loopback port: bind to port 0 and let the kernel choose. */
static int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    else
        port = -errno;
    close(fd);
    return port;
}

static char **
child_argv(const struct swap_conf *c, const struct model_entry *m, const char *port)
{
    char **v = xcalloc(c->n_args + 12, sizeof(*v));
    size_t k = 0;

    v[k++] = (char *)c->llama_exe;
    v[k++] = "-m";
    v[k++] = m->path;
    if (m->mmproj) {
        v[k++] = "--mmproj";
        v[k++] = m->mmproj;
    }
    v[k++] = "--host";
    v[k++] = "127.0.0.1";
    v[k++] = "--port";
    v[k++] = (char *)port;
    v[k++] = "--alias";
    v[k++] = m->name;
    for (size_t i = 0; i < c->n_args; i++)
        v[k++] = c->args[i];
    return v;
}

static void
start_instance(struct swap_instance *in)
{
    struct swap *s = in->swap;
    int port = free_port(), err = 0;
    char ports[16], tag[96];
    char **argv;

    if (port < 0) {
        fail_waiting(s, in, port, "no free loopback port for llama-server");
        return;
    }
    snprintf(ports, sizeof(ports), "%d", port);
    snprintf(in->url, sizeof(in->url), "http://127.0.0.1:%d", port);
    snprintf(tag, sizeof(tag), "llama-server:%s", in->model->name);
    argv = child_argv(s->conf, in->model, ports);
    in->started_at = uv_hrtime();
    in->proc = proc_spawn(s->loop, argv, tag, on_child_exit, in, &err);
    free(argv);
    if (in->proc == NULL) {
        char *why = xasprintf("cannot start %s for model %s: %s; set GI_LLAMA_EXE to a "
                              "llama-server executable",
                              s->conf->llama_exe, in->model->name, uv_strerror(err));

        log_warnx("%s", why);
        fail_waiting(s, in, err, why);
        free(why);
        return;
    }
    in->state = ST_STARTING;
    log_info("model %s: starting on port %d", in->model->name, port);
    uv_timer_start(&in->probe_timer, probe_now, 0, 0);
}

/* ---- scheduling ---- */

static struct swap_instance *
busy_other(struct swap *s, const struct swap_instance *want)
{
    for (size_t i = 0; i < s->n_inst; i++)
        if (&s->inst[i] != want && s->inst[i].state != ST_STOPPED)
            return &s->inst[i];
    return NULL;
}

/* Grants what can be granted in arrival order; starts, or stops, at most one child. */
static void
schedule(struct swap *s)
{
    struct swap_lease *l;
    struct swap_instance *in, *other;

    while ((l = s->queue) != NULL && !s->shutting_down) {
        in = l->inst;
        if (in->state == ST_READY) {
            queue_remove(s, l);
            l->state = SWAP_LEASE_GRANTED;
            in->inflight++;
            l->cb(l, 0, "", l->arg);
            continue;
        }
        if (in->state == ST_STARTING || in->state == ST_STOPPING)
            return;
        other = busy_other(s, in);
        if (other == NULL) {
            start_instance(in);
            continue; /* ready later, or its waiters were failed */
        }
        if (other->state == ST_READY && other->inflight == 0) {
            log_info("model %s: stopping to make room for %s", other->model->name,
                     in->model->name);
            other->state = ST_STOPPING;
            proc_stop(other->proc, s->conf->stop_grace_ms);
        }
        return; /* wait for the other to go idle or to exit */
    }
}

/* ---- public ---- */

struct swap *
swap_new(uv_loop_t *loop, struct http_client *client, const struct swap_conf *conf,
         const struct model_list *models)
{
    struct swap *s = xcalloc(1, sizeof(*s));

    s->loop = loop;
    s->client = client;
    s->conf = conf;
    s->queue_tail = &s->queue;
    s->n_inst = models->n;
    s->inst = xcalloc(models->n, sizeof(*s->inst));
    for (size_t i = 0; i < models->n; i++) {
        s->inst[i].swap = s;
        s->inst[i].model = &models->v[i];
        uv_timer_init(loop, &s->inst[i].probe_timer);
        s->inst[i].probe_timer.data = &s->inst[i];
    }
    return s;
}

void
swap_acquire(struct swap *s, struct swap_lease *l, const struct model_entry *m, swap_ready_cb cb,
             void *arg)
{
    memset(l, 0, sizeof(*l));
    l->swap = s;
    l->cb = cb;
    l->arg = arg;
    for (size_t i = 0; i < s->n_inst; i++)
        if (s->inst[i].model == m)
            l->inst = &s->inst[i];
    if (l->inst == NULL || s->shutting_down) {
        cb(l, l->inst ? -ESHUTDOWN : -ENOENT,
           l->inst ? "goinfer is shutting down" : "unknown model", arg);
        return;
    }
    l->state = SWAP_LEASE_WAITING;
    *s->queue_tail = l;
    s->queue_tail = &l->next;
    schedule(s);
}

void
swap_release(struct swap_lease *l)
{
    struct swap *s = l->swap;

    if (l->state == SWAP_LEASE_WAITING) {
        queue_remove(s, l);
    } else if (l->state == SWAP_LEASE_GRANTED) {
        struct swap_instance *in = l->inst;

        if (--in->inflight == 0 && in->unload_when_idle && in->state == ST_READY) {
            in->unload_when_idle = false;
            in->state = ST_STOPPING;
            proc_stop(in->proc, s->conf->stop_grace_ms);
        } else if (in->inflight == 0) {
            schedule(s);
        }
    }
    l->state = SWAP_LEASE_IDLE;
}

const char *
swap_lease_url(const struct swap_lease *l)
{
    return l->inst->url;
}

int
swap_unload_all(struct swap *s)
{
    int n = 0;

    for (size_t i = 0; i < s->n_inst; i++) {
        struct swap_instance *in = &s->inst[i];

        if (in->state == ST_STOPPED || in->state == ST_STOPPING)
            continue;
        n++;
        if (in->state == ST_READY && in->inflight > 0) {
            in->unload_when_idle = true;
            continue;
        }
        if (in->state == ST_STARTING)
            fail_waiting(s, in, -ECANCELED, "the model was unloaded while it was starting");
        log_info("model %s: unloading", in->model->name);
        uv_timer_stop(&in->probe_timer);
        in->state = ST_STOPPING;
        proc_stop(in->proc, s->conf->stop_grace_ms);
    }
    return n;
}

json_t *
swap_running(const struct swap *s)
{
    json_t *a = json_array();

    for (size_t i = 0; i < s->n_inst; i++) {
        const struct swap_instance *in = &s->inst[i];

        if (in->state == ST_STOPPED)
            continue;
        json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:i}", "model", in->model->name,
                                           "state", state_names[in->state], "pid",
                                           in->proc ? proc_pid(in->proc) : 0, "inflight",
                                           in->inflight));
    }
    return a;
}

void
swap_shutdown(struct swap *s, void (*done)(void *arg), void *arg)
{
    bool any = false;

    s->shutting_down = true;
    fail_waiting(s, NULL, -ESHUTDOWN, "goinfer is shutting down");
    for (size_t i = 0; i < s->n_inst; i++) {
        struct swap_instance *in = &s->inst[i];

        uv_timer_stop(&in->probe_timer);
        if (in->proc == NULL)
            continue;
        any = true;
        in->state = ST_STOPPING;
        proc_stop(in->proc, s->conf->stop_grace_ms);
    }
    s->shutdown_done = done;
    s->shutdown_arg = arg;
    if (!any && done)
        done(arg);
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct swap *s = ((struct swap_instance *)h->data)->swap;

    if (--s->closing_timers == 0) {
        free(s->inst);
        free(s);
    }
}

void
swap_free(struct swap *s)
{
    if (s == NULL)
        return;
    if (s->n_inst == 0) {
        free(s->inst);
        free(s);
        return;
    }
    s->closing_timers = (int)s->n_inst;
    for (size_t i = 0; i < s->n_inst; i++) {
        http_fetch_cancel(s->inst[i].probe);
        if (s->inst[i].proc)
            proc_free(s->inst[i].proc);
        uv_close((uv_handle_t *)&s->inst[i].probe_timer, on_timer_closed);
    }
}
