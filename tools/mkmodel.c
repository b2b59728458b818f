/*
 * mkmodel: write a deterministic tiny GGUF v3 "llama" model that the real llama-server loads
 * and serves on CPU in well under a second. The weights are pseudo-random, so the text it
 * generates is nonsense, but every token is valid UTF-8 and the chat template is ChatML.
 *
 * Usage: mkmodel [-n NAME] [-l LAYERS] [-s SEED] [-c CTX] [-e EMBD] [--split N] [--mmproj]
 *                -o OUT.gguf
 *
 * Same options give a byte-identical file: every tensor draws from its own splitmix64 stream
 * seeded from -s and the tensor name, so a split model holds the same bytes as a whole one.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_ALIGN 32u
#define N_HEAD     4u
#define MAX_TOKENS 256u
#define TOKEN_LEN  32u
#define NAME_LEN   64u

/* GGUF value types (ggml/include/gguf.h). */
enum {
    T_U8 = 0,
    T_I8 = 1,
    T_U16 = 2,
    T_I16 = 3,
    T_U32 = 4,
    T_I32 = 5,
    T_F32 = 6,
    T_BOOL = 7,
    T_STRING = 8,
    T_ARRAY = 9,
    T_U64 = 10,
    T_I64 = 11,
    T_F64 = 12,
};

/* llama_token_type values stored in tokenizer.ggml.token_type. */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3 };

struct opts {
    const char *name;
    const char *out;
    uint64_t seed;
    uint32_t layers;
    uint32_t ctx;
    uint32_t embd;
    uint32_t split;
    int mmproj;
};

struct token {
    char text[TOKEN_LEN];
    float score;
    int32_t type;
};

struct vocab {
    struct token tok[MAX_TOKENS];
    uint32_t n;
};

struct tensor {
    char name[NAME_LEN];
    uint32_t nd;
    uint64_t ne[2];
    int ones; /* norm weights are 1.0 so the untrained model stays numerically tame */
};

/* A byte sink: with f == NULL it only counts, which gives the KV count before writing. */
struct sink {
    FILE *f;
    uint64_t off;
    uint64_t nkv;
    int err; /* errno of the first failed write, 0 while all is well */
};

struct job;
typedef void (*kv_fn)(struct sink *s, const struct job *j);

/* One GGUF file to write: its KVs and the slice [first, first + count) of the tensors. */
struct job {
    const struct opts *o;
    const struct vocab *v;
    const struct tensor *t;
    uint32_t first;
    uint32_t count;
    uint32_t total; /* tensors over all shards */
    uint32_t shard;
    uint32_t nshards;
    kv_fn kvs;
};

static const char *const WORDS[] = {
    "the",   "Hello", "world", "and",   "of",   "to",    "a",      "in",    "is",
    "it",    "you",   "that",  "he",    "was",  "for",   "on",     "are",   "with",
    "as",    "I",     "his",   "they",  "be",   "at",    "one",    "have",  "this",
    "from",  "or",    "had",   "by",    "hot",  "word",  "but",    "what",  "some",
    "we",    "can",   "out",   "other", "were", "all",   "there",  "when",  "up",
    "use",   "your",  "how",   "said",  "an",   "each",  "she",    "which", "do",
    "their", "time",  "if",    "will",  "way",  "about", "many",   "then",  "them",
    "would", "like",  "so",    "these", "Yes",  "No",    "Thanks", "model", "tiny",
};

/*
 * A few common non-ASCII characters (accented Latin letters, typographic quotes, dash, ellipsis,
 * euro, degree) so such prompts work; other non-ASCII characters still fail to tokenize.
 */
static const char *const EXTRA_CHARS[] = {
    "\xc3\xa9",     "\xc3\xa8",     "\xc3\xaa",     "\xc3\xa0",     "\xc3\xa2",     "\xc3\xa7",
    "\xc3\xb4",     "\xc3\xbb",     "\xc3\xb9",     "\xc3\xae",     "\xc3\xa4",     "\xc3\xb6",
    "\xc3\xbc",     "\xc3\x9f",     "\xc3\xb1",     "\xc3\x89",     "\xe2\x80\x99", "\xe2\x80\x9c",
    "\xe2\x80\x9d", "\xe2\x80\x94", "\xe2\x80\xa6", "\xe2\x82\xac", "\xc2\xb0",
};

