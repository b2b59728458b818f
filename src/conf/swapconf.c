#include "swapconf.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/sections.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "proc/argv.h"

static bool
strv_has(char *const *v, const char *s)
{
    for (; v != NULL && *v != NULL; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

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

/* ---- filters: setParams values as JSON ---- */

#define JSON_DEPTH_MAX 32

/* A scalar as YAML 1.2's core schema types it (what llama-swap's Go YAML reader gives):
 * quoted is a string; plain null, booleans, integers and finite numbers are typed. */
static json_t *
typed_json(const char *v, size_t len, bool plain)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    static const char *const trues[] = {"true", "True", "TRUE"};
    static const char *const falses[] = {"false", "False", "FALSE"};
    char *end = NULL;

    if (!plain)
        return json_stringn(v, len);
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(v, nulls[i]) == 0)
            return json_null();
    for (size_t i = 0; i < 3; i++)
        if (strcmp(v, trues[i]) == 0 || strcmp(v, falses[i]) == 0)
            return json_boolean(strcmp(v, trues[i]) == 0);
    if (strchr("+-.0123456789", v[0]) != NULL) {
        long long i;
        double d;

        errno = 0;
        i = strtoll(v, &end, 10);
        if (*end == '\0' && errno == 0)
            return json_integer(i);
        d = strtod(v, &end);
        if (*end == '\0' && isfinite(d))
            return json_real(d);
    }
    return json_stringn(v, len);
}

static json_t *
scalar_json(const yaml_node_t *n)
{
    return typed_json((const char *)n->data.scalar.value, n->data.scalar.length,
                      n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
}

/* Any YAML value as JSON; NULL (with y's error set) past JSON_DEPTH_MAX or for a key that is
 * not a string. */
static json_t *
yaml_json(struct yctx *y, const yaml_node_t *n, const char *where, int depth)
{
    json_t *j;

    if (depth > JSON_DEPTH_MAX) {
        yerr(y, n, where, "nested too deep");
        return NULL;
    }
    if (n->type == YAML_SCALAR_NODE)
        return scalar_json(n);
    if (n->type == YAML_SEQUENCE_NODE) {
        j = json_array();
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
             i++) {
            json_t *e = yaml_json(y, ynode(y, *i), where, depth + 1);

            if (e == NULL) {
                json_decref(j);
                return NULL;
            }
            json_array_append_new(j, e);
        }
        return j;
    }
    j = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = ynode(y, p->key);
        json_t *e = kn->type == YAML_SCALAR_NODE
                        ? yaml_json(y, ynode(y, p->value), where, depth + 1)
                        : NULL;

        if (e == NULL) {
            if (kn->type != YAML_SCALAR_NODE)
                yerr(y, kn, where, "keys must be strings");
            json_decref(j);
            return NULL;
        }
        json_object_set_new(j, (const char *)kn->data.scalar.value, e);
    }
    return j;
}

/* setParams (depth 1: key: value) and setParamsByID (depth 2: id: {key: value}) as JSON text. */
static int
set_json_params(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    char **field = (char **)((char *)obj + k->off);
    bool by_id = strcmp(k->name, "setParamsByID") == 0;
    json_t *j;

    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, k->name,
                    by_id ? "expected a mapping of model id to parameters"
                          : "expected a mapping of request key to value");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; by_id && p < n->data.mapping.pairs.top;
         p++)
        if (ynode(y, p->value)->type != YAML_MAPPING_NODE)
            return yerr(y, ynode(y, p->value), k->name,
                        "expected a mapping of request key to value for each id");
    j = yaml_json(y, n, k->name, 0);
    if (j == NULL)
        return -EINVAL;
    free(*field);
    *field = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return 0;
}

/* metadata: any YAML value, kept as JSON text for /v1/models (macros filled in later). */
static int
set_metadata(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    char **field = (char **)((char *)obj + k->off);
    json_t *j = yaml_json(y, n, k->name, 0);

    if (j == NULL)
        return -EINVAL;
    free(*field);
    *field = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return 0;
}

static const struct ykey filter_keys[] = {
    YKEY_STRING("strip_params", struct conf_filters, strip_params),
    YKEY_STRING("stripParams", struct conf_filters, strip_params),
    YKEY_AT("setParams", set_json_params, struct conf_filters, set_params),
    YKEY_AT("setParamsByID", set_json_params, struct conf_filters, set_params_by_id),
    {NULL, NULL, 0}};

