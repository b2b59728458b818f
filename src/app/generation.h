/*
 * A generation of configuration: settings, the models found on disk, and the catalog built
 * from both, loaded and checked as one. Start-up loads the first; a reload (SIGHUP, a changed
 * file) loads a new one and swaps it in only if it is valid.
 */
#ifndef GOINFER_APP_GENERATION_H
#define GOINFER_APP_GENERATION_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "conf/conf.h"
#include "models/catalog.h"
#include "models/discovery.h"

struct generation {
    struct conf conf;
    struct model_list models;
    struct catalog cat;
    char *llama_exe;
    char *ui_dir;    /* llama.cpp's web UI beside that llama-server, or NULL */
    bool ui_proxy;   /* no ui_dir: / is proxied to a llama-server's own page */
    char *ui_source; /* where / comes from, in words, for the log */
    size_t users;    /* requests begun while it was in force and not ended yet */

    /* goinfer.yml's and llama-swap.yml's text as this generation read them (the admin API's
     * "configuration in force"); data NULL when the file was absent */
    struct generation_text {
        char *data;
        size_t len;
    } text[2];
    struct generation *next; /* in the retired list */
};

/* Returns 0; 1 when -help was printed; or -errno with err. Never exits. */
int generation_load(struct generation *g, int argc, char **argv, char *err, size_t errlen);
void generation_cleanup(struct generation *g);
/*
 * Loads the candidate texts of goinfer.yml (text[0]) and llama-swap.yml (text[1], NULL: none)
 * as generation_load would load them from file with the same argv: written to a private folder
 * beside file (so paths relative to it and the pair read together behave the same), loaded,
 * then removed. Errors and warnings name file and its llama-swap.yml, never the temporary
 * names. Returns 0 or -errno with err; *warnings (owned strv, may be NULL) what loading warned.
 */
int generation_check(int argc, char **argv, const char *file, const struct generation_text text[2],
                     char *err, size_t errlen, char ***warnings);
/* Reads path whole (at most max bytes) into t; t->data stays NULL when it is absent. */
int generation_read_text(const char *path, size_t max, struct generation_text *t);

/* The llama-server to run: the engine chosen in the admin API (state_dir/engine.json), else
 * llama.exe / GI_LLAMA_EXE, else the one `make setup` built. */
char *generation_llama_exe(const struct conf *c, char *err, size_t errlen);

/* What the configuration files (goinfer.yml and the llama-swap.yml beside it) looked like:
 * which file, its size and times. A watcher tells an event that changed nothing from a change,
 * and a file still being written from one at rest. */
struct generation_stamp {
    struct generation_file_stamp {
        bool exists;
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime, ctime;
    } f[2];
};

/* Stamps file (may be NULL: nothing exists) and its llama-swap.yml. */
void generation_stamp(const char *file, struct generation_stamp *out);
bool generation_stamp_same(const struct generation_stamp *a, const struct generation_stamp *b);

/*
 * The generation in force and the retired ones still in use. A request uses the generation in
 * force when it begins (its model, its catalog) until it ends; the swap's instances that a
 * reload retired still point into the catalog they were started from. A retired generation is
 * freed by generations_collect once neither holds it, so a reload costs nothing lasting.
 * Requests are found by id: the server keeps no field for us.
 */
struct gen_user;

struct generations {
    struct generation *current; /* owned, never NULL once initialised */
    struct generation *retired; /* owned: replaced ones not yet freed */
    struct gen_user **users;    /* request id -> generation, a hash by id */
    size_t n_buckets, n_users;
};

/* Something else than a request that may still point into g (the swap). */
typedef bool (*generation_in_use_cb)(const struct generation *g, void *arg);

/* Takes ownership of first, a heap generation. */
void generations_init(struct generations *gs, struct generation *first);
/* Takes ownership of next (heap); the one it replaces is retired, not freed. */
void generations_replace(struct generations *gs, struct generation *next);
/* Request id begins: it holds the generation in force until generations_end(id). */
void generations_begin(struct generations *gs, uint64_t id);
/* Request id ended (an id never begun is ignored). True when it was the last request of a
 * retired generation: call generations_collect, from outside the request's callbacks. */
bool generations_end(struct generations *gs, uint64_t id);
/* Frees the retired generations no request holds and in_use (may be NULL) does not claim.
 * Returns how many are kept only because in_use claims them: look again later. */
size_t generations_collect(struct generations *gs, generation_in_use_cb in_use, void *arg);
/* Frees them all, used or not (exit). */
void generations_cleanup(struct generations *gs);

#endif