static const char CHAT_TEMPLATE[] =
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

static void
usage(FILE *f)
{
    fprintf(f, "usage: mkmodel [-n NAME] [-l LAYERS] [-s SEED] [-c CTX] [-e EMBD]\n"
               "               [--split N] [--mmproj] -o OUT.gguf\n"
               "  -n NAME     general.name (default tiny)\n"
               "  -l LAYERS   transformer blocks, 1..256 (default 2)\n"
               "  -s SEED     weight seed (default 1)\n"
               "  -c CTX      llama.context_length, 8..1048576 (default 512)\n"
               "  -e EMBD     embedding width, multiple of 8, 8..4096 (default 64)\n"
               "  --split N   write N gguf-split shards OUT-0000i-of-0000N.gguf\n"
               "  --mmproj    also write mmproj-<name>.gguf (header-only CLIP stub)\n");
}

static int
fail(const char *what, const char *path, int err)
{
    fprintf(stderr, "mkmodel: %s %s : %s\n", what, path, strerror(err));
    return -1;
}

static int
parse_num(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;

    /* decimal digits only: strtoull would take "-1" as a huge value and "010" as octal */
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int
parse_u32(const char *s, uint64_t min, uint64_t max, uint32_t *out)
{
    uint64_t v;

    if (parse_num(s, min, max, &v) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int
parse_opt(int c, const char *arg, struct opts *o)
{
    switch (c) {
    case 'n':
        o->name = arg;
        return *arg == '\0' || strlen(arg) > 256 ? -1 : 0;
    case 'o':
        o->out = arg;
        return *arg == '\0' ? -1 : 0;
    case 's':
        return parse_num(arg, 0, UINT64_MAX, &o->seed);
    case 'l':
        return parse_u32(arg, 1, 256, &o->layers);
    case 'c':
        return parse_u32(arg, 8, 1048576, &o->ctx);
    case 'e':
        /* head size embd/4 is the rope dimension, which ggml wants even */
        return parse_u32(arg, 8, 4096, &o->embd) != 0 || o->embd % 8 != 0 ? -1 : 0;
    case 'S':
        return parse_u32(arg, 1, 99999, &o->split);
    case 'm':
        o->mmproj = 1;
        return 0;
    default:
        return -1;
    }
}

/* 0: run, 1: help asked, -1: bad usage. */
static int
parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longs[] = {
        {"split", required_argument, NULL, 'S'},
        {"mmproj", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    *o = (struct opts){.name = "tiny", .seed = 1, .layers = 2, .ctx = 512, .embd = 64, .split = 1};
    while ((c = getopt_long(argc, argv, "n:l:s:c:e:o:h", longs, NULL)) != -1) {
        if (c == 'h')
            return 1;
        if (parse_opt(c, optarg, o) != 0)
            return -1;
    }
    if (optind != argc || o->out == NULL)
        return -1;
    return 0;
}

/* ---- byte sink ---------------------------------------------------------------------------- */

static void
put(struct sink *s, const void *p, size_t n)
{
    if (s->f != NULL && s->err == 0 && fwrite(p, 1, n, s->f) != n)
        s->err = errno != 0 ? errno : EIO;
    s->off += n;
}

/* Explicit little-endian encoding, so the file is the same whatever the host byte order. */
static void
put_le(struct sink *s, uint64_t v, unsigned nbytes)
{
    unsigned char b[8];

    for (unsigned i = 0; i < nbytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(s, b, nbytes);
}

static void
put_f32(struct sink *s, float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    put_le(s, u, 4);
}

static void
put_str(struct sink *s, const char *str)
{
    size_t n = strlen(str);

    put_le(s, n, 8);
    put(s, str, n);
}

static void
pad(struct sink *s)
{
    static const unsigned char zeros[GGUF_ALIGN];
    uint64_t rem = s->off % GGUF_ALIGN;

    if (rem != 0)
        put(s, zeros, (size_t)(GGUF_ALIGN - rem));
}

/* ---- key/value helpers ------------------------------------------------------------------- */

static void
kv_key(struct sink *s, const char *key, uint32_t type)
{
    put_str(s, key);
    put_le(s, type, 4);
    s->nkv++;
}

static void
kv_str(struct sink *s, const char *key, const char *val)
{
    kv_key(s, key, T_STRING);
    put_str(s, val);
}

static void
kv_int(struct sink *s, const char *key, uint32_t type, uint64_t val)
{
    static const unsigned width[] = {[T_U16] = 2, [T_I32] = 4, [T_U32] = 4, [T_BOOL] = 1};

    kv_key(s, key, type);
    put_le(s, val, width[type]);
}

static void
kv_f32(struct sink *s, const char *key, float val)
{
    kv_key(s, key, T_F32);
    put_f32(s, val);
}

static void
kv_arr(struct sink *s, const char *key, uint32_t elem_type, uint64_t count)
{
    kv_key(s, key, T_ARRAY);
    put_le(s, elem_type, 4);
    put_le(s, count, 8);
}

/* ---- vocabulary -------------------------------------------------------------------------- */

static void
vocab_add(struct vocab *v, const char *text, float score, int32_t type)
{
    struct token *t = &v->tok[v->n++];

    snprintf(t->text, sizeof(t->text), "%s", text);
    t->score = score;
    t->type = type;
}

/*
 * No <0xNN> byte tokens: a lone byte is not valid UTF-8 and would reach clients as such.
 * SPM's byte_to_token then falls back to the one-character token, so every character a prompt
 * or the template may contain (printable ASCII, \n, \t, \r, and U+2581 for spaces) is a token.
 * Any other character makes tokenization throw (llama-server answers 400 "unordered_map::at").
 */
static void
vocab_build(struct vocab *v)
{
    char buf[TOKEN_LEN];

    v->n = 0;
    vocab_add(v, "<unk>", 0.0f, TOK_UNKNOWN);
    vocab_add(v, "<s>", 0.0f, TOK_CONTROL);
    vocab_add(v, "</s>", 0.0f, TOK_CONTROL);
    vocab_add(v, "<|im_start|>", 0.0f, TOK_CONTROL);
    vocab_add(v, "<|im_end|>", 0.0f, TOK_CONTROL);
    vocab_add(v, "\n", -100.0f, TOK_NORMAL);
    vocab_add(v, "\t", -100.0f, TOK_NORMAL);
    vocab_add(v, "\r", -100.0f, TOK_NORMAL);
    vocab_add(v, "\xe2\x96\x81", -100.0f, TOK_NORMAL);
    for (int c = 0x21; c <= 0x7e; c++) {
        buf[0] = (char)c;
        buf[1] = '\0';
        vocab_add(v, buf, -100.0f - (float)c * 0.01f, TOK_NORMAL);
    }
    for (size_t i = 0; i < sizeof(EXTRA_CHARS) / sizeof(EXTRA_CHARS[0]); i++)
        vocab_add(v, EXTRA_CHARS[i], -101.0f - (float)i * 0.01f, TOK_NORMAL);
    /* higher scores than single characters, so SPM prefers whole words when it can merge */
    for (size_t i = 0; i < sizeof(WORDS) / sizeof(WORDS[0]); i++) {
        snprintf(buf, sizeof(buf), "\xe2\x96\x81%s", WORDS[i]);
        vocab_add(v, buf, -1.0f - (float)i * 0.01f, TOK_NORMAL);
    }
}

/* ---- model key/values -------------------------------------------------------------------- */

static void
arch_kvs(struct sink *s, const struct opts *o, uint32_t n_vocab)
{
    kv_str(s, "general.architecture", "llama");
    kv_str(s, "general.name", o->name);
    kv_int(s, "general.file_type", T_U32, 0); /* ALL_F32 */
    kv_int(s, "llama.context_length", T_U32, o->ctx);
    kv_int(s, "llama.embedding_length", T_U32, o->embd);
    kv_int(s, "llama.block_count", T_U32, o->layers);
    kv_int(s, "llama.feed_forward_length", T_U32, 2u * o->embd);
    kv_int(s, "llama.attention.head_count", T_U32, N_HEAD);
    kv_int(s, "llama.attention.head_count_kv", T_U32, N_HEAD);
    kv_f32(s, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    /* llama arch insists that n_rot equals the head size */
    kv_int(s, "llama.rope.dimension_count", T_U32, o->embd / N_HEAD);
    kv_int(s, "llama.vocab_size", T_U32, n_vocab);
}

static void
tokenizer_kvs(struct sink *s, const struct vocab *v)
{
    kv_str(s, "tokenizer.ggml.model", "llama");
    kv_arr(s, "tokenizer.ggml.tokens", T_STRING, v->n);
    for (uint32_t i = 0; i < v->n; i++)
        put_str(s, v->tok[i].text);
    kv_arr(s, "tokenizer.ggml.scores", T_F32, v->n);
    for (uint32_t i = 0; i < v->n; i++)
        put_f32(s, v->tok[i].score);
    kv_arr(s, "tokenizer.ggml.token_type", T_I32, v->n);
    for (uint32_t i = 0; i < v->n; i++)
        put_le(s, (uint32_t)v->tok[i].type, 4);
    kv_int(s, "tokenizer.ggml.bos_token_id", T_U32, 1);
    kv_int(s, "tokenizer.ggml.eos_token_id", T_U32, 2);
    kv_int(s, "tokenizer.ggml.unknown_token_id", T_U32, 0);
    kv_int(s, "tokenizer.ggml.add_bos_token", T_BOOL, 1);
    kv_str(s, "tokenizer.chat_template", CHAT_TEMPLATE);
}

/* gguf-split layout: shard 0 carries every KV, the others only the split.* ones. */
static void
model_kvs(struct sink *s, const struct job *j)
{
    if (j->shard == 0) {
        arch_kvs(s, j->o, j->v->n);
        tokenizer_kvs(s, j->v);
    }
    if (j->nshards > 1) {
        /* types as llama-model-loader reads them: u16, u16, i32 */
        kv_int(s, "split.no", T_U16, j->shard);
        kv_int(s, "split.count", T_U16, j->nshards);
        kv_int(s, "split.tensors.count", T_I32, j->total);
    }
}

static void
mmproj_kvs(struct sink *s, const struct job *j)
{
    kv_str(s, "general.architecture", "clip");
    kv_str(s, "general.name", j->o->name);
    kv_int(s, "general.file_type", T_U32, 0);
    kv_int(s, "clip.has_vision_encoder", T_BOOL, 1);
    kv_str(s, "clip.projector_type", "mlp");
    kv_int(s, "clip.vision.projection_dim", T_U32, j->o->embd);
}

/* ---- tensors ----------------------------------------------------------------------------- */

static void
tensor_set(struct tensor *t, const char *name, uint64_t ne0, uint64_t ne1, int ones)
{
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->nd = ne1 == 0 ? 1 : 2;
    t->ne[0] = ne0;
    t->ne[1] = ne1 == 0 ? 1 : ne1;
    t->ones = ones;
}

static void
layer_set(struct tensor *t, uint32_t il, uint64_t embd)
{
    static const struct {
        const char *name;
        int shape;
    } L[] = {
        {"attn_norm", 0}, {"attn_q", 1},   {"attn_k", 1},   {"attn_v", 1}, {"attn_output", 1},
        {"ffn_norm", 0},  {"ffn_gate", 2}, {"ffn_down", 3}, {"ffn_up", 2},
    };

    char name[NAME_LEN];

    for (size_t i = 0; i < sizeof(L) / sizeof(L[0]); i++) {
        /* shapes are ne0 first: [embd], [embd,embd], [embd,ff], [ff,embd] with ff = 2 embd */
        uint64_t ne0 = L[i].shape == 3 ? 2 * embd : embd;
        uint64_t ne1 = L[i].shape == 0 ? 0 : L[i].shape == 2 ? 2 * embd : embd;

        snprintf(name, sizeof(name), "blk.%" PRIu32 ".%s.weight", il, L[i].name);
        tensor_set(&t[i], name, ne0, ne1, L[i].shape == 0);
    }
}

#define TENSORS_PER_LAYER 9u

static struct tensor *
model_tensors(const struct opts *o, uint32_t n_vocab, uint32_t *count)
{
    uint32_t n = 3 + TENSORS_PER_LAYER * o->layers;
    struct tensor *t = calloc(n, sizeof(*t));

    if (t == NULL)
        return NULL;
    tensor_set(&t[0], "token_embd.weight", o->embd, n_vocab, 0);
    for (uint32_t il = 0; il < o->layers; il++)
        layer_set(&t[1 + il * TENSORS_PER_LAYER], il, o->embd);
    tensor_set(&t[n - 2], "output_norm.weight", o->embd, 0, 1);
    tensor_set(&t[n - 1], "output.weight", o->embd, n_vocab, 0);
    *count = n;
    return t;
}

static uint64_t
tensor_bytes(const struct tensor *t)
{
    return t->ne[0] * t->ne[1] * sizeof(float);
}

static uint64_t
splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t
fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Uniform in [-0.1, 0.1): small enough that RMS-normed activations stay finite. */
static void
emit_tensor_data(struct sink *s, const struct tensor *t, uint64_t seed)
{
    uint64_t state = seed ^ fnv1a64(t->name);
    uint64_t n = t->ne[0] * t->ne[1];

    for (uint64_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&state) >> 11) * 0x1.0p-53;

        put_f32(s, t->ones ? 1.0f : (float)((u * 2.0 - 1.0) * 0.1));
    }
    pad(s);
}

static void
emit_tensor_infos(struct sink *s, const struct tensor *t, uint32_t count)
{
    uint64_t offset = 0;

    for (uint32_t i = 0; i < count; i++) {
        put_str(s, t[i].name);
        put_le(s, t[i].nd, 4);
        for (uint32_t d = 0; d < t[i].nd; d++)
            put_le(s, t[i].ne[d], 8);
        put_le(s, 0, 4); /* GGML_TYPE_F32 */
        put_le(s, offset, 8);
        offset += (tensor_bytes(&t[i]) + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
}

static void
emit_gguf(struct sink *s, const struct job *j)
{
    struct sink dry = {0};
    const struct tensor *t = j->t + j->first;

    j->kvs(&dry, j); /* count the KVs first */
    put(s, "GGUF", 4);
    put_le(s, 3, 4);
    put_le(s, j->count, 8);
    put_le(s, dry.nkv, 8);
    j->kvs(s, j);
    emit_tensor_infos(s, t, j->count);
    pad(s);
    for (uint32_t i = 0; i < j->count && s->err == 0; i++)
        emit_tensor_data(s, &t[i], j->o->seed);
}

/* ---- files ------------------------------------------------------------------------------- */

static int
finish_tmp(FILE *f, struct sink *s)
{
    if (s->err == 0 && fflush(f) != 0)
        s->err = errno;
    if (s->err == 0 && fsync(fileno(f)) != 0)
        s->err = errno;
    if (fclose(f) != 0 && s->err == 0)
        s->err = errno;
    return s->err == 0 ? 0 : -1;
}

/* Write to a temp file beside the target then rename, so a crash never leaves half a file. */
static int
write_atomic(const char *path, const struct job *j)
{
    char tmp[PATH_MAX];
    struct sink s = {0};
    mode_t mask = umask(0);

    umask(mask);
    if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
        return fail("create", path, ENAMETOOLONG);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return fail("create", path, errno);
    if (fchmod(fd, 0666 & ~mask) != 0 || (s.f = fdopen(fd, "wb")) == NULL) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return fail("open", path, err);
    }
    emit_gguf(&s, j);
    if (finish_tmp(s.f, &s) != 0) {
        unlink(tmp);
        return fail("write", path, s.err);
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return fail("rename", path, err);
    }
    printf("wrote %s (%" PRIu64 " bytes)\n", path, s.off);
    return 0;
}

/* OUT without its ".gguf" suffix: the prefix gguf-split names its shards after. */
static int
out_prefix(const char *out, char *buf, size_t len)
{
    size_t n = strlen(out);

    if (n > 5 && strcmp(out + n - 5, ".gguf") == 0)
        n -= 5;
    if (n >= len)
        return fail("name", out, ENAMETOOLONG);
    memcpy(buf, out, n);
    buf[n] = '\0';
    return 0;
}

static int
write_model(const struct opts *o, const struct vocab *v, const struct tensor *t, uint32_t n)
{
    char prefix[PATH_MAX], path[PATH_MAX];
    struct job j = {.o = o, .v = v, .t = t, .total = n, .nshards = o->split, .kvs = model_kvs};

    if (o->split <= 1) {
        j.count = n;
        return write_atomic(o->out, &j);
    }
    if (out_prefix(o->out, prefix, sizeof(prefix)) != 0)
        return -1;
    for (uint32_t k = 0; k < o->split; k++) {
        /* contiguous slices; split <= n guarantees each shard at least one tensor */
        j.shard = k;
        j.first = (uint32_t)((uint64_t)k * n / o->split);
        j.count = (uint32_t)((uint64_t)(k + 1) * n / o->split) - j.first;
        if (snprintf(path, sizeof(path), "%s-%05" PRIu32 "-of-%05" PRIu32 ".gguf", prefix, k + 1,
                     o->split) >= (int)sizeof(path))
            return fail("name", prefix, ENAMETOOLONG);
        if (write_atomic(path, &j) != 0)
            return -1;
    }
    return 0;
}

/* A CLIP-shaped stub beside the model: enough header for discovery, not a working projector. */
static int
write_mmproj(const struct opts *o)
{
    char prefix[PATH_MAX], path[PATH_MAX];
    struct tensor t[2];
    struct job j = {.o = o, .t = t, .count = 2, .total = 2, .nshards = 1, .kvs = mmproj_kvs};

    if (out_prefix(o->out, prefix, sizeof(prefix)) != 0)
        return -1;
    char *base = strrchr(prefix, '/');
    int dirlen = base == NULL ? 0 : (int)(base - prefix + 1);
    base = base == NULL ? prefix : base + 1;
    if (snprintf(path, sizeof(path), "%.*smmproj-%s.gguf", dirlen, prefix, base) >=
        (int)sizeof(path))
        return fail("name", prefix, ENAMETOOLONG);
    tensor_set(&t[0], "mm.0.weight", 16, o->embd, 0);
    tensor_set(&t[1], "mm.0.bias", o->embd, 0, 0);
    return write_atomic(path, &j);
}

int
main(int argc, char **argv)
{
    struct opts o;
    static struct vocab v;
    uint32_t n = 0;

    int pa = parse_args(argc, argv, &o);
    if (pa != 0) {
        usage(pa > 0 ? stdout : stderr);
        return pa > 0 ? 0 : 2;
    }
    vocab_build(&v);
    struct tensor *t = model_tensors(&o, v.n, &n);
    if (t == NULL) {
        fail("alloc", "tensors", errno);
        return 1;
    }
    if (o.split > n) {
        fprintf(stderr, "mkmodel: --split %" PRIu32 " exceeds the %" PRIu32 " tensors\n", o.split,
                n);
        usage(stderr);
        free(t);
        return 2;
    }
    int rc = write_model(&o, &v, t, n);
    if (rc == 0 && o.mmproj)
        rc = write_mmproj(&o);
    free(t);
    if (fflush(stdout) != 0)
        rc = fail("write", "stdout", errno);
    return rc == 0 ? 0 : 1;
}