/* A model's or a peer's filters: obj + k->off is its struct conf_filters. */
static int
set_filters(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    return ymap(y, n, "filters", filter_keys, (char *)obj + k->off);
}

static void
filters_cleanup(struct conf_filters *f)
{
    free(f->strip_params), free(f->set_params), free(f->set_params_by_id);
}

/* ---- models ---- */

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

/* Seconds idle before the model stops; 0 never; -1 (as no ttl at all) is llama-swap's "the
 * global default": globalTTL. */
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
    m->ttl_default = ttl < 0;
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

/* capabilities.in/out: only the modalities llama-swap knows. */
static int
set_modalities(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    char ***field = (char ***)((char *)obj + k->off);
    int rc = ylist_key(y, n, k, obj);

    for (char **m = *field; rc == 0 && m && *m; m++)
        if (strcmp(*m, "text") && strcmp(*m, "audio") && strcmp(*m, "image"))
            return yerr(y, n, k->name, "a modality is one of: text, audio, image");
    return rc;
}

static int
set_caps(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {YKEY_AT("in", set_modalities, struct conf_caps, in),
                                       YKEY_AT("out", set_modalities, struct conf_caps, out),
                                       YKEY_BOOL("tools", struct conf_caps, tools),
                                       YKEY_BOOL("reranker", struct conf_caps, reranker),
                                       YKEY_U64("context", struct conf_caps, context),
                                       {NULL, NULL, 0}};

    (void)k;
    return ymap(y, n, "capabilities", keys, &((struct conf_model *)obj)->caps);
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
    YKEY_AT("filters", set_filters, struct conf_model, filters),
    YKEY_AT("metadata", set_metadata, struct conf_model, metadata),
    {"macros", set_model_macros, 0},
    YKEY_IGNORED("unloadTimeout"),
    YKEY_IGNORED("compat"),
    YKEY_IGNORED("timeouts"),
    {"capabilities", set_caps, 0},
    YKEY_AT("sendLoadingState", set_send_loading, struct conf_model, send_loading_state),
    YKEY_STRING("fallback", struct conf_model, fallback),
    {NULL, NULL, 0},
};

/* A string of a filter: macros (the model's, then the global ones) and ${MODEL_ID} filled in.
 * Returns a new string, or NULL with msg. */
static char *
expand_value(const char *in, const struct conf_macro *all, size_t n_all, const char *model,
             char *msg, size_t msglen)
{
    char *out = NULL, *sub;

    if (swapconf_expand(in, all, n_all, &out, msg, msglen) < 0)
        return NULL;
    sub = swapconf_subst(out, "MODEL_ID", model);
    free(out);
    return sub;
}

/* j with every string value expanded as expand_value (keys stay as written, as llama-swap
 * leaves them); a string that is one macro, "${temp}", takes the macro's type (0.7 stays a
 * number), as llama-swap substitutes values. A new reference, or NULL with msg. */
static json_t *
expand_json(json_t *j, const struct conf_macro *all, size_t n_all, const char *model, char *msg,
            size_t msglen)
{
    const char *key;
    json_t *v, *out;
    size_t i;

    if (json_is_string(j)) {
        const char *in = json_string_value(j);
        bool whole = in[0] == '$' && in[1] == '{' && strchr(in, '}') == in + strlen(in) - 1;
        char *s = expand_value(in, all, n_all, model, msg, msglen);

        if (s == NULL)
            return NULL;
        out = whole && strcmp(s, in) != 0 ? typed_json(s, strlen(s), true) : json_string(s);
        free(s);
        return out;
    }
    if (!json_is_array(j) && !json_is_object(j))
        return json_incref(j);
    out = json_is_array(j) ? json_array() : json_object();
    json_array_foreach (j, i, v) {
        json_t *e = expand_json(v, all, n_all, model, msg, msglen);

        if (e == NULL)
            return json_decref(out), NULL;
        json_array_append_new(out, e);
    }
    json_object_foreach (j, key, v) {
        json_t *e = expand_json(v, all, n_all, model, msg, msglen);

        if (e == NULL)
            return json_decref(out), NULL;
        json_object_set_new(out, key, e);
    }
    return out;
}

/* A JSON text field (setParams, metadata) with expand_json applied. Returns 0 or -EINVAL. */
static int
expand_json_text(char **text, const struct conf_macro *all, size_t n_all, const char *model,
                 char *msg, size_t msglen)
{
    json_t *in = *text ? json_loads(*text, JSON_DECODE_ANY, NULL) : NULL, *out;

    if (in == NULL)
        return 0;
    out = expand_json(in, all, n_all, model, msg, msglen);
    json_decref(in);
    if (out == NULL)
        return -EINVAL;
    free(*text);
    *text = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(out);
    return 0;
}

