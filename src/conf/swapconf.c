#include "swapconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/sections.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "proc/argv.h"

/* ---- macros ---- */

static const struct conf_macro *
find_macro(const struct conf_macro *m, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(m[i].name) == len && strncmp(m[i].name, name, len) == 0)
            return &m[i];
    return NULL;
}

/* Late-bound names that only exist when a model starts (or stops). */
static bool
is_late(const char *name, size_t len)
{
    return (len == 4 && strncmp(name, "PORT", 4) == 0) ||
           (len == 3 && strncmp(name, "PID", 3) == 0) || /* cmdStop */
           (len == 8 && strncmp(name, "MODEL_ID", 8) == 0);
}

int
swapconf_expand(const char *in, const struct conf_macro *m, size_t n, char **out, char *err,
                size_t errlen)
{
    struct buf b;
    const char *p = in;

    buf_init(&b, 1 << 20);
    while (*p) {
        const char *open = strstr(p, "${"), *close = open ? strchr(open, '}') : NULL, *name;
        const struct conf_macro *mac;
        size_t len;

        if (close == NULL) {
            buf_append(&b, p, strlen(p));
            break;
        }
        buf_append(&b, p, (size_t)(open - p));
        name = open + 2;
        len = (size_t)(close - name);
        mac = find_macro(m, n, name, len);
        if (mac != NULL) {
            buf_append(&b, mac->value, strlen(mac->value));
        } else if (len > 4 && strncmp(name, "env.", 4) == 0) {
            char *var = xstrndup(name + 4, len - 4);
            const char *v = getenv(var);

            free(var);
            if (v == NULL) {
                snprintf(err, errlen, "environment variable %.*s is not set", (int)len - 4,
                         name + 4);
                buf_cleanup(&b);
                return -EINVAL;
            }
            buf_append(&b, v, strlen(v));
        } else if (is_late(name, len)) {
            buf_append(&b, open, len + 3);
        } else {
            snprintf(err, errlen, "unknown macro ${%.*s} (define it under macros:)", (int)len,
                     name);
            buf_cleanup(&b);
            return -EINVAL;
        }
        p = close + 1;
    }
    *out = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return 0;
}

char *
swapconf_subst(const char *in, const char *key, const char *value)
{
    const struct proc_var v = {key, value};

    return proc_argv_subst(in, &v, 1);
}

/* Reads name: value pairs into *out; each value is expanded against the macros already read
 * there, then against outer (the global ones, for a model's own). */
static int
read_macros(struct yctx *y, const yaml_node_t *n, const char *where, const struct conf_macro *outer,
            size_t n_outer, struct conf_macro **out, size_t *n_out)
{
    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, where, "expected a mapping of name: value");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = ynode(y, p->key), *vn = ynode(y, p->value);
        char msg[256], *value = NULL;
        struct conf_macro *all = xcalloc(*n_out + n_outer + 1, sizeof(*all));
        int rc;

        if (kn->type != YAML_SCALAR_NODE || vn->type != YAML_SCALAR_NODE) {
            free(all);
            return yerr(y, kn, where, "expected name: string");
        }
        if (*n_out > 0)
            memcpy(all, *out, *n_out * sizeof(*all));
        if (n_outer > 0)
            memcpy(all + *n_out, outer, n_outer * sizeof(*all));
        rc = swapconf_expand((char *)vn->data.scalar.value, all, *n_out + n_outer, &value, msg,
                             sizeof(msg));
        free(all);
        if (rc < 0)
            return yerr(y, vn, (char *)kn->data.scalar.value, msg);
        *out = xrealloc(*out, (*n_out + 1) * sizeof(**out));
        (*out)[*n_out].name = xstrdup((char *)kn->data.scalar.value);
        (*out)[(*n_out)++].value = value;
    }
    return 0;
}

int
swapconf_set_macros(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct swapconf *s = obj;

    return read_macros(y, n, k->name, NULL, 0, &s->macros, &s->n_macros);
}

/* A model's own macros, over the global ones (which must come first in the file, as in
 * llama-swap's examples). */
static int
set_model_macros(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct conf_model *m = obj;
    const struct swapconf *s = &((struct conf *)y->user)->swap;

    return read_macros(y, n, k->name, s->macros, s->n_macros, &m->macros, &m->n_macros);
}

/* ---- models ---- */

static int
set_filters(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {YKEY_STRING("strip_params", struct conf_model, strip_params),
                                       YKEY_STRING("stripParams", struct conf_model, strip_params),
                                       YKEY_IGNORED("setParams"),
                                       YKEY_IGNORED("setParamsByID"),
                                       {NULL, NULL, 0}};

    (void)k;
    return ymap(y, n, "filters", keys, obj);
}

