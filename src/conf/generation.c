#include "generation.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/static.h"
#include "core/log.h"
#include "core/xmalloc.h"

char *
generation_llama_exe(const struct conf *c, char *err, size_t errlen)
{
    const char *cache = getenv("GOINFER_CACHE"), *home = getenv("HOME");
    struct stat st;
    char *exe;

    if (c->llama_exe != NULL)
        exe = xstrdup(c->llama_exe);
    else if (cache && *cache)
        exe = xasprintf("%s/llama-current/bin/llama-server", cache);
    else
        exe = xasprintf("%s/.cache/goinfer/llama-current/bin/llama-server", home ? home : "");
    if (stat(exe, &st) != 0) {
        snprintf(err, errlen,
                 "llama-server not found at %s: set GI_LLAMA_EXE (or llama.exe in goinfer.yml) to "
                 "a llama-server executable, or run `make setup` to build one",
                 exe);
    } else if (!S_ISREG(st.st_mode) || access(exe, X_OK) != 0) {
        snprintf(err, errlen,
                 "%s is not an executable file: set GI_LLAMA_EXE to a llama-server executable",
                 exe);
    } else {
        return exe;
    }
    free(exe);
    return NULL;
}

static int
discover(struct generation *g, char *err, size_t errlen)
{
    const struct conf *c = &g->conf;

    if (c->models_dir == NULL && c->swap.n_models > 0)
        return 0; /* every model is defined in the llama-swap section */
    if (c->models_dir == NULL) {
        snprintf(err, errlen,
                 "no models folder: set GI_MODELS_DIR (or models_dir in goinfer.yml) "
                 "to folders holding *.gguf files, separated by ':'");
        return -EINVAL;
    }
    if (models_discover(c->models_dir, &g->models, err, errlen) < 0)
        return -ENOENT;
    if (g->models.n == 0 && c->swap.n_models == 0)
        log_warnx("no *.gguf model found under %s; requests will get 404 until models are added "
                  "(then send SIGHUP)",
                  c->models_dir);
    return 0;
}

int
generation_load(struct generation *g, int argc, char **argv, char *err, size_t errlen)
{
    char msg[512];
    int rc;

    memset(g, 0, sizeof(*g));
    rc = conf_load(&g->conf, argc, argv, err, errlen);
    if (rc != 0)
        return rc;
    rc = discover(g, err, errlen);
    if (rc < 0)
        return rc;
    g->llama_exe = generation_llama_exe(&g->conf, err, errlen);
    if (g->llama_exe == NULL && !g->conf.write)
        return -ENOENT;
    if (g->conf.write)
        return 0;
    g->ui_dir = static_ui_dir_for(g->llama_exe);
    rc = catalog_build(&g->cat, &g->conf, &g->models, g->llama_exe, msg, sizeof(msg));
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", g->conf.file ? g->conf.file : "config", msg);
    return rc;
}

void
generation_cleanup(struct generation *g)
{
    catalog_cleanup(&g->cat);
    model_list_cleanup(&g->models);
    conf_cleanup(&g->conf);
    free(g->llama_exe);
    free(g->ui_dir);
    memset(g, 0, sizeof(*g));
}