/* setParams values and setParamsByID ids and values get the model's macros; each id becomes
 * an alias of the model, as llama-swap registers them (the model's own name excepted). */
static int
expand_filters(struct conf_model *m, const struct conf_macro *all, size_t n_all, char *msg,
               size_t msglen)
{
    json_t *by_id =
        m->filters.set_params_by_id ? json_loads(m->filters.set_params_by_id, 0, NULL) : NULL;
    json_t *ids = json_object(), *v;
    const char *key;
    int rc = expand_json_text(&m->filters.set_params, all, n_all, m->name, msg, msglen);

    json_object_foreach (by_id, key, v) {
        char *id = rc == 0 ? expand_value(key, all, n_all, m->name, msg, msglen) : NULL;
        json_t *e = id != NULL ? expand_json(v, all, n_all, m->name, msg, msglen) : NULL;

        if (e == NULL) {
            free(id);
            rc = -EINVAL;
            break;
        }
        json_object_set_new(ids, id, e);
        if (strcmp(id, m->name) != 0 && !strv_has(m->aliases, id))
            strv_add(&m->aliases, id, strlen(id));
        free(id);
    }
    if (rc == 0 && by_id != NULL) {
        free(m->filters.set_params_by_id);
        m->filters.set_params_by_id = json_dumps(ids, JSON_COMPACT);
    }
    json_decref(by_id), json_decref(ids);
    return rc;
}

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
    if (expand_filters(m, all, n_all, msg, sizeof(msg)) < 0 ||
        expand_json_text(&m->metadata, all, n_all, m->name, msg, sizeof(msg)) < 0) {
        free(all);
        return yerr(y, n, m->name, msg);
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
        m->ttl_default = true;
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

/* ---- routing: llama-swap's canonical place for groups ---- */

static int
set_router_use(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    (void)obj;
    if (n->type != YAML_SCALAR_NODE)
        return yerr(y, n, k->name, "expected group or matrix");
    if (strcmp((const char *)n->data.scalar.value, "group") != 0)
        ywarn(y, n,
              "routing.router.use: %s is llama-swap's and Goinfer does not implement it yet; "
              "groups decide",
              (const char *)n->data.scalar.value);
    return 0;
}

static int
set_router_settings(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {
        {"groups", swapconf_set_groups, 0}, YKEY_IGNORED("matrix"), {NULL, NULL, 0}};

    (void)k;
    return ymap(y, n, "routing.router.settings", keys, obj);
}

static int
set_router(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {
        {"use", set_router_use, 0}, {"settings", set_router_settings, 0}, {NULL, NULL, 0}};

    (void)k;
    return ymap(y, n, "routing.router", keys, obj);
}

int
swapconf_set_routing(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey keys[] = {
        {"router", set_router, 0}, YKEY_IGNORED("scheduler"), {NULL, NULL, 0}};

    (void)k;
    return ymap(y, n, "routing", keys, obj);
}

/* ---- apiKeys and peers ---- */

/* A secret as llama-swap reads it: ${env.NAME} and the global macros filled in. The error
 * names the macro, never the value. */
static int
expand_secret(struct yctx *y, const yaml_node_t *n, const char *key, const struct swapconf *s,
              char **field)
{
    char msg[256], *out = NULL;

    if (*field == NULL)
        return 0;
    if (swapconf_expand(*field, s->macros, s->n_macros, &out, msg, sizeof(msg)) < 0)
        return yerr(y, n, key, msg);
    explicit_bzero(*field, strlen(*field));
    free(*field);
    *field = out;
    return 0;
}

int
swapconf_set_api_keys(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    static const struct ykey list = YKEY_LIST("apiKeys", struct swapconf, api_keys);
    struct swapconf *s = obj;
    int rc = ylist_key(y, n, &list, s);

    for (size_t i = 0; rc == 0 && s->api_keys && s->api_keys[i]; i++) {
        rc = expand_secret(y, n, k->name, s, &s->api_keys[i]);
        if (rc == 0 && s->api_keys[i][0] == '\0')
            rc = yerr(y, n, k->name, "an API key is empty");
        else if (rc == 0 && strchr(s->api_keys[i], ' ') != NULL)
            rc = yerr(y, n, k->name, "an API key cannot contain spaces");
    }
    return rc;
}

/* headers: a mapping of header name to value, kept as "Name: value" lines; values may use
 * ${env.NAME} and the global macros. */
static int
set_peer_headers(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct conf_peer *peer = obj;
    size_t count = 0;

    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, k->name, "expected a mapping of header name to value");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = ynode(y, p->key), *vn = ynode(y, p->value);
        const char *name = (const char *)kn->data.scalar.value;

        if (kn->type != YAML_SCALAR_NODE || vn->type != YAML_SCALAR_NODE || name[0] == '\0' ||
            strpbrk(name, ": \r\n") != NULL ||
            strpbrk((const char *)vn->data.scalar.value, "\r\n") != NULL)
            return yerr(y, kn, k->name, "expected a header name and a one-line value");
        peer->headers = xrealloc(peer->headers, (count + 2) * sizeof(char *));
        peer->headers[count++] = xasprintf("%s: %s", name, (const char *)vn->data.scalar.value);
        peer->headers[count] = NULL;
    }
    return 0;
}

