/*
 * Model discovery: finds *.gguf files under ':'-separated roots, recursively, following
 * symlinked folders without looping. A split model is one model addressed by its first
 * shard; mmproj files are attached to the model beside them, not listed.
 */
#ifndef GOINFER_MODELS_DISCOVERY_H
#define GOINFER_MODELS_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the GGUF header says (read once per path, size and mtime; cached across reloads). */
struct model_meta {
    bool ok; /* false: the header could not be read; error says why */
    char error[160];
    char arch[64];
    char quant[16];
    uint64_t context_length;
    bool has_chat_template;
    bool is_mmproj;
};

struct model_entry {
    char *name;   /* what requests use in "model" */
    char *path;   /* the .gguf (first shard of a split model) */
    char *mmproj; /* companion projector, or NULL */
    char *flags;  /* extra llama-server flags: "&k=v" in the file name, or <stem>.sh */
    uint64_t size;
    int shards;
    struct model_meta meta;
};

struct model_list {
    struct model_entry *v;
    size_t n;
};

/* Fills *out (sorted by name). Returns 0, or a negative errno with a message in err. */
int models_discover(const char *roots, struct model_list *out, char *err, size_t errlen);
void model_list_cleanup(struct model_list *l);
const struct model_entry *model_list_find(const struct model_list *l, const char *name, size_t len);

/* Reads the header of path (cached by path, size and mtime). */
void models_read_meta(const char *path, uint64_t size, int64_t mtime, struct model_meta *out);
/* Frees the header cache (at exit, so leak checkers stay quiet). */
void models_meta_cache_free(void);

/* Pure helpers, exposed for tests. */
/*
 * The name requests use: "dir/Foo-Q4_K_M.gguf" -> "Foo-Q4_K_M"; a split's "-00001-of-00003"
 * and "&k=v" flags are dropped; in a Hugging Face cache
 * (".../models--org--Repo-GGUF/snapshots/<rev>/repo-Q4_K_M.gguf") it is "org/Repo:Q4_K_M".
 */
char *models_name_from_path(const char *path);
/* "Foo&c=4096&ngl=99.gguf" -> "-c 4096 -ngl 99" (the seed's convention), or NULL. */
char *models_flags_from_name(const char *path);
/* The flags in a companion script: its words, without comments, the program and the flags
 * Goinfer sets itself (-m, --model, --port, --host). NULL when unreadable. */
char *models_flags_from_script(const char *sh_path);
/* True for "x-00002-of-00003.gguf"; sets the 1-based part and the count. */
bool models_split_part(const char *path, int *part, int *count);
bool models_is_mmproj(const char *path);

#endif
