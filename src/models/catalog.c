#include "catalog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/swapconf.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "proc/argv.h"

#define DEFAULT_GROUP "(default)"

static char **
list_dup(char *const *v)
{
    size_t n = strv_len(v);
    char **out = xcalloc(n + 1, sizeof(*out));

    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

/* Appends the NULL-terminated src to *dst (a NULL-terminated list, or NULL). */
static void
list_append(char ***dst, char *const *src)
{
    size_t n = strv_len(*dst), m = strv_len(src);

    *dst = xrealloc(*dst, (n + m + 1) * sizeof(**dst));
    for (size_t i = 0; i < m; i++)
        (*dst)[n + i] = xstrdup(src[i]);
    (*dst)[n + m] = NULL;
}

/* The llama.args words from goinfer.yml that apply to this variant (they may hold ${PORT} and
 * ${MODEL_ID}, filled in at start). */
static int
config_args(const struct conf *conf, bool gi, char ***out, char *err, size_t errlen)
{
    const char *const parts[] = {
        conf->args_common,
        conf->args_verbose && !conf->quiet ? conf->args_verbose : NULL,
        conf->args_debug && conf->debug ? conf->args_debug : NULL,
        gi ? conf->args_goinfer : NULL,
    };

    *out = xcalloc(1, sizeof(**out));
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        char **words = NULL;

        if (parts[i] == NULL)
            continue;
        if (proc_argv_split(parts[i], &words) < 0) {
            snprintf(err, errlen, "llama.args: unclosed quote in %s", parts[i]);
            return -EINVAL;
        }
        list_append(out, words);
        proc_argv_free(words);
    }
    return 0;
}

static struct model_def *
add(struct catalog *cat, const char *name)
{
    struct model_def *d;

    cat->v = xrealloc(cat->v, (cat->n + 1) * sizeof(*cat->v));
    d = &cat->v[cat->n++];
    memset(d, 0, sizeof(*d));
    d->name = xstrdup(name);
    d->aliases = xcalloc(1, sizeof(char *));
    d->env = xcalloc(1, sizeof(char *));
    d->strip_params = xcalloc(1, sizeof(char *));
    d->proxy = xstrdup("http://127.0.0.1:${PORT}");
    d->check_endpoint = xstrdup("/health");
    return d;
}

static void
add_discovered(struct catalog *cat, const struct model_entry *e, const char *exe, char **args,
               bool gi)
{
    char *name = gi ? xasprintf("GI_%s", e->name) : xstrdup(e->name);
    struct model_def *d = add(cat, name);

    free(name);
    d->exe = xstrdup(exe);
    d->args = list_dup(args);
    d->flags = e->flags ? list_dup(e->flags) : xcalloc(1, sizeof(char *));
    d->unlisted = gi;
    d->use_model_name = gi ? xstrdup(e->name) : NULL; /* the seed's GI_ variant does this */
    d->path = xstrdup(e->path);
    d->mmproj = e->mmproj ? xstrdup(e->mmproj) : NULL;
    d->size = e->size;
    d->shards = e->shards;
    d->meta = e->meta;
}

static void
add_configured(struct catalog *cat, const struct conf_model *m, const struct swapconf *s)
{
    struct model_def *d = add(cat, m->name);

    d->cmd = xstrdup(m->cmd);
    d->cmd_stop = m->cmd_stop ? xstrdup(m->cmd_stop) : NULL;
    free(d->proxy);
    d->proxy = xstrdup(m->proxy);
    free(d->check_endpoint);
    d->check_endpoint = xstrdup(m->check_endpoint);
    strv_free(d->aliases);
    d->aliases = list_dup(m->aliases);
    strv_free(d->env);
    d->env = list_dup(m->env);
    strv_free(d->strip_params);
    d->strip_params = strv_split(m->filters.strip_params);
    d->set_params = m->filters.set_params ? xstrdup(m->filters.set_params) : NULL;
    d->set_params_by_id = m->filters.set_params_by_id ? xstrdup(m->filters.set_params_by_id) : NULL;
    d->use_model_name = m->use_model_name ? xstrdup(m->use_model_name) : NULL;
    d->description = m->description ? xstrdup(m->description) : NULL;
    d->display_name = m->display_name ? xstrdup(m->display_name) : NULL;
    d->metadata = m->metadata ? xstrdup(m->metadata) : NULL;
    free(d->fallback);
    d->fallback = m->fallback ? xstrdup(m->fallback) : NULL;
    d->caps = m->caps;
    d->caps.in = m->caps.in ? list_dup(m->caps.in) : NULL;
    d->caps.out = m->caps.out ? list_dup(m->caps.out) : NULL;
    d->ttl_ms = (m->ttl_default ? s->global_ttl : m->ttl) * 1000;
    d->concurrency_limit = (unsigned)m->concurrency_limit;
    d->unlisted = m->unlisted;
    d->send_loading_state =
        m->send_loading_state_set ? m->send_loading_state : s->send_loading_state;
}