static const struct ykey peer_keys[] = {
    YKEY_STRING("proxy", struct conf_peer, proxy),
    YKEY_STRING("apiKey", struct conf_peer, api_key),
    YKEY_LIST("models", struct conf_peer, models),
    YKEY_AT("filters", set_filters, struct conf_peer, filters),
    YKEY_IGNORED("timeouts"),
    YKEY_STRING("apiKeyFile", struct conf_peer, api_key_file),
    YKEY_STRING("caFile", struct conf_peer, ca_file),
    {"headers", set_peer_headers, 0},
    YKEY_U64("retries", struct conf_peer, retries),
    YKEY_U64("modelsRefresh", struct conf_peer, models_refresh),
    YKEY_LIST("allow", struct conf_peer, allow),
    {NULL, NULL, 0},
};

/* apiKeyFile: the key is the file's content, surrounding whitespace trimmed. The error names
 * the file, never its content. */
static int
read_key_file(struct yctx *y, const yaml_node_t *n, struct conf_peer *p)
{
    char msg[512], data[4096];
    FILE *f;
    size_t len, start = 0;

    if (p->api_key_file == NULL)
        return 0;
    if (p->api_key != NULL)
        return yerr(y, n, p->name, "set apiKey or apiKeyFile, not both");
    f = fopen(p->api_key_file, "re");
    if (f == NULL) {
        snprintf(msg, sizeof(msg), "apiKeyFile %s: %s", p->api_key_file, strerror(errno));
        return yerr(y, n, p->name, msg);
    }
    len = fread(data, 1, sizeof(data) - 1, f);
    fclose(f);
    while (len > 0 && strchr(" \t\r\n", data[len - 1]) != NULL)
        len--;
    while (start < len && strchr(" \t\r\n", data[start]) != NULL)
        start++;
    if (start < len)
        p->api_key = xstrndup(data + start, len - start);
    explicit_bzero(data, sizeof(data));
    if (p->api_key == NULL || strpbrk(p->api_key, " \t\r\n") != NULL) {
        snprintf(msg, sizeof(msg), "apiKeyFile %s: expected one key on one line", p->api_key_file);
        return yerr(y, n, p->name, msg);
    }
    return 0;
}

/* A peer's proxy is required and http(s)://; models is not empty (llama-swap refuses both). */
static int
check_peer(struct yctx *y, const yaml_node_t *n, const struct swapconf *s, struct conf_peer *p)
{
    if (expand_secret(y, n, "apiKey", s, &p->api_key) < 0 ||
        expand_secret(y, n, "proxy", s, &p->proxy) < 0 ||
        expand_secret(y, n, "apiKeyFile", s, &p->api_key_file) < 0 ||
        expand_secret(y, n, "caFile", s, &p->ca_file) < 0)
        return -EINVAL;
    for (size_t i = 0; p->headers && p->headers[i]; i++)
        if (expand_secret(y, n, "headers", s, &p->headers[i]) < 0)
            return -EINVAL;
    if (read_key_file(y, n, p) < 0)
        return -EINVAL;
    if (p->api_key != NULL && p->api_key[0] == '\0') {
        free(p->api_key);
        p->api_key = NULL; /* llama-swap: blank adds no key */
    }
    if (p->proxy == NULL ||
        (strncmp(p->proxy, "http://", 7) != 0 && strncmp(p->proxy, "https://", 8) != 0))
        return yerr(y, n, p->name, "proxy is required: the peer's base URL, http://host:port");
    if (strv_len(p->models) == 0 && p->models_refresh == 0)
        return yerr(y, n, p->name,
                    "models can not be empty (the models the peer serves; or set modelsRefresh "
                    "to fetch them)");
    return 0;
}

