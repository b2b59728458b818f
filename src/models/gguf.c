#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/xmalloc.h"

#define GGUF_HEADER_BYTES 24 /* magic, version, n_tensors, n_kv */
#define GGUF_NO_KEY       UINT64_MAX
#define GGUF_NELEM(a)     (sizeof(a) / sizeof((a)[0]))

/* Value types, numbered as in ggml/include/gguf.h. */
enum gguf_type {
    GGUF_T_U8,
    GGUF_T_I8,
    GGUF_T_U16,
    GGUF_T_I16,
    GGUF_T_U32,
    GGUF_T_I32,
    GGUF_T_F32,
    GGUF_T_BOOL,
    GGUF_T_STRING,
    GGUF_T_ARRAY,
    GGUF_T_U64,
    GGUF_T_I64,
    GGUF_T_F64,
    GGUF_T_COUNT
};

static const struct {
    const char *name;
    unsigned size; /* bytes of a scalar; 0 for string and array, whose size is in the data */
    bool is_int, is_signed;
} TYPES[GGUF_T_COUNT] = {
    [GGUF_T_U8] = {"u8", 1, true, false},          [GGUF_T_I8] = {"i8", 1, true, true},
    [GGUF_T_U16] = {"u16", 2, true, false},        [GGUF_T_I16] = {"i16", 2, true, true},
    [GGUF_T_U32] = {"u32", 4, true, false},        [GGUF_T_I32] = {"i32", 4, true, true},
    [GGUF_T_F32] = {"f32", 4, false, false},       [GGUF_T_BOOL] = {"bool", 1, false, false},
    [GGUF_T_STRING] = {"string", 0, false, false}, [GGUF_T_ARRAY] = {"array", 0, false, false},
    [GGUF_T_U64] = {"u64", 8, true, false},        [GGUF_T_I64] = {"i64", 8, true, true},
    [GGUF_T_F64] = {"f64", 8, false, false},
};

/* The header fields we keep; each is a bit in parser.seen, against duplicate keys. */
enum field {
    F_ARCH,
    F_NAME,
    F_FILE_TYPE,
    F_TEMPLATE,
    F_VISION,
    F_SPLIT_NO,
    F_SPLIT_COUNT,
    F_CONTEXT,
    F_BLOCKS,
    F_EMBD,
    F_PROJ_VISION,
    F_PROJ_AUDIO,
    F_NONE
};

struct key_field {
    const char *key;
    enum field f;
};

/* Whole keys, looked for in the first pass. */
static const struct key_field GENERAL_KEYS[] = {
    {"general.architecture", F_ARCH},
    {"general.name", F_NAME},
    {"general.file_type", F_FILE_TYPE},
    {"tokenizer.chat_template", F_TEMPLATE},
    {"clip.has_vision_encoder", F_VISION},
    {"split.no", F_SPLIT_NO},
    {"split.count", F_SPLIT_COUNT},
    {"clip.vision.projection_dim", F_PROJ_VISION},
    {"clip.audio.projection_dim", F_PROJ_AUDIO},
};

/* "<arch>" followed by these, looked for once general.architecture has been read. */
static const struct key_field ARCH_KEYS[] = {
    {".context_length", F_CONTEXT},
    {".block_count", F_BLOCKS},
    {".embedding_length", F_EMBD},
};

/* llama_ftype (include/llama.h) as quantized files are usually named. */
static const char *const FILE_TYPES[] = {
    [0] = "F32",        [1] = "F16",       [2] = "Q4_0",      [3] = "Q4_1",    [7] = "Q8_0",
    [8] = "Q5_0",       [9] = "Q5_1",      [10] = "Q2_K",     [11] = "Q3_K_S", [12] = "Q3_K_M",
    [13] = "Q3_K_L",    [14] = "Q4_K_S",   [15] = "Q4_K_M",   [16] = "Q5_K_S", [17] = "Q5_K_M",
    [18] = "Q6_K",      [19] = "IQ2_XXS",  [20] = "IQ2_XS",   [21] = "Q2_K_S", [22] = "IQ3_XS",
    [23] = "IQ3_XXS",   [24] = "IQ1_S",    [25] = "IQ4_NL",   [26] = "IQ3_S",  [27] = "IQ3_M",
    [28] = "IQ2_S",     [29] = "IQ2_M",    [30] = "IQ4_XS",   [31] = "IQ1_M",  [32] = "BF16",
    [33] = "Q4_0_4_4",  [34] = "Q4_0_4_8", [35] = "Q4_0_8_8", [36] = "TQ1_0",  [37] = "TQ2_0",
    [38] = "MXFP4_MOE", [39] = "NVFP4",    [40] = "Q1_0",     [41] = "Q2_0",
};

