/*
 * Directive tables over libyaml's document nodes: each key has a handler and, for plain
 * values, the offset of the field it sets. Errors read "file:line: key: what is wrong".
 */
#ifndef GOINFER_CONF_YAML_H
#define GOINFER_CONF_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "core/strv.h"

struct yctx {
    yaml_document_t *doc;
    const char *file;
    char *err;
    size_t errlen;
    void *user;      /* the struct conf being built */
    bool lenient;    /* a llama-swap file: an unknown key is a warning, as llama-swap ignores it */
    char **warnings; /* each warning said while loading, kept for /ui (owned; strv) */
};

struct ykey;
/* obj is the struct the table describes (a struct conf, a model, a group...). */
typedef int (*ykey_cb)(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj);

struct ykey {
    const char *name;
    ykey_cb set;
    size_t off;
};

/* One table row: the key, how its value is read, and where it is stored. */
#define YKEY_AT(name, cb, type, field)                                                             \
    {                                                                                              \
        name, cb, offsetof(type, field)                                                            \
    }
#define YKEY_STRING(name, type, field) YKEY_AT(name, ystring_key, type, field)
#define YKEY_BOOL(name, type, field)   YKEY_AT(name, ybool_key, type, field)
#define YKEY_U64(name, type, field)    YKEY_AT(name, yu64_key, type, field)
#define YKEY_LIST(name, type, field)   YKEY_AT(name, ylist_key, type, field)
/* A key llama-swap documents and Goinfer does not implement: read, then one warning. */
#define YKEY_IGNORED(name)                                                                         \
    {                                                                                              \
        name, yignored_key, 0                                                                      \
    }

int yerr(struct yctx *y, const yaml_node_t *n, const char *key, const char *what);
/* "file:line: what": logged as a warning and kept in y->warnings. */
void ywarn(struct yctx *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
yaml_node_t *ynode(struct yctx *y, int index);
/* Applies keys to every pair of mapping n; an unknown key is an error listing the known. */
int ymap(struct yctx *y, const yaml_node_t *n, const char *where, const struct ykey *keys,
         void *obj);
int ystring(struct yctx *y, const yaml_node_t *n, const char *key, char **out);

/* Field setters for the YKEY_* macros. */
int ystring_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj);
int ybool_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj);
int yu64_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj);
int yignored_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj);
/* A list of strings (a sequence, or one scalar) into a NULL-terminated char ** field. */
int ylist_key(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj);

/* Parses file and applies keys to its root mapping. Returns 0 or -errno with y->err set. */
int yload(struct yctx *y, const char *file, const struct ykey *keys, void *obj);

#endif