int
swapconf_set_peers(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)
{
    struct swapconf *s = obj;

    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, k->name, "expected a mapping of peer id to its settings");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = ynode(y, p->key), *vn = ynode(y, p->value);
        struct conf_peer *peer;

        if (kn->type != YAML_SCALAR_NODE)
            return yerr(y, kn, "peers", "peer ids must be strings");
        s->peers = xrealloc(s->peers, (s->n_peers + 1) * sizeof(*s->peers));
        peer = &s->peers[s->n_peers++];
        memset(peer, 0, sizeof(*peer));
        peer->retries = 1;
        peer->name = xstrdup((char *)kn->data.scalar.value);
        if (ymap(y, vn, peer->name, peer_keys, peer) < 0 || check_peer(y, vn, s, peer) < 0)
            return -EINVAL;
    }
    return 0;
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

/* "<peer>/<model>" names are the peers' (llama-swap refuses a model or alias that takes one). */
static int
check_peer_names(const struct swapconf *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        for (char **m = s->peers[i].models; m && *m; m++) {
            size_t np = strlen(s->peers[i].name);

            for (size_t k = 0; k < s->n_models; k++) {
                const char *clash = NULL, *name = s->models[k].name;

                for (char **a = s->models[k].aliases; clash == NULL && a && *a; a++)
                    if (strncmp(*a, s->peers[i].name, np) == 0 && (*a)[np] == '/' &&
                        strcmp(*a + np + 1, *m) == 0)
                        clash = *a;
                if (strncmp(name, s->peers[i].name, np) == 0 && name[np] == '/' &&
                    strcmp(name + np + 1, *m) == 0)
                    clash = name;
                if (clash != NULL) {
                    snprintf(err, errlen,
                             "model %s: the name %s is peer %s's model %s (peers' names are "
                             "reserved)",
                             name, clash, s->peers[i].name, *m);
                    return -EINVAL;
                }
            }
        }
    }
    return 0;
}

/* A model's fallback names a peer's model: "<peer>/<model>", or a model id a peer lists. */
static int
check_fallbacks(const struct swapconf *s, char *err, size_t errlen)
{
    for (size_t k = 0; k < s->n_models; k++) {
        const char *fb = s->models[k].fallback;
        bool found = false;

        for (size_t i = 0; fb != NULL && !found && i < s->n_peers; i++) {
            size_t np = strlen(s->peers[i].name);

            for (char **m = s->peers[i].models; !found && m && *m; m++)
                found = strcmp(fb, *m) == 0 || (strncmp(fb, s->peers[i].name, np) == 0 &&
                                                fb[np] == '/' && strcmp(fb + np + 1, *m) == 0);
        }
        if (fb != NULL && !found) {
            snprintf(err, errlen, "model %s: fallback %s is no peer's model (peers: ... models:)",
                     s->models[k].name, fb);
            return -EINVAL;
        }
    }
    return 0;
}

int
swapconf_validate(const struct swapconf *s, char *err, size_t errlen)
{
    if (check_groups(s, err, errlen) < 0 || check_aliases(s, err, errlen) < 0 ||
        check_peer_names(s, err, errlen) < 0 || check_fallbacks(s, err, errlen) < 0)
        return -EINVAL;
    return 0;
}

void
swapconf_caps_cleanup(struct conf_caps *c)
{
    strv_free(c->in);
    strv_free(c->out);
    memset(c, 0, sizeof(*c));
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
        free(m->use_model_name), free(m->metadata), free(m->fallback);
        swapconf_caps_cleanup(&m->caps);
        filters_cleanup(&m->filters);
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
    for (size_t i = 0; i < s->n_peers; i++) {
        struct conf_peer *p = &s->peers[i];

        if (p->api_key != NULL)
            explicit_bzero(p->api_key, strlen(p->api_key));
        free(p->name), free(p->proxy), free(p->api_key);
        free(p->api_key_file), free(p->ca_file);
        strv_free(p->headers);
        strv_free(p->allow);
        strv_free(p->models);
        filters_cleanup(&p->filters);
    }
    for (size_t i = 0; s->api_keys && s->api_keys[i]; i++)
        explicit_bzero(s->api_keys[i], strlen(s->api_keys[i]));
    strv_free(s->api_keys);
    free(s->macros), free(s->models), free(s->groups), free(s->peers);
    strv_free(s->preload);
    free(s->log_level);
    memset(s, 0, sizeof(*s));
}
