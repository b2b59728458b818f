#include "swap.h"

#include <sys/socket.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/swapconf.h"
#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "proc/argv.h"
#include "proc/proc.h"
#include "swap/plan.h"

enum inst_state { ST_STOPPED, ST_STARTING, ST_READY, ST_STOPPING };

static const char *const state_names[] = {"stopped", "starting", "ready", "stopping"};

struct swap_instance {
    struct swap *swap;
    const struct model_def *model;
    enum inst_state state;
    struct proc *proc;
    struct http_client *client; /* its own connection pool, closed before the child is stopped */
    char *url;
    int port;
    int inflight;
    bool unload_when_idle;
    bool failed;   /* its last start failed (cleared when one succeeds) */
    int exit_code; /* of its last exit (a failed start: of that start, when it exited) */
    struct http_fetch *probe;
    long probe_status;
    uv_timer_t probe_timer;
    uv_timer_t ttl_timer;
    uint64_t started_at;
    bool retired;         /* dropped or changed by a reload: stops when idle, freed after */
    size_t index;         /* position in the catalog, for startPort */
    size_t index_in_plan; /* during schedule(): its place in the planner's arrays */
    int closing;          /* timers being closed before the free */
    bool talks;           /* its child spoke llama.cpp's protocol: ready when it says so */
    bool has_progress;
    struct proc_progress progress;
    uint64_t loads_ms[PLAN_LOADS_KEPT]; /* its last loads, for the estimate */
    size_t n_loads;
    struct swap_instance *next;
};

struct swap_watch {
    struct swap *swap;
    swap_watch_cb cb;
    void *arg;
    bool dead; /* unwatched during a dispatch: unlinked after it */
    struct swap_watch *prev, *next;
};

/* What the pure scheduler (plan.c) sees of the instances and the queue, by index. */
struct snapshot {
    struct swap *s;
    struct swap_instance **inst;
    struct swap_lease **lease;
    struct plan_inst *pinst;
    struct plan_work *work;
    struct plan_action *act;
    size_t *queue;
    size_t n_inst, n_queue;
    size_t cap_inst, cap_queue; /* kept between calls: no allocation per request */
};

struct swap {
    uv_loop_t *loop;
    struct snapshot plan; /* schedule()'s arrays */
    const struct swap_conf *conf;
    const struct catalog *cat;
    struct swap_instance *all; /* one per catalog model, and retired ones still running */
    struct swap_lease *queue, **queue_tail;
    struct swap_lease *preload; /* leases held by hooks.on_startup.preload */
    swap_gate_cb gate;          /* may a model start; NULL: every one */
    void *gate_arg;
    bool shutting_down;
    void (*shutdown_done)(void *);
    void *shutdown_arg;
    int closing_timers;
    struct swap_watch *watches;
    int dispatching; /* depth of notify(): unwatched entries wait for it to end */
};

static void schedule(struct swap *s);
static void instance_free(struct swap_instance *in);

#define FOR_EACH_INSTANCE(s, in) for (struct swap_instance *in = (s)->all; in; in = in->next)

/* ---- watchers: /models/sse and requests waiting on a load ---- */

static void
watch_free_dead(struct swap *s)
{
    struct swap_watch *w = s->watches, *next;

    for (; w != NULL; w = next) {
        next = w->next;
        if (w->dead) {
            DLIST_UNLINK(s->watches, w);
            free(w);
        }
    }
}

static void load_of(const struct swap_instance *in, struct swap_load *out);

/* Tells every watcher that in changed; a callback may unwatch anyone, itself included. */
static void
notify(struct swap_instance *in, enum swap_model_state st, bool started)
{
    struct swap *s = in->swap;
    struct swap_load load;
    struct swap_event ev = {in->model, st, started, NULL, in->exit_code};

    if (s->watches == NULL || in->retired)
        return;
    if (st == SWAP_MODEL_LOADING) {
        load_of(in, &load);
        ev.load = &load;
    }
    s->dispatching++;
    for (struct swap_watch *w = s->watches; w != NULL; w = w->next)
        if (!w->dead)
            w->cb(&ev, w->arg);
    if (--s->dispatching == 0)
        watch_free_dead(s);
}

struct swap_watch *
swap_watch(struct swap *s, swap_watch_cb cb, void *arg)
{
    struct swap_watch *w = xcalloc(1, sizeof(*w));

    w->swap = s;
    w->cb = cb;
    w->arg = arg;
    DLIST_PUSH(s->watches, w);
    return w;
}