/* A configured model whose cmd runs a discovered file (-m) keeps what discovery knows of it:
 * path, size, shards, GGUF metadata, and the projector its cmd passes (--mmproj): after
 * goinfer -write, the generated entries shadow the discovered ones and lost all of it. */
static void
adopt_file(struct model_def *d, const struct model_list *found)
{
    char **argv = NULL;
    int n = d->cmd != NULL ? proc_argv_split(d->cmd, &argv) : -1;
    const char *model = NULL, *mmproj = NULL;

    for (int i = 0; i + 1 < n; i++) {
        if (strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0)
            model = argv[i + 1];
        else if (strcmp(argv[i], "--mmproj") == 0 || strcmp(argv[i], "-mm") == 0)
            mmproj = argv[i + 1];
    }
    for (size_t k = 0; model != NULL && d->path == NULL && k < found->n; k++) {
        const struct model_entry *e = &found->v[k];

        if (strcmp(e->path, model) != 0)
            continue;
        d->path = xstrdup(e->path);
        d->size = e->size;
        d->shards = e->shards;
        d->meta = e->meta;
        d->mmproj = mmproj != NULL ? xstrdup(mmproj) : NULL;
    }
    proc_argv_free(argv);
}

static size_t
group_of(const struct swapconf *s, const char *name)
{
    for (size_t g = 0; g < s->n_groups; g++)
        for (char **m = s->groups[g].members; m && *m; m++)
            if (strcmp(*m, name) == 0)
                return g + 1; /* 0 is the default group */
    return 0;
}

static void
build_groups(struct catalog *cat, const struct swapconf *s)
{
    cat->n_groups = s->n_groups + 1;
    cat->groups = xcalloc(cat->n_groups, sizeof(*cat->groups));
    cat->groups[0] = (struct model_group){xstrdup(DEFAULT_GROUP), true, true, false};
    for (size_t g = 0; g < s->n_groups; g++)
        cat->groups[g + 1] = (struct model_group){xstrdup(s->groups[g].name), s->groups[g].swap,
                                                  s->groups[g].exclusive, s->groups[g].persistent};
    for (size_t i = 0; i < cat->n; i++)
        cat->v[i].group = group_of(s, cat->v[i].name);
}

/* The discovered models and their GI_ variants, after the configured ones (which win). */
static int
add_found(struct catalog *cat, const struct conf *conf, const struct model_list *found,
          const char *llama_exe, char *err, size_t errlen)
{
    for (int gi = 0; gi < 2; gi++) {
        char **args = NULL;

        if (found->n > 0 && config_args(conf, gi, &args, err, errlen) < 0) {
            proc_argv_free(args);
            return -EINVAL;
        }
        for (size_t i = 0; i < found->n; i++) {
            char *name = gi ? xasprintf("GI_%s", found->v[i].name) : xstrdup(found->v[i].name);

            if (catalog_find(cat, name, strlen(name)) == NULL)
                add_discovered(cat, &found->v[i], llama_exe, args, gi);
            free(name);
        }
        proc_argv_free(args);
    }
    return 0;
}

/* Logged, and kept for /ui. */
static void __attribute__((format(printf, 2, 3))) warn(struct catalog *cat, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log_warnx("%s", line);
    strv_add(&cat->warnings, line, strlen(line));
}

/* Group members and preload ids that name no model, configured or discovered: warned, as
 * llama-swap does, and left out of the preload. */
static void
warn_unknown(struct catalog *cat, const struct swapconf *s)
{
    size_t k = 0;

    for (size_t g = 0; g < s->n_groups; g++)
        for (char **m = s->groups[g].members; m && *m; m++)
            if (catalog_find(cat, *m, strlen(*m)) == NULL)
                warn(cat, "group %s: member %s is no model here; ignored", s->groups[g].name, *m);
    for (size_t i = 0; cat->preload[i] != NULL; i++) {
        if (catalog_find(cat, cat->preload[i], strlen(cat->preload[i])) == NULL) {
            warn(cat, "hooks.on_startup.preload: %s is no model here; not preloaded",
                 cat->preload[i]);
            free(cat->preload[i]);
            continue;
        }
        cat->preload[k++] = cat->preload[i];
    }
    cat->preload[k] = NULL;
}

