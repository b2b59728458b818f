#include "static.h"

#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/api_models.h"
#include "core/xmalloc.h"

#define MAX_FILE (32 << 20)

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript"},
    {".css", "text/css"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain"},
};

static const char *
content_type(const char *path)
{
    size_t n = strlen(path);

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t m = strlen(types[i].ext);

        if (n >= m && strcmp(path + n - m, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* Only plain relative names: no dot segments, no escapes, no hidden files. */
static bool
safe_path(const char *p)
{
    return p[0] == '/' && strstr(p, "/.") == NULL && strchr(p, '%') == NULL &&
           strchr(p, '\\') == NULL && strlen(p) < 1024;
}

/* Reads a whole regular file, or returns NULL. */
static char *
slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *data = NULL;
    ssize_t n;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= MAX_FILE) {
        data = xmalloc((size_t)st.st_size + 1);
        n = read(fd, data, (size_t)st.st_size);
        if (n != st.st_size) {
            free(data);
            data = NULL;
        }
        *len = (size_t)st.st_size;
    }
    close(fd);
    return data;
}

static bool
takes_gzip(const struct http_request *req)
{
    size_t n = 0;
    const char *v = http_header_get(req, "accept-encoding", &n);

    return v != NULL && memmem(v, n, "gzip", 4) != NULL;
}

bool
static_serve(const char *dir, struct http_request *req)
{
    const char *path = strcmp(req->path, "/") == 0 ? "/index.html" : req->path;
    struct http_header h[3] = {{"Content-Type", 12, NULL, 0},
                               {"Cache-Control", 13, "no-cache", 8},
                               {"Content-Encoding", 16, "gzip", 4}};
    char *file, *data = NULL;
    size_t len = 0;
    bool gz = false;

    if (!safe_path(path))
        return false;
    if (takes_gzip(req)) {
        file = xasprintf("%s/_gzip%s", dir, path);
        data = slurp(file, &len);
        gz = data != NULL;
        free(file);
    }
    if (data == NULL) {
        file = xasprintf("%s%s", dir, path);
        data = slurp(file, &len);
        free(file);
    }
    if (data == NULL)
        return false;
    h[0].value = content_type(path);
    h[0].value_len = strlen(h[0].value);
    if (http_stream_start(req, 200, h, gz ? 3 : 2, (int64_t)len) == 0)
        http_stream_write(req, data, len);
    http_stream_end(req);
    free(data);
    return true;
}

/* d/index.html exists: d is a built web UI. Takes ownership of d; returns it or NULL. */
static char *
ui_at(char *d)
{
    char *index = xasprintf("%s/index.html", d);
    struct stat st;
    bool ok = stat(index, &st) == 0 && S_ISREG(st.st_mode);

    free(index);
    if (ok)
        return d;
    free(d);
    return NULL;
}

/* The llama.cpp source tree that the build folder around bin/ was configured from
 * (CMakeCache.txt's CMAKE_HOME_DIRECTORY), or NULL: an out-of-tree build keeps a UI built by
 * hand in there. */
static char *
cmake_source_of(const char *bin)
{
    static const char key[] = "CMAKE_HOME_DIRECTORY:INTERNAL=";
    char *cache = xasprintf("%s/../CMakeCache.txt", bin), line[4096], *src = NULL;
    FILE *f = fopen(cache, "re");

    free(cache);
    while (f != NULL && src == NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, sizeof(key) - 1) == 0)
            src = xstrndup(line + sizeof(key) - 1, strcspn(line + sizeof(key) - 1, "\r\n"));
    if (f != NULL)
        fclose(f);
    return src;
}

/* The places a UI sits relative to the folder bin holding llama-server. */
static char *
ui_beside(const char *bin)
{
    static const char *const tries[] = {
        "/../ui",               /* Goinfer's build cache (make setup) */
        "/../tools/ui/dist",    /* a llama.cpp build folder: build/bin/llama-server */
        "/tools/ui/dist",       /* a build whose programs sit at its top */
        "/../../tools/ui/dist", /* the source tree around build/: a UI built there by hand */
    };
    char *d = NULL, *src;

    for (size_t i = 0; d == NULL && i < sizeof(tries) / sizeof(tries[0]); i++)
        d = ui_at(xasprintf("%s%s", bin, tries[i]));
    if (d == NULL && (src = cmake_source_of(bin)) != NULL) {
        d = ui_at(xasprintf("%s/tools/ui/dist", src));
        free(src);
    }
    return d;
}

char *
static_ui_dir_for(const char *llama_exe)
{
    const char *slash = llama_exe ? strrchr(llama_exe, '/') : NULL;
    char *bin, *real = NULL, *d = NULL;

    if (slash == NULL)
        return NULL;
    bin = xstrndup(llama_exe, (size_t)(slash - llama_exe));
    d = ui_beside(bin);
    free(bin);
    if (d == NULL && (real = realpath(llama_exe, NULL)) != NULL &&
        strcmp(real, llama_exe) != 0) { /* a link to a llama-server in its build folder */
        slash = strrchr(real, '/');
        bin = xstrndup(real, (size_t)(slash - real));
        d = ui_beside(bin);
        free(bin);
    }
    free(real);
    return d;
}

bool
static_page_path(const char *path)
{
    const char *last = strrchr(path, '/');

    return strcmp(path, "/") == 0 || (last != NULL && strchr(last, '.') != NULL);
}

const struct model_def *
static_page_model(const struct catalog *cat, const struct swap *swap, const char *default_model,
                  const struct store *store)
{
    static const enum swap_model_state prefer[] = {SWAP_MODEL_LOADED, SWAP_MODEL_LOADING};
    const struct model_def *m = NULL;
    int code;

    for (size_t p = 0; p < sizeof(prefer) / sizeof(prefer[0]); p++)
        for (size_t i = 0; i < cat->n; i++)
            if (swap_model_state(swap, &cat->v[i], &code) == prefer[p])
                return &cat->v[i];
    if (default_model != NULL)
        m = catalog_find(cat, default_model, strlen(default_model));
    if (m != NULL && !api_model_enabled(store, m))
        m = NULL;
    for (size_t i = 0; m == NULL && i < cat->n; i++) /* one that can start, when there is one */
        if (!cat->v[i].unlisted && (cat->v[i].path == NULL || cat->v[i].meta.ok) &&
            swap_model_state(swap, &cat->v[i], &code) != SWAP_MODEL_FAILED &&
            api_model_enabled(store, &cat->v[i]))
            m = &cat->v[i];
    for (size_t i = 0; m == NULL && i < cat->n; i++)
        if (!cat->v[i].unlisted && api_model_enabled(store, &cat->v[i]))
            m = &cat->v[i];
    return m;
}