void
swap_unwatch(struct swap_watch *w)
{
    struct swap *s;

    if (w == NULL)
        return;
    s = w->swap;
    w->dead = true;
    if (s->dispatching == 0)
        watch_free_dead(s);
}

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

static int
waiting_for(const struct swap *s, const struct swap_instance *in)
{
    int n = 0;

    for (const struct swap_lease *l = s->queue; l != NULL; l = l->next)
        n += l->inst == in;
    return n;
}

/* ---- stopping ---- */

/* Our idle keep-alive connections would make llama-server's shutdown wait for them. */
static void
drop_client(struct swap_instance *in)
{
    http_fetch_cancel(in->probe);
    in->probe = NULL;
    http_client_release(in->client); /* requests still in flight keep it until they end */
    in->client = NULL;
}

static void
on_cmd_stop_exit(struct proc *p, int64_t status, int term_signal, void *arg)
{
    (void)arg;
    if (status != 0 || term_signal != 0)
        log_warnx("cmdStop exited with %s %d; its last output: %s", term_signal ? "signal" : "code",
                  term_signal ? term_signal : (int)status, proc_tail(p));
    proc_free(p);
}

/* argv as one line for the log, a word quoted when a shell would need it to stay one word. */
static char *
argv_line(char **argv)
{
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789_./:=@%+,-";
    struct buf b;
    char *s;

    buf_init(&b, 1 << 20);
    for (size_t i = 0; argv[i]; i++) {
        if (i > 0)
            buf_append(&b, " ", 1);
        if (argv[i][0] != '\0' && argv[i][strspn(argv[i], plain)] == '\0')
            buf_append(&b, argv[i], strlen(argv[i]));
        else
            proc_argv_quote(&b, argv[i]);
    }
    s = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return s;
}

/* llama-swap's cmdStop (e.g. docker stop): run instead of SIGTERM, ${PID} and ${PORT} filled
 * in each word. */
static int
run_cmd_stop(struct swap_instance *in)
{
    char pid[16], port[16], **argv = NULL, *line;
    const struct proc_var vars[] = {{"PID", pid}, {"PORT", port}, {"MODEL_ID", in->model->name}};
    int err = 0, n;
    struct proc *p = NULL;

    snprintf(pid, sizeof(pid), "%d", proc_pid(in->proc));
    snprintf(port, sizeof(port), "%d", in->port);
    n = proc_argv_fill(in->model->cmd_stop, vars, 3, &argv);
    if (n > 0) {
        line = argv_line(argv);
        log_info("model %s: cmdStop: %s", in->model->name, line);
        free(line);
        p = proc_spawn(in->swap->loop, argv, NULL, "cmdStop", on_cmd_stop_exit, NULL, &err);
    }
    proc_argv_free(argv);
    if (p == NULL)
        log_warnx("model %s: cmdStop could not start (%s); sending SIGTERM", in->model->name,
                  n > 0 ? uv_strerror(err) : "empty or unclosed quote");
    return p ? 0 : -1;
}

static void
stop_instance(struct swap_instance *in, const char *why)
{
    struct swap *s = in->swap;

    log_info("model %s: stopping (%s)", in->model->name, why);
    uv_timer_stop(&in->probe_timer);
    uv_timer_stop(&in->ttl_timer);
    drop_client(in);
    in->state = ST_STOPPING;
    if (in->model->cmd_stop != NULL && run_cmd_stop(in) == 0)
        proc_kill_after(in->proc, s->conf->stop_grace_ms);
    else
        proc_stop(in->proc, s->conf->stop_grace_ms);
}

static void
on_ttl(uv_timer_t *t)
{
    struct swap_instance *in = t->data;

    if (in->state == ST_READY && in->inflight == 0)
        stop_instance(in, "ttl: idle too long");
}

/* Called when a model has nothing in flight: TTL counts idle time only. */
static void
became_idle(struct swap_instance *in)
{
    if (in->unload_when_idle) {
        in->unload_when_idle = false;
        stop_instance(in, "unloaded");
        return;
    }
    if (in->model->ttl_ms > 0)
        uv_timer_start(&in->ttl_timer, on_ttl, in->model->ttl_ms, 0);
}

/* ---- readiness: poll the check endpoint every few ms, so a model is used the moment it is
 * up ---- */

static void probe_now(uv_timer_t *t);

