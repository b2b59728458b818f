/*
 * GGUF header reader: the key/value section of a GGUF v2/v3 file, parsed from bytes the caller
 * passes in, with a cap on every size the file controls, so discovery can describe a model
 * (architecture, context, quantization, chat template, projector, split) without loading it.
 * Pure logic, no globals: unit tests and the fuzzer call gguf_parse directly.
 */
#ifndef GOINFER_MODELS_GGUF_H
#define GOINFER_MODELS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps on what a file may claim; a value past a cap is -EINVAL, never an allocation. */
#define GGUF_MAX_KV           65536u
#define GGUF_MAX_KEY          (64u * 1024)
#define GGUF_MAX_STRING       (16u * 1024 * 1024)
#define GGUF_MAX_ARRAY_ELEMS  (1u << 30) /* llama.cpp's GGUF_MAX_ARRAY_ELEMENTS */
#define GGUF_MAX_ARRAY_DEPTH  2
#define GGUF_MAX_TEMPLATE     (64u * 1024)
#define GGUF_READ_FIRST_BYTES (64u * 1024)

struct gguf_info {
    char arch[64];  /* general.architecture, e.g. "llama", "clip", or "" */
    char name[128]; /* general.name, truncated on a UTF-8 boundary, or "" */
    uint32_t version;
    uint64_t n_tensors, n_kv;
    uint64_t context_length;        /* <arch>.context_length, 0 when absent */
    uint64_t block_count;           /* <arch>.block_count, 0 when absent */
    uint64_t embedding_length;      /* <arch>.embedding_length, 0 when absent */
    int32_t file_type;              /* general.file_type, -1 when absent */
    char quant[16];                 /* gguf_file_type_name(file_type): "F32", "Q4_K_M", ... or "" */
    bool has_chat_template;         /* tokenizer.chat_template present */
    char *chat_template;            /* owned copy, truncated to GGUF_MAX_TEMPLATE bytes, or NULL */
    bool is_mmproj;                 /* arch "clip" or clip.has_vision_encoder true */
    uint64_t projection_dim;        /* clip.vision (or audio).projection_dim: the embedding
                                     * length of the text model it feeds; 0 when absent */
    uint16_t split_no, split_count; /* split.no (0-based) / split.count, 0 when absent */
};

/*
 * Parses the GGUF header in buf[0..len) into *out, which it overwrites (call
 * gguf_info_cleanup on a previous result first). Returns 0; -EAGAIN when len is too short to
 * hold the whole key/value section, with err saying what did not fit, which is the error to
 * report when buf already holds the whole file; -EINVAL with a message in err for anything
 * malformed. On failure *out holds nothing to free. Never reads past len, allocates only the
 * chat template copy, and does work linear in len whatever counts the file claims.
 */
int gguf_parse(const unsigned char *buf, size_t len, struct gguf_info *out, char *err,
               size_t errlen);
/* Frees the chat template; safe to call twice and after a failed parse. */
void gguf_info_cleanup(struct gguf_info *info);
/* llama_ftype number to its usual file-name spelling ("Q4_K_M"); "" when unknown. */
const char *gguf_file_type_name(int32_t file_type);
/*
 * Reads the start of path, 64 KiB first, growing up to max_bytes while gguf_parse answers
 * -EAGAIN, and parses it. Returns 0; -EINVAL for a malformed or truncated file; -EMSGSIZE when
 * the key/value section is longer than max_bytes; a negative errno from open or read.
 */
int gguf_read_file(const char *path, size_t max_bytes, struct gguf_info *out, char *err,
                   size_t errlen);

#endif
