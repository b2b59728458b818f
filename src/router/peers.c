#include "peers.h"

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

/* The one (peer, model) pair that matches; a second, different one makes it ambiguous. */
static const struct conf_peer *
find(const struct conf_peer *v, size_t n, const char *name, bool fqn, const char **model)
{
    const struct conf_peer *found = NULL;

    for (size_t i = 0; i < n; i++) {
        for (char **m = v[i].models; m && *m; m++) {
            if (fqn ? !is_fqn(name, v[i].name, *m) : strcmp(name, *m) != 0)
                continue;
            if (found != NULL && (found != &v[i] || strcmp(*model, *m) != 0))
                return NULL;
            found = &v[i];
            *model = *m;
        }
    }
    return found;
}

const struct conf_peer *
peers_find(const struct conf_peer *v, size_t n, const char *name, const char **model)
{
    const struct conf_peer *p = find(v, n, name, true, model);

    if (p != NULL)
        return p;
    /* a bare name that is some peer's full name is reserved for it (llama-swap) */
    for (size_t i = 0; i < n; i++)
        for (char **m = v[i].models; m && *m; m++)
            if (is_fqn(name, v[i].name, *m))
                return NULL;
    return find(v, n, name, false, model);
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

size_t
peers_list(const struct conf_peer *v, size_t n, long long created, struct buf *out)
{
    size_t start = out->len;

    for (size_t i = 0; i < n; i++) {
        for (char **m = v[i].models; m && *m; m++) {
            json_t *o = peers_model(&v[i], *m, created);
            char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

            json_decref(o);
            if (text == NULL)
                continue;
            if (out->len > start)
                buf_append(out, ",", 1);
            buf_append(out, text, strlen(text));
            free(text);
        }
    }
    return out->len - start;
}
