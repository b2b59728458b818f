#include "conf.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "router/router.h"

/* ---- pure helpers ---- */

static int
service_bit(const char *w, size_t n)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"goinfer", ROUTER_SVC_GOINFER},
                 {"openai", ROUTER_SVC_OPENAI},
                 {"llama-swap", ROUTER_SVC_OPENAI},
                 {"admin", ROUTER_SVC_ADMIN}};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i].name) == n && strncmp(names[i].name, w, n) == 0)
            return (int)names[i].bit;
    return -1;
}

static int
parse_services(const char *s, unsigned *out, char *err, size_t errlen)
{
    const char *p = s;

    *out = 0;
    while (*p) {
        size_t n;
        int bit;

        p += strspn(p, ", \t");
        n = strcspn(p, ", \t");
        if (n == 0)
            break;
        bit = service_bit(p, n);
        if (bit < 0) {
            snprintf(err, errlen, "unknown service '%.*s' (use goinfer, openai, llama-swap, admin)",
                     (int)n, p);
            return -EINVAL;
        }
        *out |= (unsigned)bit;
        p += n;
    }
    if (*out == 0) {
        snprintf(err, errlen, "no service named (use goinfer, openai, llama-swap, admin)");
        return -EINVAL;
    }
    return 0;
}

int
conf_parse_listen(const char *addr, const char *services, const char *default_host,
                  struct conf_listen *out, char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    long port;
    size_t hlen;

    if (colon == NULL || colon[1] == '\0') {
        snprintf(err, errlen, "'%s': expected host:port or :port", addr);
        return -EINVAL;
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        snprintf(err, errlen, "'%s': port must be a number from 0 to 65535", addr);
        return -EINVAL;
    }
    hlen = (size_t)(colon - addr);
    if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') /* [::1]:4444 */
        addr++, hlen -= 2;
    if (parse_services(services, &out->services, err, errlen) < 0)
        return -EINVAL;
    out->host = hlen ? xstrndup(addr, hlen) : xstrdup(default_host);
    out->port = (int)port;
    return 0;
}

int
conf_split_args(const char *s, char ***out)
{
    char **v = xcalloc(1, sizeof(*v));
    size_t n = 0;
    struct buf w;

    buf_init(&w, 1 << 20);
    while (s && *s) {
        char q = 0;

        s += strspn(s, " \t\n");
        if (*s == '\0')
            break;
        buf_reset(&w);
        for (; *s && (q || (*s != ' ' && *s != '\t' && *s != '\n')); s++) {
            if (q == 0 && (*s == '\'' || *s == '"'))
                q = *s;
            else if (q != 0 && *s == q)
                q = 0;
            else if (*s == '\\' && q != '\'' && s[1])
                buf_append(&w, ++s, 1);
            else
                buf_append(&w, s, 1);
        }
        if (q != 0) {
            buf_cleanup(&w);
            conf_free_args(v);
            *out = NULL;
            return -EINVAL;
        }
        v = xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = xstrdup(buf_cstr(&w));
        v[n] = NULL;
    }
    buf_cleanup(&w);
    *out = v;
    return (int)n;
}