#define LLAMA_FTYPE_GUESSED 1024 /* set by llama.cpp, not by files; ignored */

struct cursor {
    const unsigned char *p, *end;
};

struct parser {
    struct cursor c;
    struct gguf_info *out;
    char *err;
    size_t errlen;
    uint64_t key;      /* index of the key being read, GGUF_NO_KEY in the fixed header */
    int pass;          /* 1: all keys, 2: "<arch>." keys before general.architecture */
    uint64_t arch_key; /* index of general.architecture */
    unsigned seen;
};

/* A scalar or a string; arrays are skipped and leave only their type. */
struct value {
    uint32_t type;
    uint64_t u; /* integer or bool, the magnitude when neg */
    bool neg;
    const unsigned char *s; /* string bytes s[0..n), not NUL-terminated */
    uint64_t n;
};

static int skip_array(struct parser *ps, int depth);
static int fail(struct parser *ps, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "key N: " and the message into err; returns rc so callers can return fail(...). */
static int
fail(struct parser *ps, int rc, const char *fmt, ...)
{
    va_list ap;
    size_t off = 0;
    int n;

    if (ps->err == NULL || ps->errlen == 0)
        return rc;
    if (ps->key != GGUF_NO_KEY) {
        n = snprintf(ps->err, ps->errlen, "key %" PRIu64 ": ", ps->key);
        if (n > 0)
            off = (size_t)n < ps->errlen ? (size_t)n : ps->errlen - 1;
    }
    va_start(ap, fmt);
    /* a truncated message is still a message */
    (void)vsnprintf(ps->err + off, ps->errlen - off, fmt, ap);
    va_end(ap);
    return rc;
}

static size_t
left(const struct cursor *c)
{
    return (size_t)(c->end - c->p);
}

static uint64_t
le(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = n; i > 0; i--)
        v = v << 8 | p[i - 1];
    return v;
}

/* Reads an n-byte little-endian integer; -EAGAIN, cursor unmoved, when the data ends first. */
static int
take_le(struct cursor *c, unsigned n, uint64_t *v)
{
    if (left(c) < n)
        return -EAGAIN;
    *v = le(c->p, n);
    c->p += n;
    return 0;
}

static int
read_string(struct parser *ps, uint64_t max, const char *what, struct value *v)
{
    uint64_t n;

    if (take_le(&ps->c, 8, &n) != 0)
        return fail(ps, -EAGAIN, "%s length exceeds the file", what);
    if (n > max)
        return fail(ps, -EINVAL, "%s length %" PRIu64 " exceeds the cap of %" PRIu64 " bytes", what,
                    n, max);
    if (left(&ps->c) < n)
        return fail(ps, -EAGAIN, "%s length %" PRIu64 " exceeds the file", what, n);
    v->type = GGUF_T_STRING;
    v->s = ps->c.p;
    v->n = n;
    ps->c.p += n;
    return 0;
}

static int
read_scalar(struct parser *ps, uint32_t type, struct value *v)
{
    unsigned size = TYPES[type].size;
    uint64_t u, mask = size < 8 ? ((uint64_t)1 << (8 * size)) - 1 : UINT64_MAX;

    if (take_le(&ps->c, size, &u) != 0)
        return fail(ps, -EAGAIN, "%s value exceeds the file", TYPES[type].name);
    v->type = type;
    v->neg = TYPES[type].is_signed && (u & ((mask >> 1) + 1)) != 0;
    /* the magnitude of a negative value, without overflowing on the most negative one */
    v->u = v->neg ? ((~u & mask) + 1) : u;
    return 0;
}