char *
swapconf_clean_cmd(const char *in)
{
    struct buf b;
    char *out;

    buf_init(&b, SIZE_MAX);
    while (in != NULL && *in != '\0') {
        size_t len = strcspn(in, "\n"), skip = strspn(in, " \t");
        const char *next = in[len] ? in + len + 1 : in + len;

        if (skip < len && in[skip] != '#') { /* a comment line goes, whole */
            while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t' || in[len - 1] == '\r'))
                len--;
            if (len > 0 && in[len - 1] == '\\') /* continued: the lines join */
                len--;
            if (b.len > 0)
                buf_append(&b, " ", 1);
            buf_append(&b, in, len);
        }
        in = next;
    }
    out = xstrdup(b.len ? buf_cstr(&b) : "");
    buf_cleanup(&b);
    return out;
}

/* cmd and cmdStop as llama-swap reads them: "# ..." lines dropped, "\" continuations joined. */
static int
set_cmd(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    char **field = (char **)((char *)obj + k->off), *raw = NULL;
    int rc = ystring(y, n, k->name, &raw);

    if (rc < 0)
        return rc;
    free(*field);
    *field = swapconf_clean_cmd(raw);
    free(raw);
    return 0;
}

/* Seconds idle before the model stops; 0 never; -1 is llama-swap's "the global default", which
 * is never here until globalTTL is implemented. */
static int
set_ttl(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct conf_model *m = obj;
    const char *v = (const char *)n->data.scalar.value;
    char *end;
    long long ttl;

    (void)k;
    if (n->type != YAML_SCALAR_NODE)
        return yerr(y, n, "ttl", "expected seconds (a number; -1 for the default)");
    ttl = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || ttl < -1)
        return yerr(y, n, "ttl", "expected seconds (a number; -1 for the default)");
    m->ttl = ttl < 0 ? 0 : (uint64_t)ttl;
    return 0;
}

/* The model's own sendLoadingState, remembered as set so the global one does not override it. */
static int
set_send_loading(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct conf_model *m = obj;
    int rc = ybool_key(y, n, k, obj);

    m->send_loading_state_set = rc == 0;
    return rc;
}

static int
ignore_value(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    (void)y, (void)n, (void)k, (void)obj;
    return 0;
}

static const struct ykey model_keys[] = {
    YKEY_AT("cmd", set_cmd, struct conf_model, cmd),
    YKEY_AT("cmdStop", set_cmd, struct conf_model, cmd_stop),
    YKEY_STRING("proxy", struct conf_model, proxy),
    YKEY_STRING("checkEndpoint", struct conf_model, check_endpoint),
    YKEY_STRING("description", struct conf_model, description),
    YKEY_STRING("name", struct conf_model, display_name),
    YKEY_STRING("useModelName", struct conf_model, use_model_name),
    YKEY_LIST("aliases", struct conf_model, aliases),
    YKEY_LIST("env", struct conf_model, env),
    {"ttl", set_ttl, 0},
    YKEY_BOOL("unlisted", struct conf_model, unlisted),
    YKEY_U64("concurrencyLimit", struct conf_model, concurrency_limit),
    {"filters", set_filters, 0},
    {"metadata", ignore_value, 0},
    {"macros", set_model_macros, 0},
    YKEY_IGNORED("unloadTimeout"),
    YKEY_IGNORED("compat"),
    YKEY_IGNORED("timeouts"),
    YKEY_IGNORED("capabilities"),
    YKEY_AT("sendLoadingState", set_send_loading, struct conf_model, send_loading_state),
    {NULL, NULL, 0},
};

/* Expands the macros of one model's string fields, naming the model and key on error. */
static int
expand_model(struct yctx *y, const yaml_node_t *n, struct swapconf *s, struct conf_model *m)
{
    char **fields[] = {&m->cmd, &m->cmd_stop, &m->proxy, &m->check_endpoint};
    char msg[256];
    size_t n_all = m->n_macros + s->n_macros;
    struct conf_macro *all = xcalloc(n_all + 1, sizeof(*all)); /* its own first: they win */

    if (m->n_macros > 0)
        memcpy(all, m->macros, m->n_macros * sizeof(*all));
    if (s->n_macros > 0)
        memcpy(all + m->n_macros, s->macros, s->n_macros * sizeof(*all));
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char *out = NULL;

        if (*fields[i] == NULL)
            continue;
        if (swapconf_expand(*fields[i], all, n_all, &out, msg, sizeof(msg)) < 0) {
            free(all);
            return yerr(y, n, m->name, msg);
        }
        free(*fields[i]);
        *fields[i] = out;
    }
    free(all);
    if (m->cmd == NULL)
        return yerr(y, n, m->name, "cmd is required (the command that starts the server)");
    if (m->proxy == NULL)
        m->proxy = xstrdup("http://127.0.0.1:${PORT}");
    if (m->check_endpoint == NULL)
        m->check_endpoint = xstrdup("/health");
    return 0;
}