static void
mark_ready(struct swap_instance *in)
{
    uint64_t ms = (uv_hrtime() - in->started_at) / 1000000;

    http_fetch_cancel(in->probe);
    in->probe = NULL;
    uv_timer_stop(&in->probe_timer);
    in->state = ST_READY;
    in->failed = false;
    in->has_progress = false;
    if (in->n_loads == PLAN_LOADS_KEPT) /* the oldest goes */
        memmove(in->loads_ms, in->loads_ms + 1, (PLAN_LOADS_KEPT - 1) * sizeof(in->loads_ms[0]));
    in->loads_ms[in->n_loads < PLAN_LOADS_KEPT ? in->n_loads++ : PLAN_LOADS_KEPT - 1] = ms;
    log_info("model %s: ready on %s in %llu ms", in->model->name, in->url, (unsigned long long)ms);
    notify(in, SWAP_MODEL_LOADED, false);
    schedule(in->swap);
    if (in->state == ST_READY && in->inflight == 0 && waiting_for(in->swap, in) == 0)
        became_idle(in);
}

static void
give_up_start(struct swap_instance *in)
{
    char *why = xasprintf("llama-server for model %s was not ready within %llu ms; see its log "
                          "(GET /logs), or raise healthCheckTimeout",
                          in->model->name, (unsigned long long)in->swap->cat->ready_timeout_ms);

    log_warnx("%s", why);
    in->failed = true;
    fail_waiting(in->swap, in, -ETIMEDOUT, why);
    free(why);
    stop_instance(in, "not ready in time");
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
        mark_ready(in);
        return;
    }
    if (uv_hrtime() - in->started_at > in->swap->cat->ready_timeout_ms * 1000000ull) {
        give_up_start(in);
        return;
    }
    uv_timer_start(&in->probe_timer, probe_now, in->swap->conf->probe_ms, 0);
}

static void
probe_now(uv_timer_t *t)
{
    struct swap_instance *in = t->data;
    static const struct http_fetch_cb cb = {on_probe_response, NULL, on_probe_done};
    char *url;
    struct http_fetch_opts o = {.connect_timeout_ms = 1000, .timeout_ms = 2000};

    if (in->state != ST_STARTING || in->probe != NULL)
        return;
    if (strcmp(in->model->check_endpoint, "none") == 0) {
        mark_ready(in);
        return;
    }
    url = xasprintf("%s%s", in->url, in->model->check_endpoint);
    o.url = url;
    in->probe_status = 0;
    in->probe = http_fetch_start(in->client, &o, &cb, in);
    free(url);
}

/* llama-server says when it listens: probe then rather than at the next tick. */
static void
on_child_line(struct proc *p, const char *line, size_t len, void *arg)
{
    struct swap_instance *in = arg;

    (void)p;
    if (in->state == ST_STARTING && !in->talks && in->probe == NULL &&
        memmem(line, len, "listening on", 12))
        uv_timer_start(&in->probe_timer, probe_now, 0, 0);
}

static void
on_ready_deadline(uv_timer_t *t)
{
    struct swap_instance *in = t->data;

    if (in->state == ST_STARTING)
        give_up_start(in);
}

/* A child that speaks llama.cpp's protocol says when it is ready, as it says how far its load
 * is: the health poll stops (its "ready" comes once /health would answer 200), and only the
 * healthCheckTimeout deadline stays. */
static void
start_talking(struct swap_instance *in)
{
    uint64_t spent = (uv_hrtime() - in->started_at) / 1000000;
    uint64_t limit = in->swap->cat->ready_timeout_ms;

    in->talks = true;
    http_fetch_cancel(in->probe);
    in->probe = NULL;
    uv_timer_start(&in->probe_timer, on_ready_deadline, limit > spent ? limit - spent : 0, 0);
}

static void
on_child_state(struct proc *p, const struct proc_child_msg *m, void *arg)
{
    struct swap_instance *in = arg;

    (void)p;
    if (in->state != ST_STARTING)
        return;
    if (!in->talks)
        start_talking(in);
    if (m->state == PROC_CHILD_READY) {
        mark_ready(in);
    } else if (m->state == PROC_CHILD_LOADING && m->has_progress) {
        in->progress = m->progress;
        in->has_progress = true;
        notify(in, SWAP_MODEL_LOADING, false);
    }
}

/* ---- children ---- */

