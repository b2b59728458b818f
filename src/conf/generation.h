/*
 * A generation of configuration: settings, the models found on disk, and the catalog built
 * from both, loaded and checked as one. Start-up loads the first; a reload (SIGHUP, a changed
 * file) loads a new one and swaps it in only if it is valid.
 */
#ifndef GOINFER_CONF_GENERATION_H
#define GOINFER_CONF_GENERATION_H

#include <stddef.h>

#include "conf/conf.h"
#include "models/catalog.h"
#include "models/discovery.h"

struct generation {
    struct conf conf;
    struct model_list models;
    struct catalog cat;
    char *llama_exe;
    char *ui_dir;             /* llama.cpp's web UI beside that llama-server, or NULL */
    struct generation *older; /* retired generations, kept while requests may use them */
};

/* Returns 0; 1 when -help was printed; or -errno with err. Never exits. */
int generation_load(struct generation *g, int argc, char **argv, char *err, size_t errlen);
void generation_cleanup(struct generation *g);
/* The llama-server to run: llama.exe / GI_LLAMA_EXE, else the one `make setup` built. */
char *generation_llama_exe(const struct conf *c, char *err, size_t errlen);

#endif