int
swapconf_set_models(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct swapconf *s = obj;

    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, k->name, "expected a mapping of model name to its settings");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = ynode(y, p->key), *vn = ynode(y, p->value);
        struct conf_model *m;
        int rc;

        if (kn->type != YAML_SCALAR_NODE)
            return yerr(y, kn, "models", "model names must be strings");
        s->models = xrealloc(s->models, (s->n_models + 1) * sizeof(*s->models));
        m = &s->models[s->n_models++];
        memset(m, 0, sizeof(*m));
        m->name = xstrdup((char *)kn->data.scalar.value);
        rc = ymap(y, vn, m->name, model_keys, m);
        if (rc == 0)
            rc = expand_model(y, vn, s, m);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- groups and hooks ---- */

static const struct ykey group_keys[] = {
    YKEY_BOOL("swap", struct conf_group, swap),
    YKEY_BOOL("exclusive", struct conf_group, exclusive),
    YKEY_BOOL("persistent", struct conf_group, persistent),
    YKEY_LIST("members", struct conf_group, members),
    {NULL, NULL, 0},
};

int
swapconf_set_groups(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct swapconf *s = obj;

    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, k->name, "expected a mapping of group name to its settings");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = ynode(y, p->key), *vn = ynode(y, p->value);
        struct conf_group *g;

        if (kn->type != YAML_SCALAR_NODE)
            return yerr(y, kn, "groups", "group names must be strings");
        s->groups = xrealloc(s->groups, (s->n_groups + 1) * sizeof(*s->groups));
        g = &s->groups[s->n_groups++];
        memset(g, 0, sizeof(*g));
        g->name = xstrdup((char *)kn->data.scalar.value);
        g->swap = g->exclusive = true; /* llama-swap's defaults */
        if (ymap(y, vn, g->name, group_keys, g) < 0)
            return -EINVAL;
    }
    return 0;
}

static int
set_on_startup(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {YKEY_LIST("preload", struct swapconf, preload),
                                       {NULL, NULL, 0}};

    (void)k;
    return ymap(y, n, "hooks.on_startup", keys, obj);
}

int
swapconf_set_hooks(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {{"on_startup", set_on_startup, 0}, {NULL, NULL, 0}};

    (void)k;
    return ymap(y, n, "hooks", keys, obj);
}

/* ---- whole-file checks ---- */

static const struct conf_model *
find_model(const struct swapconf *s, const char *name)
{
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0)
            return &s->models[i];
    return NULL;
}

static int
check_groups(const struct swapconf *s, char *err, size_t errlen)
{
    for (size_t g = 0; g < s->n_groups; g++) {
        for (char **m = s->groups[g].members; m && *m; m++) {
            /* a member may be a discovered model: the catalog warns about the unknown */
            for (size_t h = 0; h < g; h++)
                for (char **o = s->groups[h].members; o && *o; o++)
                    if (strcmp(*o, *m) == 0) {
                        snprintf(err, errlen,
                                 "model %s is in groups %s and %s; a model belongs "
                                 "to one group",
                                 *m, s->groups[h].name, s->groups[g].name);
                        return -EINVAL;
                    }
        }
    }
    return 0;
}

static int
check_aliases(const struct swapconf *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->n_models; i++) {
        for (char **a = s->models[i].aliases; a && *a; a++) {
            const struct conf_model *clash = find_model(s, *a);

            for (size_t j = 0; clash == NULL && j < i; j++)
                for (char **b = s->models[j].aliases; b && *b; b++)
                    if (strcmp(*a, *b) == 0)
                        clash = &s->models[j];
            if (clash != NULL) {
                snprintf(err, errlen, "alias %s of model %s is already taken by %s", *a,
                         s->models[i].name, clash->name);
                return -EINVAL;
            }
        }
    }
    return 0;
}

int
swapconf_validate(const struct swapconf *s, char *err, size_t errlen)
{
    if (check_groups(s, err, errlen) < 0 || check_aliases(s, err, errlen) < 0)
        return -EINVAL;
    return 0;
}

void
swapconf_cleanup(struct swapconf *s)
{
    for (size_t i = 0; i < s->n_macros; i++) {
        free(s->macros[i].name);
        free(s->macros[i].value);
    }
    for (size_t i = 0; i < s->n_models; i++) {
        struct conf_model *m = &s->models[i];

        free(m->name), free(m->cmd), free(m->cmd_stop), free(m->proxy);
        free(m->check_endpoint), free(m->description), free(m->display_name);
        free(m->use_model_name), free(m->strip_params), free(m->metadata_unused);
        strv_free(m->aliases);
        strv_free(m->env);
        for (size_t k = 0; k < m->n_macros; k++) {
            free(m->macros[k].name);
            free(m->macros[k].value);
        }
        free(m->macros);
    }
    for (size_t i = 0; i < s->n_groups; i++) {
        free(s->groups[i].name);
        strv_free(s->groups[i].members);
    }
    free(s->macros), free(s->models), free(s->groups);
    strv_free(s->preload);
    free(s->log_level);
    memset(s, 0, sizeof(*s));
}