static void
all_stopped_check(struct swap *s)
{
    void (*done)(void *) = s->shutdown_done;

    FOR_EACH_INSTANCE (s, in)
        if (in->proc != NULL)
            return;
    s->shutdown_done = NULL; /* done may free s */
    if (done)
        done(s->shutdown_arg);
}

static void
report_exit(struct swap_instance *in, enum inst_state was, struct proc *p, int64_t status,
            int term_signal)
{
    const char *how = term_signal ? "signal" : "exit code";
    int code = term_signal ? term_signal : (int)status;

    if (was == ST_STARTING) {
        char *why = xasprintf("llama-server for model %s exited at start-up (%s %d); its last "
                              "output: %s",
                              in->model->name, how, code, proc_tail(p));

        log_warnx("%s", why);
        in->failed = true;
        in->exit_code = code;
        fail_waiting(in->swap, in, -ECHILD, why);
        free(why);
    } else if (was == ST_READY) {
        log_warnx("model %s: llama-server exited unexpectedly (%s %d); the next request restarts "
                  "it",
                  in->model->name, how, code);
    } else {
        log_info("model %s: stopped", in->model->name);
    }
}

static void
on_child_exit(struct proc *p, int64_t status, int term_signal, void *arg)
{
    struct swap_instance *in = arg;
    struct swap *s = in->swap;
    enum inst_state was = in->state;

    uv_timer_stop(&in->probe_timer);
    uv_timer_stop(&in->ttl_timer);
    drop_client(in);
    in->proc = NULL;
    in->state = ST_STOPPED;
    in->unload_when_idle = false;
    in->has_progress = false;
    in->exit_code = term_signal ? term_signal : (int)status; /* as report_exit tells it */
    report_exit(in, was, p, status, term_signal);
    proc_free(p);
    notify(in, in->failed ? SWAP_MODEL_FAILED : SWAP_MODEL_UNLOADED, false);
    if (in->retired && in->inflight == 0 && !s->shutting_down)
        instance_free(in); /* with requests still holding it, swap_release frees it */
    if (s->shutting_down)
        all_stopped_check(s);
    else
        schedule(s);
}

