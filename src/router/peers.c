#include "peers.h"

#include <fnmatch.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

/* name is "<peer>/<model>" with these two. */
static bool
is_fqn(const char *name, const char *peer, const char *model)
{
    size_t np = strlen(peer);

    return strncmp(name, peer, np) == 0 && name[np] == '/' && strcmp(name + np + 1, model) == 0;
}

/* A peer's lists: pass 0 its configured models, pass 1 those fetched from it. */
static char *const *
list_of(const struct conf_peer *p, const struct peers_extra *x, int pass)
{
    if (pass == 0)
        return p->models;
    return x != NULL && x->ids != NULL ? x->ids(x->arg, p) : NULL;
}

/* The one (peer, model) pair that matches; a second, different one makes it ambiguous. */
static const struct conf_peer *
find(const struct conf_peer *v, size_t n, const struct peers_extra *x, const char *name, bool fqn,
     const char **model)
{
    const struct conf_peer *found = NULL;

    for (size_t i = 0; i < n; i++) {
        for (int pass = 0; pass < 2; pass++) {
            for (char *const *m = list_of(&v[i], x, pass); m && *m; m++) {
                if (fqn ? !is_fqn(name, v[i].name, *m) : strcmp(name, *m) != 0)
                    continue;
                if (found != NULL && (found != &v[i] || strcmp(*model, *m) != 0))
                    return NULL;
                found = &v[i];
                *model = *m;
            }
        }
    }
    return found;
}

const struct conf_peer *
peers_find(const struct conf_peer *v, size_t n, const struct peers_extra *x, const char *name,
           const char **model)
{
    const struct conf_peer *p = find(v, n, x, name, true, model);

    if (p != NULL)
        return p;
    /* a bare name that is some peer's full name is reserved for it (llama-swap) */
    for (size_t i = 0; i < n; i++)
        for (int pass = 0; pass < 2; pass++)
            for (char *const *m = list_of(&v[i], x, pass); m && *m; m++)
                if (is_fqn(name, v[i].name, *m))
                    return NULL;
    return find(v, n, x, name, false, model);
}

json_t *
peers_model(const struct conf_peer *p, const char *model, long long created)
{
    char *id = xasprintf("%s/%s", p->name, model), *name = xasprintf("%s: %s", p->name, model);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:{s:s}, s:{s:{s:s, s:s}}}", "id", id,
                          "object", "model", "created", (json_int_t)created, "owned_by",
                          "goinfer-peer", "name", name, "status", "value", "unloaded", "meta",
                          "llamaswap", "type", "peer", "peerID", p->name);

    free(id);
    free(name);
    return o;
}

static bool
in_list(char *const *v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

size_t
peers_list(const struct conf_peer *v, size_t n, const struct peers_extra *x, long long created,
           struct buf *out)
{
    size_t start = out->len;

    for (size_t i = 0; i < n; i++) {
        for (int pass = 0; pass < 2; pass++) {
            for (char *const *m = list_of(&v[i], x, pass); m && *m; m++) {
                json_t *o;
                char *text;

                if (pass == 1 && in_list(v[i].models, *m))
                    continue; /* configured and fetched: listed once */
                o = peers_model(&v[i], *m, created);
                text = o ? json_dumps(o, JSON_COMPACT) : NULL;
                json_decref(o);
                if (text == NULL)
                    continue;
                if (out->len > start)
                    buf_append(out, ",", 1);
                buf_append(out, text, strlen(text));
                free(text);
            }
        }
    }
    return out->len - start;
}

bool
peers_allowed(char *const *patterns, const char *name)
{
    if (patterns == NULL || patterns[0] == NULL)
        return true;
    for (; *patterns; patterns++)
        if (fnmatch(*patterns, name, 0) == 0)
            return true;
    return false;
}
