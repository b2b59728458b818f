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
    uint64_t embedding_length; /* a model's; 0 when absent */
    uint64_t projection_dim;   /* a projector's: the embedding length it feeds; 0 when absent */
};

struct model_entry {
    char *name;   /* what requests use in "model" */
    char *path;   /* the .gguf (first shard of a split model) */
    char *mmproj; /* companion projector, or NULL */
    char **flags; /* extra llama-server arguments, one per element: "&k=v" in the file name, or
                   * <stem>.sh, without the reserved flags; NULL when none */
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
/* "Foo&c=4096&ngl=99.gguf" -> {"-c", "4096", "-ngl", "99"} (the seed's convention), or NULL;
 * each value one argument, whatever it holds. */
char **models_flags_from_name(const char *path);
/* The words of a companion script, without comments and the program ("exec llama-server"),
 * each one argument; NULL when unreadable or larger than 256 KiB. Pass the result through
 * models_flags_clean. */
char **models_flags_from_script(const char *sh_path);
/* The <stem>.sh read beside the model file path (whether it exists or not); caller frees. */
char *models_script_for(const char *path);
char **models_flags_from_text(const char *text);
/*
 * The one rule for flags from a file name or a companion script: drops the flags Goinfer sets
 * itself (see models_flag_reserved) with their values, and shell expansions ("$@"). Takes
 * ownership of v; returns it, or NULL when nothing is left.
 */
char **models_flags_clean(char **v);
/* 1: w is a flag Goinfer sets itself (-m, --model, --host, --port, --api-key, --api-key-file,
 * --path; "--api_key" too, as llama.cpp reads it) and its value follows; 2: "--flag=value" in
 * one word; 0: not one of them. */
int models_flag_reserved(const char *w);
/* Drops the reserved flags of the NULL-terminated v in place (and the value after each unless
 * it is a flag); returns how many words went. */
size_t models_drop_reserved(char **v);
/* The contents of path, NUL-terminated, or NULL when unreadable or larger than max bytes. */
char *models_read_small_file(const char *path, size_t max);
/* True for "x-00002-of-00003.gguf"; sets the 1-based part and the count. */
bool models_split_part(const char *path, int *part, int *count);
bool models_is_mmproj(const char *path);

#endif
