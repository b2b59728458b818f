/*
 * The top-level "model" of a large JSON body without building it: a 64 MiB upload parsed by
 * jansson held the event loop for 0.7 s (every other client waited); this walk skips strings
 * and nested values at memchr speed and decodes only the model's own string.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "router/select.h"

#define BAD SIZE_MAX

static size_t
skip_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* p[i] is '"': the index after the closing quote, or BAD. */
static size_t
skip_string(const char *p, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        const char *q = memchr(p + i, '"', n - i);
        size_t k;

        if (q == NULL)
            return BAD;
        i = (size_t)(q - p);
        for (k = i; k > 0 && p[k - 1] == '\\'; k--)
            ;
        if ((i - k) % 2 == 0) /* not escaped */
            return i + 1;
    }
    return BAD;
}

/* Any value at p[i]: containers by counting depth outside strings. */
static size_t
skip_value(const char *p, size_t i, size_t n)
{
    size_t depth = 0;

    if (i >= n)
        return BAD;
    if (p[i] == '"')
        return skip_string(p, i, n);
    if (p[i] != '{' && p[i] != '[') { /* number, true, false, null */
        size_t start = i;

        while (i < n && !strchr(",}] \t\r\n", p[i]) && p[i] != '\0')
            i++;
        return i > start ? i : BAD;
    }
    while (i < n) {
        if (p[i] == '"') {
            i = skip_string(p, i, n);
            if (i == BAD)
                return BAD;
            continue;
        }
        if (p[i] == '{' || p[i] == '[')
            depth++;
        else if ((p[i] == '}' || p[i] == ']') && --depth == 0)
            return i + 1;
        i++;
    }
    return BAD;
}

/* The model's value: a string (decoded by jansson), null, or an error. */
static int
take_model(const char *p, size_t i, size_t end, char **name, char *err, size_t errlen)
{
    json_t *v;

    if (end - i == 4 && memcmp(p + i, "null", 4) == 0)
        return 0;
    v = p[i] == '"' ? json_loadb(p + i, end - i, JSON_DECODE_ANY, NULL) : NULL;
    if (!json_is_string(v)) {
        json_decref(v);
        snprintf(err, errlen, "\"model\" must be a string naming a model (see GET /v1/models)");
        return -EINVAL;
    }
    if (json_string_length(v) > 0)
        *name = xstrndup(json_string_value(v), json_string_length(v));
    json_decref(v);
    return 0;
}

/* Whether the key at p[key..end) (quotes included) is "model", escapes decoded as jansson
 * would: "mod\u0065l" is that key too. */
static bool
is_model_key(const char *p, size_t key, size_t end)
{
    json_t *k;
    bool yes;

    if (end - key == 7 && memcmp(p + key, "\"model\"", 7) == 0)
        return true;
    if (memchr(p + key, '\\', end - key) == NULL || end - key > 64)
        return false;
    k = json_loadb(p + key, end - key, JSON_DECODE_ANY, NULL);
    yes = json_is_string(k) && json_string_length(k) == 5 &&
          memcmp(json_string_value(k), "model", 5) == 0;
    json_decref(k);
    return yes;
}

/* Walks the whole top level, so a second "model" is refused as jansson refuses it in a small
 * body: the first one chosen here and the last one read by llama-server must not differ. */
int
select_model_scan(const char *p, size_t n, char **name, char *err, size_t errlen)
{
    size_t i = skip_ws(p, 0, n);

    bool seen = false;

    *name = NULL;
    if (i >= n || p[i] != '{') {
        snprintf(err, errlen, "request body must be a JSON object");
        return -EINVAL;
    }
    for (i = skip_ws(p, i + 1, n); i < n && p[i] != '}';) {
        size_t key = i, key_end = p[i] == '"' ? skip_string(p, i, n) : BAD, val, val_end;

        if (key_end == BAD || (i = skip_ws(p, key_end, n)) >= n || p[i] != ':')
            break;
        val = skip_ws(p, i + 1, n);
        val_end = skip_value(p, val, n);
        if (val_end == BAD)
            break;
        if (is_model_key(p, key, key_end)) {
            if (seen) {
                free(*name);
                *name = NULL;
                snprintf(err, errlen,
                         "request body is not valid JSON: duplicate object key "
                         "\"model\"");
                return -EINVAL;
            }
            seen = true;
            if (take_model(p, val, val_end, name, err, errlen) < 0)
                return -EINVAL;
        }
        i = skip_ws(p, val_end, n);
        if (i < n && p[i] == ',')
            i = skip_ws(p, i + 1, n);
        else if (i >= n || p[i] != '}')
            break;
    }
    if (i < n && p[i] == '}')
        return 0; /* an object, naming a model or not */
    free(*name);
    *name = NULL;
    snprintf(err, errlen, "request body is not valid JSON (near byte %zu)", i < n ? i : n);
    return -EINVAL;
}

bool
select_wants_stream(const char *p, size_t n)
{
    size_t i = skip_ws(p, 0, n);

    if (i >= n || p[i] != '{')
        return false;
    for (i = skip_ws(p, i + 1, n); i < n && p[i] != '}';) {
        size_t key = i, key_end = p[i] == '"' ? skip_string(p, i, n) : BAD, val, val_end;

        if (key_end == BAD || (i = skip_ws(p, key_end, n)) >= n || p[i] != ':')
            return false;
        val = skip_ws(p, i + 1, n);
        val_end = skip_value(p, val, n);
        if (val_end == BAD)
            return false;
        if (key_end - key == 8 && memcmp(p + key, "\"stream\"", 8) == 0)
            return val_end - val == 4 && memcmp(p + val, "true", 4) == 0;
        i = skip_ws(p, val_end, n);
        if (i < n && p[i] == ',')
            i = skip_ws(p, i + 1, n);
    }
    return false;
}