void
conf_free_args(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* ---- goinfer.yml ---- */

struct yctx {
    yaml_document_t *doc;
    const char *file;
    struct conf *c;
    char *err;
    size_t errlen;
};

static int
yerr(struct yctx *y, const yaml_node_t *n, const char *key, const char *what)
{
    snprintf(y->err, y->errlen, "%s:%zu: %s: %s", y->file, n->start_mark.line + 1, key, what);
    return -EINVAL;
}

static int
ystring(struct yctx *y, const yaml_node_t *n, const char *key, char **out)
{
    if (n->type != YAML_SCALAR_NODE)
        return yerr(y, n, key, "expected a string");
    free(*out);
    *out = xstrndup((const char *)n->data.scalar.value, n->data.scalar.length);
    return 0;
}

struct ykey;
typedef int (*ykey_cb)(struct yctx *y, const yaml_node_t *n, const struct ykey *key);

/* A directive: its name, its handler, and for plain strings the field it sets. */
struct ykey {
    const char *name;
    ykey_cb set;
    size_t off;
};

/* Sets the char * field of struct conf at key->off. */
static int
set_string(struct yctx *y, const yaml_node_t *n, const struct ykey *key)
{
    return ystring(y, n, key->name, (char **)((char *)y->c + key->off));
}

#define STRING_KEY(name, field) {name, set_string, offsetof(struct conf, field)}

/* Applies a table of keys to a mapping; an unknown key is an error naming the known ones. */
static int
ymap(struct yctx *y, const yaml_node_t *n, const char *where, const struct ykey *keys)
{
    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, where, "expected a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
        const struct ykey *e = keys;
        char *name;
        int rc;

        if (k->type != YAML_SCALAR_NODE)
            return yerr(y, k, where, "keys must be strings");
        name = (char *)k->data.scalar.value;
        while (e->name && strcmp(e->name, name) != 0)
            e++;
        if (e->name == NULL) {
            struct buf known;

            buf_init(&known, 4096);
            for (e = keys; e->name; e++)
                buf_printf(&known, "%s%s", e == keys ? "" : ", ", e->name);
            snprintf(y->err, y->errlen, "%s:%zu: unknown key '%s' in %s (known: %s)", y->file,
                     k->start_mark.line + 1, name, where, buf_cstr(&known));
            buf_cleanup(&known);
            return -EINVAL;
        }
        rc = e->set(y, v, e);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void
add_origin(struct conf *c, const char *s, size_t n)
{
    c->origins = xrealloc(c->origins, (c->n_origins + 1) * sizeof(*c->origins));
    c->origins[c->n_origins++] = xstrndup(s, n);
}

static int
set_origins(struct yctx *y, const yaml_node_t *n, const struct ykey *key)
{
    const char *k = key->name;

    if (n->type == YAML_SCALAR_NODE) {
        if (n->data.scalar.length > 0)
            add_origin(y->c, (char *)n->data.scalar.value, n->data.scalar.length);
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(y, n, k, "expected a list of origins");
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
         i++) {
        yaml_node_t *e = yaml_document_get_node(y->doc, *i);

        if (e->type != YAML_SCALAR_NODE)
            return yerr(y, e, k, "expected an origin such as https://app.example.com");
        add_origin(y->c, (char *)e->data.scalar.value, e->data.scalar.length);
    }
    return 0;
}

static int
set_listen(struct yctx *y, const yaml_node_t *n, const struct ykey *key)
{
    const char *k = key->name;
    char msg[256];

    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, k, "expected a mapping of address to services, e.g. \":4444\": goinfer");
    y->c->n_listen = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *a = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *s = yaml_document_get_node(y->doc, p->value);

        if (a->type != YAML_SCALAR_NODE || s->type != YAML_SCALAR_NODE)
            return yerr(y, a, k, "expected \"host:port\": services");
        if (y->c->n_listen == CONF_MAX_LISTEN)
            return yerr(y, a, k, "too many addresses");
        if (conf_parse_listen((char *)a->data.scalar.value, (char *)s->data.scalar.value,
                              y->c->host, &y->c->listen[y->c->n_listen], msg, sizeof(msg)) < 0)
            return yerr(y, a, k, msg);
        y->c->n_listen++;
    }
    return 0;
}

static int
set_args(struct yctx *y, const yaml_node_t *n, const struct ykey *key)
{
    static const struct ykey keys[] = {
        STRING_KEY("common", args_common), STRING_KEY("goinfer", args_goinfer),
        STRING_KEY("verbose", args_verbose), STRING_KEY("debug", args_debug), {NULL, NULL, 0}};

    (void)key;
    return ymap(y, n, "llama.args", keys);
}

static int
set_llama(struct yctx *y, const yaml_node_t *n, const struct ykey *key)
{
    static const struct ykey keys[] = {
        STRING_KEY("exe", llama_exe), {"args", set_args, 0}, {NULL, NULL, 0}};

    (void)key;
    return ymap(y, n, "llama", keys);
}

static const struct ykey top_keys[] = {
    STRING_KEY("models_dir", models_dir), STRING_KEY("api_key", api_key),
    {"origins", set_origins, 0},          {"listen", set_listen, 0},
    {"llama", set_llama, 0},              STRING_KEY("default_model", default_model),
    {NULL, NULL, 0}};

static int
load_file(struct conf *c, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    struct yctx y = {&doc, file, c, err, errlen};
    int rc = 0;

    if (f == NULL) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return rc;
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%zu: %s", file, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "invalid YAML");
        rc = -EINVAL;
        goto out_parser;
    }
    root = yaml_document_get_root_node(&doc);
    if (root != NULL)
        rc = ymap(&y, root, "goinfer.yml", top_keys);
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
    fclose(f);
    free(c->file);
    c->file = xstrdup(file);
    return rc;
}

/* ---- environment and flags ---- */