/* A free loopback port: startPort + index when set and free, else one the kernel picks. */
static int
pick_port(const struct swap_instance *in)
{
    const struct swap *s = in->swap;
    int want = s->cat->start_port ? (int)(s->cat->start_port + in->index) : 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

    if (fd < 0)
        return -errno;
    a.sin_port = htons((uint16_t)want);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        a.sin_port = 0;
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
            port = -errno;
    }
    if (port == -1 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* The model's argv on port (catalog_argv), logged. */
static int
start_argv(const struct swap_instance *in, const char *port, char ***argv)
{
    int n = catalog_argv(in->model, port, argv);
    char *line;

    if (n > 0) {
        line = argv_line(*argv);
        log_info("model %s: starting: %s", in->model->name, line);
        free(line);
    }
    return n;
}

static void
start_failed(struct swap_instance *in, const char *what)
{
    char *why = xasprintf("cannot start model %s: %s; check its cmd (or GI_LLAMA_EXE)",
                          in->model->name, what);

    log_warnx("%s", why);
    in->failed = true;
    in->exit_code = 0;
    fail_waiting(in->swap, in, -ECHILD, why);
    free(why);
    notify(in, SWAP_MODEL_FAILED, false);
}

static void
start_instance(struct swap_instance *in)
{
    struct swap *s = in->swap;
    char ports[16], tag[160], **argv = NULL, *url;
    int port = pick_port(in), err = 0;

    if (port < 0) {
        start_failed(in, "no free loopback port");
        return;
    }
    snprintf(ports, sizeof(ports), "%d", port);
    if (start_argv(in, ports, &argv) <= 0) {
        proc_argv_free(argv);
        start_failed(in, "its cmd is empty or has an unclosed quote");
        return;
    }
    snprintf(tag, sizeof(tag), "model %s", in->model->name);
    in->started_at = uv_hrtime();
    in->proc = proc_spawn_engine(s->loop, argv, in->model->env, tag, on_child_exit, in, &err);
    if (in->proc == NULL) {
        char *what = xasprintf("%s: %s", argv[0], uv_strerror(err));

        start_failed(in, what);
        free(what);
        proc_argv_free(argv);
        return;
    }
    proc_argv_free(argv);
    url = swapconf_subst(in->model->proxy, "PORT", ports);
    free(in->url);
    in->url = url;
    in->port = port;
    proc_on_line(in->proc, on_child_line);
    proc_on_state(in->proc, on_child_state);
    in->client = http_client_new(s->loop);
    in->state = ST_STARTING;
    in->talks = in->has_progress = false;
    uv_timer_start(&in->probe_timer, probe_now, 0, 0);
    notify(in, SWAP_MODEL_LOADING, true);
}

/* ---- scheduling ---- */

static void
grant(struct swap *s, struct swap_lease *l)
{
    queue_remove(s, l);
    l->state = SWAP_LEASE_GRANTED;
    l->inst->inflight++;
    uv_timer_stop(&l->inst->ttl_timer);
    l->cb(l, 0, "", l->arg);
}

static bool
snapshot_conflicts(size_t i, size_t j, void *arg)
{
    struct snapshot *sn = arg;

    return catalog_conflicts(sn->s->cat, sn->inst[i]->model, sn->inst[j]->model);
}

static void
snapshot_take(struct swap *s, struct snapshot *sn)
{
    static const enum plan_state states[] = {PLAN_STOPPED, PLAN_STARTING, PLAN_READY,
                                             PLAN_STOPPING};

    size_t i = 0, q = 0;

    sn->s = s;
    sn->n_inst = sn->n_queue = 0;
    FOR_EACH_INSTANCE (s, in) {
        in->index_in_plan = sn->n_inst++;
    }
    for (struct swap_lease *l = s->queue; l != NULL; l = l->next)
        sn->n_queue++;
    if (sn->n_inst + 1 > sn->cap_inst) {
        sn->cap_inst = 2 * (sn->n_inst + 1);
        sn->inst = xrealloc(sn->inst, sn->cap_inst * sizeof(*sn->inst));
        sn->pinst = xrealloc(sn->pinst, sn->cap_inst * sizeof(*sn->pinst));
        sn->work = xrealloc(sn->work, sn->cap_inst * sizeof(*sn->work));
        sn->act = xrealloc(sn->act, sn->cap_inst * sizeof(*sn->act));
    }
    if (sn->n_queue + 1 > sn->cap_queue) {
        sn->cap_queue = 2 * (sn->n_queue + 1);
        sn->lease = xrealloc(sn->lease, sn->cap_queue * sizeof(*sn->lease));
        sn->queue = xrealloc(sn->queue, sn->cap_queue * sizeof(*sn->queue));
    }
    FOR_EACH_INSTANCE (s, in) {
        sn->inst[i] = in;
        sn->pinst[i++] = (struct plan_inst){states[in->state], in->inflight, in->retired};
    }
    for (struct swap_lease *l = s->queue; l != NULL; l = l->next, q++) {
        sn->lease[q] = l;
        sn->queue[q] = l->inst->index_in_plan;
    }
}

static void
snapshot_free(struct snapshot *sn)
{
    free(sn->inst), free(sn->pinst), free(sn->work), free(sn->act), free(sn->lease);
    free(sn->queue);
}

/*
 * Grants, starts and stops as plan_next decides (in arrival order; a model an earlier
 * request needs stopped drains instead of serving newcomers, so nothing starves), asking again
 * after each grant or start, since a callback or a failed start may change the queue.
 */
static void
schedule(struct swap *s)
{
    bool again = true;

    while (again && !s->shutting_down && s->queue != NULL) {
        struct snapshot *sn = &s->plan;
        size_t n;

        snapshot_take(s, sn);
        n = plan_next(sn->pinst, sn->n_inst, sn->queue, sn->n_queue, snapshot_conflicts, sn,
                      sn->work, sn->act);
        again = false;
        for (size_t k = 0; k < n; k++) {
            const struct plan_action *a = &sn->act[k];

            if (a->kind == PLAN_STOP) {
                char *why = xasprintf("to make room for %s", sn->inst[a->cause]->model->name);

                stop_instance(sn->inst[a->index], why);
                free(why);
            } else if (a->kind == PLAN_GRANT) { /* its callback may schedule again: the last */
                grant(s, sn->lease[a->index]);
                again = true;
            } else {
                start_instance(sn->inst[a->index]);
                again = true;
            }
        }
    }
}

/* ---- public ---- */

static struct swap_instance *
instance_new(struct swap *s, const struct model_def *m, size_t index)
{
    struct swap_instance *in = xcalloc(1, sizeof(*in));

    in->swap = s;
    in->model = m;
    in->index = index;
    uv_timer_init(s->loop, &in->probe_timer);
    uv_timer_init(s->loop, &in->ttl_timer);
    in->probe_timer.data = in->ttl_timer.data = in;
    in->next = s->all;
    s->all = in;
    return in;
}

static void
on_instance_timer_closed(uv_handle_t *h)
{
    struct swap_instance *in = h->data;

    if (--in->closing > 0)
        return;
    free(in->url);
    free(in);
}

/* Unlinks and frees a stopped instance (timers close first). */
static void
instance_free(struct swap_instance *in)
{
    struct swap *s = in->swap;

    for (struct swap_instance **pp = &s->all; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    drop_client(in);
    if (in->proc)
        proc_free(in->proc);
    in->closing = 2;
    uv_close((uv_handle_t *)&in->probe_timer, on_instance_timer_closed);
    uv_close((uv_handle_t *)&in->ttl_timer, on_instance_timer_closed);
}

struct swap *
swap_new(uv_loop_t *loop, const struct swap_conf *conf, const struct catalog *cat)
{
    struct swap *s = xcalloc(1, sizeof(*s));

    s->loop = loop;
    s->conf = conf;
    s->cat = cat;
    s->queue_tail = &s->queue;
    for (size_t i = cat->n; i-- > 0;)
        instance_new(s, &cat->v[i], i);
    return s;
}

static struct swap_instance *
instance_of(struct swap *s, const struct model_def *m)
{
    FOR_EACH_INSTANCE (s, in)
        if (in->model == m && !in->retired)
            return in;
    return NULL;
}

void
swap_acquire(struct swap *s, struct swap_lease *l, const struct model_def *m, swap_ready_cb cb,
             void *arg)
{
    struct swap_instance *in = instance_of(s, m);
    const char *off;
    char msg[256];

    memset(l, 0, sizeof(*l));
    l->swap = s;
    l->cb = cb;
    l->arg = arg;
    l->inst = in;
    if (in == NULL || s->shutting_down) {
        cb(l, in ? -ESHUTDOWN : -ENOENT, in ? "goinfer is shutting down" : "unknown model", arg);
        return;
    }
    if (s->gate != NULL && (off = s->gate(m, s->gate_arg)) != NULL) {
        snprintf(msg, sizeof(msg),
                 "model %s is disabled; enable it on /ui or POST /api/models/%s/enable", off, off);
        cb(l, -EPERM, msg, arg);
        return;
    }
    if (m->concurrency_limit > 0 &&
        (unsigned)(in->inflight + waiting_for(s, in)) >= m->concurrency_limit) {
        snprintf(msg, sizeof(msg),
                 "model %s already has %u requests in progress "
                 "(concurrencyLimit); retry later",
                 m->name, m->concurrency_limit);
        cb(l, -EBUSY, msg, arg);
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
        l->state = SWAP_LEASE_IDLE;
        schedule(s); /* it may have been holding back requests for a model it doomed */
    } else if (l->state == SWAP_LEASE_GRANTED) {
        struct swap_instance *in = l->inst;

        l->state = SWAP_LEASE_IDLE;
        if (--in->inflight == 0 && in->retired && in->state == ST_STOPPED) {
            instance_free(in);
        } else if (in->inflight == 0 && in->state == ST_READY) {
            schedule(s);
            if (in->state == ST_READY && in->inflight == 0 && waiting_for(s, in) == 0)
                became_idle(in);
        }
    }
    l->state = SWAP_LEASE_IDLE;
}

const char *
swap_lease_url(const struct swap_lease *l)
{
    return l->inst->url;
}

struct http_client *
swap_lease_client(const struct swap_lease *l)
{
    return l->inst->client;
}

static void
on_preloaded(struct swap_lease *l, int err, const char *msg, void *arg)
{
    (void)arg;
    if (err < 0)
        log_warnx("preload: %s", msg);
    else
        swap_release(l);
}

void
swap_set_gate(struct swap *s, swap_gate_cb gate, void *arg)
{
    s->gate = gate;
    s->gate_arg = arg;
}

void
swap_preload(struct swap *s)
{
    size_t n = strv_len(s->cat->preload);

    s->preload = xcalloc(n ? n : 1, sizeof(*s->preload));
    for (size_t i = 0; i < n; i++) {
        const char *name = s->cat->preload[i];
        const struct model_def *m = catalog_find(s->cat, name, strlen(name));

        if (m != NULL && s->gate != NULL && s->gate(m, s->gate_arg) != NULL) {
            log_info("preload: %s is disabled, not started", name);
            continue;
        }
        log_info("preload: starting %s", name);
        swap_acquire(s, &s->preload[i], m, on_preloaded, NULL);
    }
}

/* Stops in now, or once its requests end; false when it was not running. */
static bool
unload_one(struct swap *s, struct swap_instance *in)
{
    if (in->state == ST_STOPPED || in->state == ST_STOPPING)
        return false;
    if (in->state == ST_READY && in->inflight > 0) {
        in->unload_when_idle = true;
        return true;
    }
    if (in->state == ST_STARTING)
        fail_waiting(s, in, -ECANCELED, "the model was unloaded while it was starting");
    stop_instance(in, "unloaded");
    return true;
}

int
swap_unload_all(struct swap *s)
{
    int n = 0;

    FOR_EACH_INSTANCE (s, in)
        n += unload_one(s, in);
    return n;
}

int
swap_unload(struct swap *s, const struct model_def *m)
{
    int n = 0;

    FOR_EACH_INSTANCE (s, in)
        if (in->model == m)
            n += unload_one(s, in);
    return n;
}

enum swap_model_state
swap_model_state(const struct swap *s, const struct model_def *m, int *exit_code)
{
    static const enum swap_model_state of[] = {SWAP_MODEL_UNLOADED, SWAP_MODEL_LOADING,
                                               SWAP_MODEL_LOADED, SWAP_MODEL_UNLOADING};

    *exit_code = 0;
    FOR_EACH_INSTANCE (s, in) {
        if (in->model != m || in->retired)
            continue;
        *exit_code = in->exit_code;
        return in->state == ST_STOPPED && in->failed ? SWAP_MODEL_FAILED : of[in->state];
    }
    return SWAP_MODEL_UNLOADED;
}

static void
load_of(const struct swap_instance *in, struct swap_load *out)
{
    memset(out, 0, sizeof(*out));
    out->has_progress = in->has_progress;
    if (in->has_progress)
        out->progress = in->progress;
    out->elapsed_ms = (uv_hrtime() - in->started_at) / 1000000;
    out->remaining_ms =
        plan_load_remaining_ms(in->loads_ms, in->n_loads, out->elapsed_ms, in->has_progress,
                               in->has_progress ? in->progress.value : 0);
}

int64_t
swap_last_load_ms(const struct swap *s, const struct model_def *m)
{
    FOR_EACH_INSTANCE (s, in)
        if (in->model == m && !in->retired && in->n_loads > 0)
            return (int64_t)in->loads_ms[in->n_loads - 1];
    return -1;
}

bool
swap_model_load(const struct swap *s, const struct model_def *m, struct swap_load *out)
{
    FOR_EACH_INSTANCE (s, in) {
        if (in->model == m && !in->retired && in->state == ST_STARTING) {
            load_of(in, out);
            return true;
        }
    }
    return false;
}

/* {"stages":[...],"current":"...","value":0.5}, llama.cpp's shape. */
json_t *
swap_progress_json(const struct proc_progress *p)
{
    json_t *stages = json_array();

    for (size_t i = 0; i < p->n_stages; i++)
        json_array_append_new(stages, json_string(p->stages[i]));
    return json_pack("{s:o, s:s, s:f}", "stages", stages, "current",
                     p->current >= 0 ? p->stages[p->current] : "", "value", p->value);
}

void
swap_add_progress(json_t *status, const struct swap *s, const struct model_def *m)
{
    struct swap_load load;

    if (swap_model_load(s, m, &load) && load.has_progress)
        json_object_set_new(status, "progress", swap_progress_json(&load.progress));
}

bool
swap_is_ready(const struct swap *s, const char *model)
{
    FOR_EACH_INSTANCE (s, in)
        if (in->state == ST_READY && strcmp(in->model->name, model) == 0)
            return true;
    return false;
}

size_t
swap_count_running(const struct swap *s)
{
    size_t n = 0;

    FOR_EACH_INSTANCE (s, in)
        n += in->state != ST_STOPPED;
    return n;
}

json_t *
swap_running(const struct swap *s)
{
    json_t *a = json_array();

    FOR_EACH_INSTANCE (s, in) {
        json_t *o;
        struct swap_load load;

        if (in->state == ST_STOPPED)
            continue;
        o = json_pack("{s:s, s:s, s:i, s:i, s:s}", "model", in->model->name, "state",
                      state_names[in->state], "pid", in->proc ? proc_pid(in->proc) : 0, "inflight",
                      in->inflight, "proxy", in->url ? in->url : "");
        if (in->state == ST_STARTING) { /* how far, and how long still */
            load_of(in, &load);
            if (load.has_progress)
                json_object_set_new(o, "progress", swap_progress_json(&load.progress));
            json_object_set_new(o, "elapsed_s", json_real((double)load.elapsed_ms / 1000));
            if (load.remaining_ms >= 0)
                json_object_set_new(o, "remaining_s", json_real((double)load.remaining_ms / 1000));
        }
        json_array_append_new(a, o);
    }
    return a;
}

void
swap_shutdown(struct swap *s, void (*done)(void *arg), void *arg)
{
    s->shutting_down = true;
    s->shutdown_done = done;
    s->shutdown_arg = arg;
    fail_waiting(s, NULL, -ESHUTDOWN, "goinfer is shutting down");
    FOR_EACH_INSTANCE (s, in)
        if (in->proc != NULL && in->state != ST_STOPPING)
            stop_instance(in, "shutting down");
    all_stopped_check(s);
}

void
swap_free(struct swap *s)
{
    if (s == NULL)
        return;
    while (s->all)
        instance_free(s->all);
    while (s->watches) {
        struct swap_watch *w = s->watches;

        DLIST_UNLINK(s->watches, w);
        free(w);
    }
    free(s->preload);
    snapshot_free(&s->plan);
    free(s);
}

/* Removes and returns the live instance running m's process unchanged, or NULL. */
static struct swap_instance *
take_same(struct swap_instance **list, const struct model_def *m)
{
    for (struct swap_instance **pp = list; *pp; pp = &(*pp)->next) {
        struct swap_instance *in = *pp;

        if (!in->retired && strcmp(in->model->name, m->name) == 0 &&
            catalog_same_process(in->model, m)) {
            *pp = in->next;
            return in;
        }
    }
    return NULL;
}

/* Waiting requests follow their model to its new definition, or fail when it is gone. */
static void
repoint_waiters(struct swap *s, struct swap_instance *old)
{
    struct swap_lease *l, *next;

    for (l = s->queue; l != NULL; l = next) {
        struct swap_instance *in = NULL;

        next = l->next;
        if (l->inst != old)
            continue;
        FOR_EACH_INSTANCE (s, o)
            if (!o->retired && strcmp(o->model->name, old->model->name) == 0)
                in = o;
        if (in != NULL) {
            l->inst = in;
            continue;
        }
        queue_remove(s, l);
        l->state = SWAP_LEASE_IDLE;
        l->cb(l, -ENOENT, "the model was removed from the configuration", l->arg);
    }
}

static void
retire(struct swap *s, struct swap_instance *in)
{
    in->retired = true;
    repoint_waiters(s, in);
    if (in->state == ST_STOPPED && in->inflight == 0)
        instance_free(in);
    else if (in->state == ST_STOPPED)
        return; /* swap_release frees it when its last request ends */
    else if (in->state == ST_READY && in->inflight > 0)
        in->unload_when_idle = true;
    else if (in->state != ST_STOPPING)
        stop_instance(in, "its definition changed or was removed");
}

void
swap_reconfigure(struct swap *s, const struct catalog *cat)
{
    struct swap_instance *old = s->all, *next;

    s->all = NULL;
    s->cat = cat;
    for (size_t i = cat->n; i-- > 0;) {
        struct swap_instance *keep = take_same(&old, &cat->v[i]);

        if (keep == NULL) {
            instance_new(s, &cat->v[i], i);
            continue;
        }
        keep->model = &cat->v[i];
        keep->index = i;
        keep->next = s->all;
        s->all = keep;
    }
    for (struct swap_instance *in = old; in != NULL; in = next) {
        next = in->next; /* linking it into s->all rewrites in->next */
        in->next = s->all;
        s->all = in;
        if (!in->retired)
            retire(s, in);
    }
    schedule(s);
}

bool
swap_uses_catalog(const struct swap *s, const struct catalog *cat)
{
    uintptr_t lo = (uintptr_t)cat->v, hi = (uintptr_t)(cat->v + cat->n);

    FOR_EACH_INSTANCE (s, in)
        if ((uintptr_t)in->model >= lo && (uintptr_t)in->model < hi)
            return true;
    return false;
}