int
catalog_build(struct catalog *cat, const struct conf *conf, const struct model_list *found,
              const char *llama_exe, char *err, size_t errlen)
{
    const struct swapconf *s = &conf->swap;

    memset(cat, 0, sizeof(*cat));
    for (size_t i = 0; conf->warnings && conf->warnings[i]; i++)
        strv_add(&cat->warnings, conf->warnings[i], strlen(conf->warnings[i]));
    for (size_t i = 0; i < s->n_models; i++)
        add_configured(cat, &s->models[i], s);
    for (size_t i = 0; i < cat->n; i++)
        adopt_file(&cat->v[i], found);
    if (add_found(cat, conf, found, llama_exe, err, errlen) < 0)
        return -EINVAL;
    for (size_t i = 0; i < cat->n; i++) { /* discovered models: the global settings */
        if (cat->v[i].cmd == NULL) {
            cat->v[i].ttl_ms = s->global_ttl * 1000;
            cat->v[i].send_loading_state = s->send_loading_state;
        }
    }
    build_groups(cat, s);
    cat->preload = list_dup(s->preload);
    cat->ready_timeout_ms = s->health_check_timeout ? s->health_check_timeout * 1000 : 120000;
    cat->start_port = s->start_port;
    cat->include_aliases_in_list = s->include_aliases_in_list;
    cat->peers = s->peers;
    cat->n_peers = s->n_peers;
    warn_unknown(cat, s);
    return 0;
}

void
catalog_cleanup(struct catalog *cat)
{
    for (size_t i = 0; i < cat->n; i++) {
        struct model_def *d = &cat->v[i];

        free(d->name), free(d->cmd), free(d->cmd_stop), free(d->proxy);
        free(d->check_endpoint), free(d->use_model_name), free(d->description);
        free(d->display_name), free(d->metadata), free(d->fallback);
        swapconf_caps_cleanup(&d->caps);
        free(d->path), free(d->mmproj), free(d->exe);
        strv_free(d->aliases), strv_free(d->env), strv_free(d->strip_params);
        free(d->set_params), free(d->set_params_by_id);
        strv_free(d->args), strv_free(d->flags);
    }
    for (size_t g = 0; g < cat->n_groups; g++)
        free(cat->groups[g].name);
    free(cat->v);
    free(cat->groups);
    strv_free(cat->preload);
    strv_free(cat->warnings);
    memset(cat, 0, sizeof(*cat));
}

const struct model_def *
catalog_find(const struct catalog *cat, const char *name, size_t len)
{
    for (size_t i = 0; i < cat->n; i++)
        if (strlen(cat->v[i].name) == len && strncmp(cat->v[i].name, name, len) == 0)
            return &cat->v[i];
    for (size_t i = 0; i < cat->n; i++)
        for (char **a = cat->v[i].aliases; *a; a++)
            if (strlen(*a) == len && strncmp(*a, name, len) == 0)
                return &cat->v[i];
    return NULL;
}

bool
catalog_conflicts(const struct catalog *cat, const struct model_def *a, const struct model_def *b)
{
    const struct model_group *ga = &cat->groups[a->group], *gb = &cat->groups[b->group];

    if (a == b)
        return false;
    if (a->group == b->group)
        return ga->swap;
    return ga->exclusive && !gb->persistent;
}

static bool
same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
same_list(char *const *a, char *const *b)
{
    size_t n = strv_len(a);

    if (n != strv_len(b))
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

bool
catalog_same_process(const struct model_def *a, const struct model_def *b)
{
    return same_str(a->cmd, b->cmd) && same_str(a->cmd_stop, b->cmd_stop) &&
           same_str(a->proxy, b->proxy) && same_str(a->check_endpoint, b->check_endpoint) &&
           same_str(a->exe, b->exe) && same_str(a->path, b->path) &&
           same_str(a->mmproj, b->mmproj) && same_list(a->env, b->env) &&
           same_list(a->args, b->args) && same_list(a->flags, b->flags);
}

/* Appends a copy of s to the list being built in v (n words so far). */
static void
push(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, (*n + 2) * sizeof(**v));
    (*v)[(*n)++] = xstrdup(s);
    (*v)[*n] = NULL;
}

int
catalog_argv(const struct model_def *d, const char *port, char ***argv)
{
    const struct proc_var vars[] = {{"PORT", port}, {"MODEL_ID", d->name}};
    const char *const head[] = {d->exe,   "-m", d->path,   "--host", "127.0.0.1",
                                "--port", port, "--alias", d->name};
    char **v = NULL, **flags;
    size_t n = 0;

    if (d->cmd != NULL) /* configured: its own command line, whatever file it runs */
        return proc_argv_fill(d->cmd, vars, 2, argv);
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++) {
        push(&v, &n, head[i]);
        if (i == 2 && d->mmproj != NULL) {
            push(&v, &n, "--mmproj");
            push(&v, &n, d->mmproj);
        }
    }
    for (char **a = d->args; a && *a; a++) {
        char *w = proc_argv_subst(*a, vars, 2);

        push(&v, &n, w);
        free(w);
    }
    flags = list_dup(d->flags); /* discovery cleaned them; this keeps the rule whoever built d */
    models_drop_reserved(flags);
    for (char **f = flags; *f; f++)
        push(&v, &n, *f);
    strv_free(flags);
    *argv = v;
    return (int)n;
}