/* One value of a known type; depth is how many arrays enclose it. */
static int
read_value(struct parser *ps, uint64_t type, int depth, struct value *v)
{
    memset(v, 0, sizeof(*v));
    if (type >= GGUF_T_COUNT)
        return fail(ps, -EINVAL, "unknown value type %" PRIu64, type);
    if (type == GGUF_T_STRING)
        return read_string(ps, GGUF_MAX_STRING, "string", v);
    if (type == GGUF_T_ARRAY) {
        v->type = GGUF_T_ARRAY;
        return skip_array(ps, depth + 1);
    }
    return read_scalar(ps, (uint32_t)type, v);
}

/*
 * Skips an array without allocating: fixed-size elements in one step, strings and inner arrays
 * one by one. The count is first checked against the bytes its elements need at the least, so
 * the loop runs at most len / 8 times whatever count the file claims.
 */
static int
skip_array(struct parser *ps, int depth)
{
    uint64_t type, count, min;
    struct value v;
    int rc;

    if (depth > GGUF_MAX_ARRAY_DEPTH)
        return fail(ps, -EINVAL, "arrays nested deeper than %d", GGUF_MAX_ARRAY_DEPTH);
    if (take_le(&ps->c, 4, &type) != 0 || take_le(&ps->c, 8, &count) != 0)
        return fail(ps, -EAGAIN, "array header exceeds the file");
    if (type >= GGUF_T_COUNT)
        return fail(ps, -EINVAL, "unknown array element type %" PRIu64, type);
    if (count > GGUF_MAX_ARRAY_ELEMS)
        return fail(ps, -EINVAL, "array count %" PRIu64 " exceeds the cap of %u", count,
                    GGUF_MAX_ARRAY_ELEMS);
    min = TYPES[type].size != 0 ? TYPES[type].size : type == GGUF_T_STRING ? 8 : 12;
    if (count * min > left(&ps->c))
        return fail(ps, -EAGAIN, "array of %" PRIu64 " %s exceeds the file", count,
                    TYPES[type].name);
    if (TYPES[type].size != 0) {
        ps->c.p += count * min;
        return 0;
    }
    for (uint64_t i = 0; i < count; i++) {
        rc = read_value(ps, type, depth, &v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The length of the longest prefix of s[0..n) within max bytes that ends on a UTF-8 boundary. */
static size_t
utf8_cut(const unsigned char *s, uint64_t n, size_t max)
{
    size_t cut;
    int back = 0;

    if (n <= max)
        return (size_t)n;
    cut = max;
    /* back off at most 3 continuation bytes: a longer run is not UTF-8 and left as it is */
    while (cut > 0 && back < 3 && (s[cut] & 0xc0) == 0x80) {
        cut--;
        back++;
    }
    return (s[cut] & 0xc0) == 0x80 ? max : cut;
}

/* How much of a string value to keep: up to its first NUL, at most max bytes, whole UTF-8. */
static size_t
text_len(const struct value *v, size_t max)
{
    const unsigned char *nul = memchr(v->s, 0, (size_t)v->n);

    return utf8_cut(v->s, nul != NULL ? (uint64_t)(nul - v->s) : v->n, max);
}

/* The architecture names keys ("<arch>.context_length"), so it must be a plain identifier. */
static int
store_arch(struct parser *ps, const struct value *v)
{
    if (v->n == 0 || v->n >= sizeof(ps->out->arch))
        return fail(ps, -EINVAL, "general.architecture length %" PRIu64 " is not 1 to %zu", v->n,
                    sizeof(ps->out->arch) - 1);
    for (uint64_t i = 0; i < v->n; i++) {
        if (v->s[i] <= ' ' || v->s[i] > '~')
            return fail(ps, -EINVAL, "general.architecture has byte 0x%02x", v->s[i]);
    }
    memcpy(ps->out->arch, v->s, (size_t)v->n);
    ps->out->arch[v->n] = '\0';
    ps->arch_key = ps->key;
    return 0;
}

static int
store_string(struct parser *ps, enum field f, const char *key, const struct value *v)
{
    struct gguf_info *o = ps->out;
    size_t n;

    if (v->type != GGUF_T_STRING)
        return fail(ps, -EINVAL, "%s must be a string, not %s", key, TYPES[v->type].name);
    switch (f) {
    case F_ARCH:
        return store_arch(ps, v);
    case F_NAME:
        n = text_len(v, sizeof(o->name) - 1);
        memcpy(o->name, v->s, n);
        o->name[n] = '\0';
        return 0;
    default:
        o->has_chat_template = true;
        o->chat_template = xstrndup((const char *)v->s, text_len(v, GGUF_MAX_TEMPLATE));
        return 0;
    }
}

static int
store_number(struct parser *ps, enum field f, const char *key, const struct value *v)
{
    static const uint64_t max[] = {
        [F_FILE_TYPE] = INT32_MAX,    [F_SPLIT_NO] = UINT16_MAX,  [F_SPLIT_COUNT] = UINT16_MAX,
        [F_CONTEXT] = UINT64_MAX,     [F_BLOCKS] = UINT64_MAX,    [F_EMBD] = UINT64_MAX,
        [F_PROJ_VISION] = UINT64_MAX, [F_PROJ_AUDIO] = UINT64_MAX};
    struct gguf_info *o = ps->out;

    if (!TYPES[v->type].is_int)
        return fail(ps, -EINVAL, "%s must be an integer, not %s", key, TYPES[v->type].name);
    if (v->neg)
        return fail(ps, -EINVAL, "%s is negative (-%" PRIu64 ")", key, v->u);
    if (v->u > max[f])
        return fail(ps, -EINVAL, "%s %" PRIu64 " is out of range", key, v->u);
    if (f == F_FILE_TYPE) {
        o->file_type = (int32_t)v->u;
        /* every name is shorter than quant */
        (void)snprintf(o->quant, sizeof(o->quant), "%s", gguf_file_type_name(o->file_type));
    } else if (f == F_SPLIT_NO) {
        o->split_no = (uint16_t)v->u;
    } else if (f == F_SPLIT_COUNT) {
        o->split_count = (uint16_t)v->u;
    } else if (f == F_CONTEXT) {
        o->context_length = v->u;
    } else if (f == F_BLOCKS) {
        o->block_count = v->u;
    } else if (f == F_PROJ_VISION || f == F_PROJ_AUDIO) {
        if (f == F_PROJ_VISION || o->projection_dim == 0)
            o->projection_dim = v->u; /* the vision encoder's, when a file has both */
    } else {
        o->embedding_length = v->u;
    }
    return 0;
}

static int
store(struct parser *ps, enum field f, const char *key, const struct value *v)
{
    if ((ps->seen & 1u << f) != 0)
        return fail(ps, -EINVAL, "duplicate key %s", key);
    ps->seen |= 1u << f;
    switch (f) {
    case F_ARCH:
    case F_NAME:
    case F_TEMPLATE:
        return store_string(ps, f, key, v);
    case F_VISION:
        if (v->type != GGUF_T_BOOL && !TYPES[v->type].is_int)
            return fail(ps, -EINVAL, "%s must be a bool, not %s", key, TYPES[v->type].name);
        ps->out->is_mmproj = ps->out->is_mmproj || v->u != 0;
        return 0;
    default:
        return store_number(ps, f, key, v);
    }
}

/*
 * Which field a key holds: the first pass looks for whole keys, and for the architecture's keys
 * once it has read general.architecture; the second only for the architecture's keys.
 */
static enum field
match_key(const struct parser *ps, const struct value *k, const char **name)
{
    const char *arch = ps->out->arch;
    size_t alen = strlen(arch);

    for (size_t i = 0; ps->pass == 1 && i < GGUF_NELEM(GENERAL_KEYS); i++) {
        *name = GENERAL_KEYS[i].key;
        if (k->n == strlen(*name) && memcmp(k->s, *name, (size_t)k->n) == 0)
            return GENERAL_KEYS[i].f;
    }
    if (alen == 0 || k->n <= alen || memcmp(k->s, arch, alen) != 0)
        return F_NONE;
    for (size_t i = 0; i < GGUF_NELEM(ARCH_KEYS); i++) {
        *name = ARCH_KEYS[i].key;
        if (k->n - alen == strlen(*name) && memcmp(k->s + alen, *name, (size_t)k->n - alen) == 0)
            return ARCH_KEYS[i].f;
    }
    return F_NONE;
}

static int
read_kv(struct parser *ps)
{
    struct value k = {0}, v;
    const char *name = NULL;
    char full[sizeof(ps->out->arch) + 32];
    enum field f;
    uint64_t type;
    int rc;

    rc = read_string(ps, GGUF_MAX_KEY, "key", &k);
    if (rc != 0)
        return rc;
    if (k.n == 0)
        return fail(ps, -EINVAL, "empty key");
    if (take_le(&ps->c, 4, &type) != 0)
        return fail(ps, -EAGAIN, "value type exceeds the file");
    rc = read_value(ps, type, 0, &v);
    if (rc != 0)
        return rc;
    f = match_key(ps, &k, &name);
    if (f == F_NONE)
        return 0;
    if (f >= F_CONTEXT) {
        /* "<arch>.context_length" for messages; arch is printable and short */
        (void)snprintf(full, sizeof(full), "%s%s", ps->out->arch, name);
        name = full;
    }
    return store(ps, f, name, &v);
}

static int
read_kvs(struct parser *ps, int pass, uint64_t n)
{
    int rc;

    ps->pass = pass;
    for (uint64_t i = 0; i < n; i++) {
        ps->key = i;
        rc = read_kv(ps);
        if (rc != 0)
            return rc;
    }
    ps->key = GGUF_NO_KEY;
    return 0;
}

static int
check_version(struct parser *ps, uint32_t v)
{
    if (v == 2 || v == 3)
        return 0;
    if (v == 1)
        return fail(ps, -EINVAL,
                    "unsupported GGUF version 1 (32-bit counts); convert the file "
                    "with a current llama.cpp");
    if (v > 0xffff && (v & 0xffff) == 0)
        return fail(ps, -EINVAL, "unsupported GGUF version %" PRIu32 " (a big-endian file?)", v);
    return fail(ps, -EINVAL, "unsupported GGUF version %" PRIu32, v);
}

static int
read_header(struct parser *ps)
{
    static const unsigned char magic[4] = {'G', 'G', 'U', 'F'};
    const unsigned char *p = ps->c.p;
    size_t have = left(&ps->c) < 4 ? left(&ps->c) : 4;
    struct gguf_info *o = ps->out;
    int rc;

    if (have > 0 && memcmp(p, magic, have) != 0)
        return fail(ps, -EINVAL, "not a GGUF file (magic %02x %02x %02x %02x)", p[0],
                    have > 1 ? p[1] : 0, have > 2 ? p[2] : 0, have > 3 ? p[3] : 0);
    if (left(&ps->c) < 8)
        return fail(ps, -EAGAIN, "file too short for a GGUF header (%zu bytes)", left(&ps->c));
    o->version = (uint32_t)le(p + 4, 4);
    rc = check_version(ps, o->version);
    if (rc != 0)
        return rc;
    if (left(&ps->c) < GGUF_HEADER_BYTES)
        return fail(ps, -EAGAIN, "file too short for a GGUF header (%zu bytes)", left(&ps->c));
    o->n_tensors = le(p + 8, 8);
    o->n_kv = le(p + 16, 8);
    ps->c.p += GGUF_HEADER_BYTES;
    if (o->n_kv > GGUF_MAX_KV)
        return fail(ps, -EINVAL, "%" PRIu64 " keys exceed the cap of %u", o->n_kv, GGUF_MAX_KV);
    return 0;
}

static void
info_reset(struct gguf_info *info)
{
    memset(info, 0, sizeof(*info));
    info->file_type = -1;
    info->chat_template = NULL;
}

/*
 * "<arch>.context_length" may come before general.architecture, and remembering every key that
 * might be it would need an allocation the file controls; so a second pass reads the keys
 * before general.architecture again, usually none.
 */
int
gguf_parse(const unsigned char *buf, size_t len, struct gguf_info *out, char *err, size_t errlen)
{
    struct parser ps = {.c = {buf, buf != NULL ? buf + len : buf},
                        .out = out,
                        .err = err,
                        .errlen = errlen,
                        .key = GGUF_NO_KEY};
    const unsigned char *kvs;
    int rc;

    info_reset(out);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    rc = read_header(&ps);
    if (rc != 0)
        goto fail;
    kvs = ps.c.p;
    rc = read_kvs(&ps, 1, out->n_kv);
    if (rc == 0 && out->arch[0] != '\0') {
        ps.c.p = kvs;
        rc = read_kvs(&ps, 2, ps.arch_key);
    }
    if (rc != 0)
        goto fail;
    out->is_mmproj = out->is_mmproj || strcmp(out->arch, "clip") == 0;
    return 0;
fail:
    gguf_info_cleanup(out);
    info_reset(out);
    return rc;
}

void
gguf_info_cleanup(struct gguf_info *info)
{
    free(info->chat_template);
    info->chat_template = NULL;
}

const char *
gguf_file_type_name(int32_t file_type)
{
    int32_t t = file_type & ~LLAMA_FTYPE_GUESSED;

    if (file_type < 0 || (size_t)t >= GGUF_NELEM(FILE_TYPES) || FILE_TYPES[t] == NULL)
        return "";
    return FILE_TYPES[t];
}

/* The start of a file, read in growing steps. */
struct file_buf {
    int fd;
    unsigned char *buf;
    size_t len, cap;
    bool eof;
};

/* Reads until the buffer is full or the file ends; 0 or a negative errno. */
static int
fill(struct file_buf *f)
{
    ssize_t n;

    while (f->len < f->cap && !f->eof) {
        n = read(f->fd, f->buf + f->len, f->cap - f->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        f->eof = n == 0;
        f->len += (size_t)n;
    }
    return 0;
}

/*
 * After -EAGAIN on a full buffer: doubles it up to max. Returns 0, -EINVAL when the file has
 * ended (the header is truncated), -EMSGSIZE when it goes on past max, or a read error.
 */
static int
grow(struct file_buf *f, size_t max)
{
    unsigned char probe;
    ssize_t n;

    if (f->eof)
        return -EINVAL;
    if (f->cap < max) {
        f->cap = f->cap > max / 2 ? max : f->cap * 2;
        f->buf = xrealloc(f->buf, f->cap);
        return 0;
    }
    do {
        n = read(f->fd, &probe, 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == 0 ? -EINVAL : -EMSGSIZE;
}

int
gguf_read_file(const char *path, size_t max_bytes, struct gguf_info *out, char *err, size_t errlen)
{
    struct file_buf f = {.fd = -1};
    char msg[256] = "";
    int rc;

    info_reset(out);
    f.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) {
        rc = -errno;
        goto out;
    }
    f.cap = max_bytes < GGUF_READ_FIRST_BYTES ? max_bytes : GGUF_READ_FIRST_BYTES;
    f.buf = xmalloc(f.cap);
    for (;;) {
        rc = fill(&f);
        if (rc == 0)
            rc = gguf_parse(f.buf, f.len, out, msg, sizeof(msg));
        if (rc != -EAGAIN)
            break;
        rc = grow(&f, max_bytes);
        if (rc != 0)
            break;
    }
out:
    if (rc == -EMSGSIZE)
        (void)snprintf(msg, sizeof(msg), "GGUF header is longer than %zu bytes", max_bytes);
    else if (rc != 0 && rc != -EINVAL)
        (void)snprintf(msg, sizeof(msg), "%s", strerror(-rc));
    if (rc != 0 && err != NULL && errlen > 0)
        (void)snprintf(err, errlen, "%s: %s", path, msg);
    if (f.fd >= 0)
        (void)close(f.fd);
    free(f.buf);
    return rc;
}
