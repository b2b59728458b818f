#include "static.h"

#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

char *
static_ui_dir_for(const char *llama_exe)
{
    static const char *const tries[] = {"/../ui", "/../tools/ui/dist"};
    const char *slash = llama_exe ? strrchr(llama_exe, '/') : NULL;
    struct stat st;

    for (size_t i = 0; slash && i < sizeof(tries) / sizeof(tries[0]); i++) {
        char *d = xasprintf("%.*s%s", (int)(slash - llama_exe), llama_exe, tries[i]);
        char *index = xasprintf("%s/index.html", d);
        bool ok = stat(index, &st) == 0;

        free(index);
        if (ok)
            return d;
        free(d);
    }
    return NULL;
}