static void
env_string(const char *name, char **out)
{
    const char *v = getenv(name);

    if (v != NULL && *v != '\0') {
        free(*out);
        *out = xstrdup(v);
    }
}

static void
apply_env(struct conf *c)
{
    const char *origins = getenv("GI_ORIGINS");

    env_string("GI_MODELS_DIR", &c->models_dir);
    env_string("GI_LLAMA_EXE", &c->llama_exe);
    env_string("GI_API_KEY", &c->api_key);
    env_string("GI_DEFAULT_MODEL", &c->default_model);
    if (origins != NULL) { /* set, even empty, replaces the file's list */
        for (size_t i = 0; i < c->n_origins; i++)
            free(c->origins[i]);
        c->n_origins = 0;
        for (const char *p = origins; *p;) {
            size_t n;

            p += strspn(p, ", ");
            n = strcspn(p, ", ");
            if (n > 0)
                add_origin(c, p, n);
            p += n;
        }
    }
}

struct flags {
    const char *config;
    bool debug, no_api_key, quiet, help;
};

static void
usage(void)
{
    fprintf(stderr,
            "usage: goinfer [-config goinfer.yml] [-no-api-key] [-debug] [-q]\n"
            "  -config FILE   configuration file (default ./goinfer.yml when present)\n"
            "  -no-api-key    serve without an API key (only on a private machine)\n"
            "  -debug         debug logs, including llama-server's output\n"
            "  -q             quiet: warnings and errors only\n"
            "environment: GI_MODELS_DIR GI_LLAMA_EXE GI_API_KEY GI_HOST GI_ORIGINS "
            "GI_DEFAULT_MODEL GOINFER_CACHE\n");
}

static int
parse_flags(struct flags *f, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i] + (strncmp(argv[i], "--", 2) == 0 ? 2 : 1);

        if (argv[i][0] != '-') {
            snprintf(err, errlen, "unexpected argument '%s' (see goinfer -help)", argv[i]);
            return -EINVAL;
        }
        if (strcmp(a, "config") == 0 && i + 1 < argc)
            f->config = argv[++i];
        else if (strncmp(a, "config=", 7) == 0)
            f->config = a + 7;
        else if (strcmp(a, "debug") == 0)
            f->debug = true;
        else if (strcmp(a, "no-api-key") == 0)
            f->no_api_key = true;
        else if (strcmp(a, "q") == 0)
            f->quiet = true;
        else if (strcmp(a, "h") == 0 || strcmp(a, "help") == 0)
            f->help = true;
        else {
            snprintf(err, errlen, "unknown flag '%s' (see goinfer -help)", argv[i]);
            return -EINVAL;
        }
    }
    return 0;
}

static void
default_listen(struct conf *c)
{
    char err[128];

    conf_parse_listen(":4444", "goinfer", c->host, &c->listen[0], err, sizeof(err));
    conf_parse_listen(":5555", "openai", c->host, &c->listen[1], err, sizeof(err));
    c->n_listen = 2;
}

int
conf_load(struct conf *c, int argc, char **argv, char *err, size_t errlen)
{
    struct flags f = {0};
    const char *host = getenv("GI_HOST");
    int rc;

    memset(c, 0, sizeof(*c));
    rc = parse_flags(&f, argc, argv, err, errlen);
    if (rc < 0)
        return rc;
    if (f.help) {
        usage();
        return 1;
    }
    c->host = xstrdup(host && *host ? host : "127.0.0.1");
    if (f.config == NULL && access("goinfer.yml", F_OK) == 0)
        f.config = "goinfer.yml";
    if (f.config != NULL) {
        rc = load_file(c, f.config, err, errlen);
        if (rc < 0)
            return rc;
    }
    apply_env(c);
    c->debug = f.debug;
    c->quiet = f.quiet;
    c->no_api_key = f.no_api_key;
    if (c->n_listen == 0)
        default_listen(c);
    return 0;
}

void
conf_cleanup(struct conf *c)
{
    free(c->file);
    free(c->models_dir);
    if (c->api_key)
        explicit_bzero(c->api_key, strlen(c->api_key));
    free(c->api_key);
    for (size_t i = 0; i < c->n_origins; i++)
        free(c->origins[i]);
    free(c->origins);
    for (size_t i = 0; i < c->n_listen; i++)
        free(c->listen[i].host);
    free(c->llama_exe);
    free(c->args_common);
    free(c->args_goinfer);
    free(c->args_verbose);
    free(c->args_debug);
    free(c->default_model);
    free(c->host);
    memset(c, 0, sizeof(*c));
}
