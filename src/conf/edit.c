#include "edit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "core/buf.h"
#include "core/xmalloc.h"

#define EDIT_MAX_BYTES (4u << 20)

/* The value of key in mapping n, or NULL. */
static yaml_node_t *
map_get(yaml_document_t *doc, yaml_node_t *n, const char *key)
{
    if (n == NULL || n->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);

        if (k != NULL && k->type == YAML_SCALAR_NODE && strlen(key) == k->data.scalar.length &&
            memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* libyaml counts marks in characters: the byte offset of character index i of UTF-8 text. */
static size_t
byte_at(const char *text, size_t len, size_t index)
{
    size_t b = 0, chars = 0;

    while (b < len && chars < index) {
        b++;
        while (b < len && ((unsigned char)text[b] & 0xC0) == 0x80)
            b++;
        chars++;
    }
    return b;
}

/* value as a double-quoted YAML scalar (JSON's escapes are YAML's). */
static void
quote(struct buf *b, const char *value)
{
    buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            buf_printf(b, "\\x%02x", *p);
        else
            buf_append(b, (const char *)p, 1);
    }
    buf_append(b, "\"", 1);
}

static int
replace(const char *text, size_t len, const yaml_node_t *v, const char *value, char **out)
{
    size_t start = byte_at(text, len, v->start_mark.index);
    size_t end = byte_at(text, len, v->end_mark.index);
    bool block = v->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
                 v->data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
    struct buf b;

    if (start == end)
        return -EINVAL; /* no value written ("key:", or a flow key alone): nothing to replace */
    buf_init(&b, EDIT_MAX_BYTES + 4096);
    buf_append(&b, text, start);
    quote(&b, value);
    if (block && end > start && text[end - 1] == '\n')
        buf_append(&b, "\n", 1); /* a block scalar ends with its line */
    buf_append(&b, text + end, len - end);
    *out = xstrndup(b.data ? b.data : "", b.len);
    buf_cleanup(&b);
    return 0;
}

int
conf_edit_scalar(const char *text, size_t len, const char *const *keys, size_t n, const char *value,
                 char **out, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *node;
    int rc = 0;

    *out = NULL;
    if (len > EDIT_MAX_BYTES) {
        snprintf(err, errlen, "file too large to edit");
        return -EMSGSIZE;
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "line %zu: %s", parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    node = yaml_document_get_root_node(&doc);
    for (size_t i = 0; i < n && rc == 0; i++) {
        node = map_get(&doc, node, keys[i]);
        if (node == NULL) {
            snprintf(err, errlen, "no key '%s'", keys[i]);
            rc = -ENOENT;
        }
    }
    if (rc == 0 && node->type != YAML_SCALAR_NODE) {
        snprintf(err, errlen, "'%s' is not a string", keys[n - 1]);
        rc = -EINVAL;
    }
    if (rc == 0 && value == NULL)
        *out = xstrndup((const char *)node->data.scalar.value, node->data.scalar.length);
    else if (rc == 0 && replace(text, len, node, value, out) < 0) {
        snprintf(err, errlen, "'%s' has no value written to replace", keys[n - 1]);
        rc = -EINVAL;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}
