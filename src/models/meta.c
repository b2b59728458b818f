/* GGUF header metadata for discovered models, cached by path, size and mtime, so a reload
 * or a large tree re-reads only the files that changed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "models/discovery.h"
#include "models/gguf.h"

#define BUCKETS       1024
#define MAX_HEADER_MB 64 /* vocabularies of large models run to tens of MB */

struct entry {
    char *path;
    uint64_t size;
    int64_t mtime;
    struct model_meta meta;
    struct entry *next;
};

static struct entry *cache[BUCKETS];

static size_t
hash(const char *s)
{
    size_t h = 5381;

    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h % BUCKETS;
}

static void
read_header(const char *path, struct model_meta *m)
{
    struct gguf_info info;
    char err[160];

    memset(m, 0, sizeof(*m));
    if (gguf_read_file(path, (size_t)MAX_HEADER_MB << 20, &info, err, sizeof(err)) < 0) {
        snprintf(m->error, sizeof(m->error), "%s", err);
        return;
    }
    m->ok = true;
    snprintf(m->arch, sizeof(m->arch), "%s", info.arch);
    snprintf(m->quant, sizeof(m->quant), "%s", info.quant);
    m->context_length = info.context_length;
    m->has_chat_template = info.has_chat_template;
    m->is_mmproj = info.is_mmproj;
    m->embedding_length = info.embedding_length;
    m->projection_dim = info.projection_dim;
    gguf_info_cleanup(&info);
}

void
models_read_meta(const char *path, uint64_t size, int64_t mtime, struct model_meta *out)
{
    size_t b = hash(path);
    struct entry *e;

    for (e = cache[b]; e != NULL; e = e->next)
        if (strcmp(e->path, path) == 0)
            break;
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        e->path = xstrdup(path);
        e->next = cache[b];
        cache[b] = e;
        e->size = size + 1; /* force the first read */
    }
    if (e->size != size || e->mtime != mtime) {
        read_header(path, &e->meta);
        e->size = size;
        e->mtime = mtime;
    }
    *out = e->meta;
}

void
models_meta_cache_free(void)
{
    for (size_t b = 0; b < BUCKETS; b++)
        while (cache[b]) {
            struct entry *e = cache[b];

            cache[b] = e->next;
            free(e->path);
            free(e);
        }
}
