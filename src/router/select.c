#include "select.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"

#define SCAN_ABOVE (256 * 1024) /* bytes of body past which "model" is scanned for, not parsed */

int
select_model_from_json(const char *body, size_t len, char **name, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = NULL, *m;
    int rc = 0;

    *name = NULL;
    if (len == 0)
        return 0;
    if (len > SCAN_ABOVE) /* a large upload must not hold the loop while it is parsed */
        return select_model_scan(body, len, name, err, errlen);
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        snprintf(err, errlen, "request body is not valid JSON: %s (line %d, column %d)", je.text,
                 je.line, je.column);
        rc = -EINVAL;
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "request body must be a JSON object");
        rc = -EINVAL;
        goto out;
    }
    m = json_object_get(root, "model");
    if (m == NULL || json_is_null(m))
        goto out;
    if (!json_is_string(m)) {
        snprintf(err, errlen, "\"model\" must be a string naming a model (see GET /v1/models)");
        rc = -EINVAL;
        goto out;
    }
    if (json_string_length(m) > 0)
        *name = xstrndup(json_string_value(m), json_string_length(m));
out:
    json_decref(root);
    return rc;
}

/* Finds needle in the first n bytes of hay (memmem with a length cap, for readability). */
static const char *
find(const char *hay, size_t n, const char *needle, size_t m)
{
    return memmem(hay, n, needle, m);
}

int
select_model_from_multipart(const char *body, size_t len, const char *content_type, size_t ct_len,
                            char **name)
{
    const char *b = find(content_type, ct_len, "boundary=", 9), *p, *end = body + len;
    char delim[80];
    size_t blen;
    int n;

    *name = NULL;
    if (b == NULL)
        return 0;
    b += 9;
    blen = (size_t)(content_type + ct_len - b);
    if (blen > 0 && b[0] == '"')
        b++, blen = strcspn(b, "\"") < blen ? strcspn(b, "\"") : blen - 1;
    n = snprintf(delim, sizeof(delim), "--%.*s", (int)blen, b);
    if (n < 0 || (size_t)n >= sizeof(delim) || blen == 0)
        return 0;
    /* Each part: delimiter, headers, blank line, value, CRLF, next delimiter. */
    for (p = find(body, len, delim, (size_t)n); p != NULL;) {
        const char *hdr_end = find(p, (size_t)(end - p), "\r\n\r\n", 4), *val, *next;

        if (hdr_end == NULL)
            break;
        val = hdr_end + 4;
        next = find(val, (size_t)(end - val), delim, (size_t)n);
        if (next == NULL)
            break;
        if (find(p, (size_t)(hdr_end - p), "name=\"model\"", 12) != NULL && next - val >= 2) {
            *name = xstrndup(val, (size_t)(next - val - 2)); /* drop the CRLF before delim */
            return 0;
        }
        p = next;
    }
    return 0;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) ('+' is a space, as in forms); a bad escape is kept as is. */
static char *
url_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i] == '+' ? ' ' : s[i];
        }
    }
    *o = '\0';
    return out;
}

int
select_query_value(const char *query, const char *key, char **value)
{
    const char *p = query;
    size_t klen = strlen(key);

    *value = NULL;
    while (p != NULL && *p) {
        size_t n = strcspn(p, "&");

        if (n > klen + 1 && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            *value = url_decode(p + klen + 1, n - klen - 1);
            return 0;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return 0;
}

int
select_model_from_query(const char *query, char **name)
{
    return select_query_value(query, "model", name);
}

int
select_upstream_prefix(const char *path, const char *const *names, const char **rest)
{
    int best = -1;
    size_t best_len = 0;

    for (int i = 0; names[i] != NULL; i++) {
        size_t n = strlen(names[i]);

        if (n > best_len && strncmp(path, names[i], n) == 0 && (path[n] == '/' || !path[n])) {
            best = i;
            best_len = n;
        }
    }
    *rest = best >= 0 ? path + best_len : path;
    return best;
}

/* sjson's SetBytes for a path of plain keys: missing or non-object steps become objects. */
static void
set_path(json_t *root, const char *path, json_t *value)
{
    const char *dot;

    while ((dot = strchr(path, '.')) != NULL && dot != path && dot[1] != '\0') {
        char *step = xstrndup(path, (size_t)(dot - path));
        json_t *next = json_object_get(root, step);

        if (!json_is_object(next)) {
            next = json_object();
            json_object_set_new(root, step, next);
        }
        free(step);
        root = next;
        path = dot + 1;
    }
    json_object_set(root, path, value);
}

static int
cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sets each key of params (sorted, as llama-swap iterates them) in root; "model" never. */
static bool
set_params(json_t *root, json_t *params)
{
    size_t n = json_object_size(params), k = 0;
    const char **keys = xcalloc(n + 1, sizeof(*keys)), *key;
    json_t *v;

    json_object_foreach (params, key, v) {
        if (strcmp(key, "model") != 0)
            keys[k++] = key;
    }
    qsort(keys, k, sizeof(*keys), cmp_keys);
    for (size_t i = 0; i < k; i++)
        set_path(root, keys[i], json_object_get(params, keys[i]));
    free(keys);
    return k > 0;
}

int
select_rewrite_body(const char *body, size_t len, const struct select_rewrite *rw, char **out,
                    size_t *out_len)
{
    json_t *root, *set = NULL, *by_id = NULL;
    bool changed = false;

    if ((rw->strip == NULL || rw->strip[0] == NULL) && rw->model == NULL && rw->set == NULL &&
        rw->set_by_id == NULL)
        return 0;
    root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return 0;
    }
    if (rw->model != NULL) {
        json_object_set_new(root, "model", json_string(rw->model));
        changed = true;
    }
    for (size_t i = 0; rw->strip && rw->strip[i]; i++)
        if (strcmp(rw->strip[i], "model") != 0)
            changed |= json_object_del(root, rw->strip[i]) == 0;
    if (rw->set != NULL)
        set = json_loads(rw->set, 0, NULL);
    if (json_is_object(set))
        changed |= set_params(root, set);
    if (rw->set_by_id != NULL && rw->requested != NULL)
        by_id = json_loads(rw->set_by_id, 0, NULL);
    if (json_is_object(json_object_get(by_id, rw->requested)))
        changed |= set_params(root, json_object_get(by_id, rw->requested));
    json_decref(set), json_decref(by_id);
    *out = changed ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (*out == NULL)
        return 0;
    *out_len = strlen(*out);
    return 1;
}
