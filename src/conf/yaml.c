#include "yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"

int
yerr(struct yctx *y, const yaml_node_t *n, const char *key, const char *what)
{
    snprintf(y->err, y->errlen, "%s:%zu: %s: %s", y->file, n->start_mark.line + 1, key, what);
    return -EINVAL;
}

void
ywarn(struct yctx *y, const yaml_node_t *n, const char *fmt, ...)
{
    char what[512], line[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap); /* a longer warning is cut, never lost */
    va_end(ap);
    snprintf(line, sizeof(line), "%s:%zu: %s", y->file, n->start_mark.line + 1, what);
    log_warnx("%s", line);
    strv_add(&y->warnings, line, strlen(line));
}

yaml_node_t *
ynode(struct yctx *y, int index)
{
    return yaml_document_get_node(y->doc, index);
}

int
ystring(struct yctx *y, const yaml_node_t *n, const char *key, char **out)
{
    if (n->type != YAML_SCALAR_NODE)
        return yerr(y, n, key, "expected a string");
    free(*out);
    *out = xstrndup((const char *)n->data.scalar.value, n->data.scalar.length);
    return 0;
}

static void *
field(void *obj, const struct ykey *key)
{
    return (char *)obj + key->off;
}

int
ystring_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    return ystring(y, n, key->name, field(obj, key));
}

int
ybool_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    const char *v = (const char *)n->data.scalar.value;

    if (n->type == YAML_SCALAR_NODE && (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)) {
        *(bool *)field(obj, key) = v[0] == 't';
        return 0;
    }
    return yerr(y, n, key->name, "expected true or false");
}

int
yu64_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    const char *v = (const char *)n->data.scalar.value;
    char *end = NULL;
    unsigned long long x;

    if (n->type != YAML_SCALAR_NODE || v[0] < '0' || v[0] > '9')
        return yerr(y, n, key->name, "expected a whole number");
    errno = 0;
    x = strtoull(v, &end, 10);
    if (*end != '\0' || errno != 0)
        return yerr(y, n, key->name, "expected a whole number");
    *(uint64_t *)field(obj, key) = x;
    return 0;
}

int
ylist_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    char ***v = field(obj, key);

    strv_free(*v);
    *v = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        if (n->data.scalar.length > 0)
            strv_add(v, (char *)n->data.scalar.value, n->data.scalar.length);
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(y, n, key->name, "expected a list");
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        yaml_node_t *e = ynode(y, *i);

        if (e->type != YAML_SCALAR_NODE)
            return yerr(y, e, key->name, "expected a list of strings");
        strv_add(v, (char *)e->data.scalar.value, e->data.scalar.length);
    }
    return 0;
}

int
yignored_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    (void)obj;
    ywarn(y, n, "%s is llama-swap's and Goinfer does not implement it yet; ignored", key->name);
    return 0;
}

static int
unknown_key(struct yctx *y, const yaml_node_t *k, const char *where, const struct ykey *keys)
{
    struct buf known;

    if (y->lenient) { /* llama-swap ignores what it does not know; so does its file here */
        ywarn(y, k, "unknown key '%s' in %s; ignored", (char *)k->data.scalar.value, where);
        return 0;
    }
    buf_init(&known, 4096);
    for (const struct ykey *e = keys; e->name; e++)
        buf_printf(&known, "%s%s", e == keys ? "" : ", ", e->name);
    snprintf(y->err, y->errlen, "%s:%zu: unknown key '%s' in %s (known: %s)", y->file,
             k->start_mark.line + 1, (char *)k->data.scalar.value, where, buf_cstr(&known));
    buf_cleanup(&known);
    return -EINVAL;
}

/* YAML allows a key twice and keeps the last; a config that does is almost always a mistake. */
static bool
seen_before(struct yctx *y, const yaml_node_t *map, const yaml_node_pair_t *p)
{
    const char *key = (const char *)ynode(y, p->key)->data.scalar.value;

    for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        const yaml_node_t *k = ynode(y, q->key);

        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return true;
    }
    return false;
}

int
ymap(struct yctx *y, const yaml_node_t *n, const char *where, const struct ykey *keys, void *obj)
{
    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, where, "expected a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(y, p->key), *v = ynode(y, p->value);
        const struct ykey *e = keys;
        int rc;

        if (k->type != YAML_SCALAR_NODE)
            return yerr(y, k, where, "keys must be strings");
        if (seen_before(y, n, p))
            return yerr(y, k, (char *)k->data.scalar.value, "given twice; keep one");
        while (e->name && strcmp(e->name, (char *)k->data.scalar.value) != 0)
            e++;
        if (e->name == NULL) {
            rc = unknown_key(y, k, where, keys);
            if (rc < 0)
                return rc;
            continue;
        }
        rc = e->set(y, v, e, obj);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int
yload(struct yctx *y, const char *file, const struct ykey *keys, void *obj)
{
    FILE *f = fopen(file, "rb");
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    int rc = 0;

    if (f == NULL) {
        rc = -errno;
        snprintf(y->err, y->errlen, "%s: %s", file, strerror(errno));
        return rc;
    }
    y->file = file;
    y->doc = &doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(y->err, y->errlen, "%s:%zu: %s", file, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "invalid YAML");
        rc = -EINVAL;
        goto out;
    }
    root = yaml_document_get_root_node(&doc);
    if (root != NULL)
        rc = ymap(y, root, file, keys, obj);
    yaml_document_delete(&doc);
out:
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}
