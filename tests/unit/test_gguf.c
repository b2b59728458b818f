#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "models/gguf.h"

enum {
    T_U8,
    T_I8,
    T_U16,
    T_I16,
    T_U32,
    T_I32,
    T_F32,
    T_BOOL,
    T_STRING,
    T_ARRAY,
    T_U64,
    T_I64,
    T_F64
};

static const unsigned WIDTH[] = {
    [T_U8] = 1,  [T_I8] = 1,   [T_U16] = 2, [T_I16] = 2, [T_U32] = 4, [T_I32] = 4,
    [T_F32] = 4, [T_BOOL] = 1, [T_U64] = 8, [T_I64] = 8, [T_F64] = 8};

static const char CHATML[] = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                             "{{ m['content'] }}<|im_end|>\n{% endfor %}";

/* A tiny GGUF writer: the header's n_kv is patched by finish() from the keys written. */
struct w {
    unsigned char *b;
    size_t len, cap;
    uint64_t nkv;
};

static void
put(struct w *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2;
        w->b = realloc(w->b, w->cap);
        assert_non_null(w->b);
    }
    memcpy(w->b + w->len, p, n);
    w->len += n;
}

static void
put_le(struct w *w, uint64_t v, unsigned n)
{
    unsigned char b[8];

    for (unsigned i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, n);
}

static void
put_str(struct w *w, const char *s)
{
    put_le(w, strlen(s), 8);
    put(w, s, strlen(s));
}

static void
header(struct w *w, uint32_t version, uint64_t n_tensors)
{
    memset(w, 0, sizeof(*w));
    put(w, "GGUF", 4);
    put_le(w, version, 4);
    put_le(w, n_tensors, 8);
    put_le(w, 0, 8);
}

static void
kv(struct w *w, const char *key, uint32_t type)
{
    put_str(w, key);
    put_le(w, type, 4);
    w->nkv++;
}

static void
kv_u(struct w *w, const char *key, uint32_t type, uint64_t v)
{
    kv(w, key, type);
    put_le(w, v, WIDTH[type]);
}

static void
kv_s(struct w *w, const char *key, const char *s)
{
    kv(w, key, T_STRING);
    put_str(w, s);
}

static void
kv_arr(struct w *w, const char *key, uint32_t type, uint64_t count)
{
    kv(w, key, T_ARRAY);
    put_le(w, type, 4);
    put_le(w, count, 8);
}

static void
finish(struct w *w)
{
    for (unsigned i = 0; i < 8; i++)
        w->b[16 + i] = (unsigned char)(w->nkv >> (8 * i));
}

static int
parse(const struct w *w, struct gguf_info *info, char *err, size_t errlen)
{
    return gguf_parse(w->b, w->len, info, err, errlen);
}

/*
 * Every kind of value, the architecture's keys before general.architecture, and tensor-info
 * bytes after the key/value section, which the parser must leave alone. Returns the length of
 * the key/value section.
 */
static size_t
build_full(struct w *w)
{
    size_t end;

    header(w, 3, 7);
    kv_u(w, "llama.context_length", T_U64, 4096);
    kv_s(w, "general.architecture", "llama");
    kv_s(w, "general.name", "Tiny Test");
    kv_u(w, "general.file_type", T_U32, 15);
    kv_u(w, "llama.block_count", T_I32, 22);
    kv_u(w, "llama.embedding_length", T_U16, 2048);
    kv_u(w, "llama.rope.freq_base", T_F32, 0x461c4000);
    kv_u(w, "general.size", T_F64, 0);
    kv_arr(w, "tokenizer.ggml.tokens", T_STRING, 4);
    put_str(w, "<s>");
    put_str(w, "</s>");
    put_str(w, "");
    put_str(w, "hello");
    kv_arr(w, "tokenizer.ggml.scores", T_F32, 4);
    for (int i = 0; i < 4; i++)
        put_le(w, 0, 4);
    kv_arr(w, "test.nested", T_ARRAY, 2);
    put_le(w, T_U16, 4);
    put_le(w, 3, 8);
    put_le(w, 0x010203040506, 6);
    put_le(w, T_STRING, 4);
    put_le(w, 1, 8);
    put_str(w, "inner");
    kv_u(w, "tokenizer.ggml.add_bos_token", T_BOOL, 1);
    kv_s(w, "tokenizer.chat_template", CHATML);
    kv_u(w, "split.no", T_U16, 1);
    kv_u(w, "split.count", T_U16, 3);
    kv_u(w, "general.unrelated", T_I64, UINT64_MAX);
    end = w->len;
    put_str(w, "token_embd.weight");
    put_le(w, 2, 4);
    finish(w);
    return end;
}

static void
parses_fields(void **state)
{
    struct w w;
    struct gguf_info info;
    char err[256];

    (void)state;
    build_full(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_string_equal(info.arch, "llama");
    assert_string_equal(info.name, "Tiny Test");
    assert_int_equal(info.version, 3);
    assert_int_equal(info.n_tensors, 7);
    assert_int_equal(info.n_kv, w.nkv);
    assert_int_equal(info.context_length, 4096);
    assert_int_equal(info.block_count, 22);
    assert_int_equal(info.embedding_length, 2048);
    assert_int_equal(info.file_type, 15);
    assert_string_equal(info.quant, "Q4_K_M");
    assert_true(info.has_chat_template);
    assert_string_equal(info.chat_template, CHATML);
    assert_false(info.is_mmproj);
    assert_int_equal(info.split_no, 1);
    assert_int_equal(info.split_count, 3);
    gguf_info_cleanup(&info);
    gguf_info_cleanup(&info);
    assert_null(info.chat_template);
    free(w.b);
}

static void
defaults_when_absent(void **state)
{
    struct w w;
    struct gguf_info info;
    char err[256];

    (void)state;
    header(&w, 2, 0);
    kv_u(&w, "general.alignment", T_U32, 32);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_int_equal(info.version, 2);
    assert_string_equal(info.arch, "");
    assert_string_equal(info.name, "");
    assert_int_equal(info.context_length, 0);
    assert_int_equal(info.file_type, -1);
    assert_string_equal(info.quant, "");
    assert_false(info.has_chat_template);
    assert_null(info.chat_template);
    assert_int_equal(info.split_count, 0);
    gguf_info_cleanup(&info);
    free(w.b);
}

/* Each prefix of a valid header, copied to its own allocation so ASan sees any over-read. */
static void
every_truncation_asks_for_more(void **state)
{
    struct w w;
    struct gguf_info info;
    char err[256];
    size_t end = build_full(&w);

    (void)state;
    for (size_t len = 0; len < end; len++) {
        unsigned char *copy = len > 0 ? malloc(len) : NULL;

        if (len > 0)
            memcpy(copy, w.b, len);
        err[0] = '\0';
        assert_int_equal(gguf_parse(copy, len, &info, err, sizeof(err)), -EAGAIN);
        assert_true(err[0] != '\0');
        assert_null(info.chat_template);
        free(copy);
    }
    for (size_t len = end; len <= w.len; len++) {
        assert_int_equal(gguf_parse(w.b, len, &info, err, sizeof(err)), 0);
        gguf_info_cleanup(&info);
    }
    free(w.b);
}

static void
expect_einval(const struct w *w, const char *needle)
{
    struct gguf_info info;
    char err[256] = "";

    assert_int_equal(parse(w, &info, err, sizeof(err)), -EINVAL);
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    assert_null(info.chat_template);
    assert_string_equal(info.arch, "");
}

static void
expect_eagain(const struct w *w)
{
    struct gguf_info info;
    char err[256];

    assert_int_equal(parse(w, &info, err, sizeof(err)), -EAGAIN);
}

static void
bad_magic(void **state)
{
    struct w w = {0};
    struct gguf_info info;
    char err[256];

    (void)state;
    put(&w,
        "\x7f"
        "ELF\x02\x01\x01\x00",
        8);
    expect_einval(&w, "not a GGUF file (magic 7f 45 4c 46)");
    w.len = 2;
    expect_einval(&w, "not a GGUF file");
    assert_int_equal(gguf_parse((const unsigned char *)"GG", 2, &info, err, sizeof(err)), -EAGAIN);
    assert_int_equal(gguf_parse((const unsigned char *)"GGx", 3, &info, err, sizeof(err)), -EINVAL);
    free(w.b);
}

static void
versions(void **state)
{
    struct w w;

    (void)state;
    header(&w, 1, 0);
    expect_einval(&w, "unsupported GGUF version 1 (32-bit counts)");
    w.len = 8; /* the version alone is enough to refuse */
    expect_einval(&w, "version 1");
    free(w.b);
    header(&w, 7, 0);
    expect_einval(&w, "unsupported GGUF version 7");
    free(w.b);
    header(&w, 0x03000000, 0);
    expect_einval(&w, "big-endian");
    free(w.b);
    header(&w, 0, 0);
    expect_einval(&w, "unsupported GGUF version 0");
    free(w.b);
}

static void
hostile_counts(void **state)
{
    struct w w;

    (void)state;
    header(&w, 3, 0);
    w.nkv = 1ull << 63;
    finish(&w);
    expect_einval(&w, "9223372036854775808 keys exceed the cap of 65536");
    w.nkv = 65537;
    finish(&w);
    expect_einval(&w, "65537 keys");
    w.nkv = 65536;
    finish(&w);
    expect_eagain(&w);
    free(w.b);

    header(&w, 3, 0);
    put_le(&w, 1ull << 63, 8); /* key length */
    w.nkv = 1;
    finish(&w);
    expect_einval(&w, "key 0: key length 9223372036854775808 exceeds the cap");
    free(w.b);

    header(&w, 3, 0);
    kv(&w, "general.name", T_STRING);
    put_le(&w, 1ull << 63, 8);
    finish(&w);
    expect_einval(&w, "key 0: string length 9223372036854775808 exceeds the cap");
    free(w.b);

    header(&w, 3, 0);
    kv(&w, "general.name", T_STRING);
    put_le(&w, 9999999, 8);
    finish(&w);
    expect_eagain(&w);
    free(w.b);
}

static void
hostile_arrays(void **state)
{
    static const uint32_t types[] = {T_U8, T_U64, T_STRING, T_ARRAY};
    struct w w;

    (void)state;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        header(&w, 3, 0);
        kv_arr(&w, "tokenizer.ggml.tokens", types[i], 1ull << 63);
        finish(&w);
        expect_einval(&w, "key 0: array count 9223372036854775808 exceeds the cap");
        free(w.b);
        /* under the cap, but more than the data holds: read more */
        header(&w, 3, 0);
        kv_arr(&w, "tokenizer.ggml.tokens", types[i], 1u << 30);
        put_le(&w, 0, 8);
        finish(&w);
        expect_eagain(&w);
        free(w.b);
    }
}

/* A token array like a real vocabulary's, then a key after it that must still be found. */
static void
string_array_skipped(void **state)
{
    struct w w;
    struct gguf_info info;
    char err[256], tok[32];

    (void)state;
    header(&w, 3, 0);
    kv_arr(&w, "tokenizer.ggml.tokens", T_STRING, 50000);
    for (int i = 0; i < 50000; i++) {
        snprintf(tok, sizeof(tok), "tok%d", i);
        put_str(&w, tok);
    }
    kv_s(&w, "general.architecture", "qwen2");
    kv_u(&w, "qwen2.context_length", T_U32, 32768);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_string_equal(info.arch, "qwen2");
    assert_int_equal(info.context_length, 32768);
    gguf_info_cleanup(&info);
    /* an element longer than the string cap */
    memcpy(w.b + 24 + 8 + 21 + 4 + 4 + 8, "\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
    expect_einval(&w, "key 0: string length 9223372036854775807 exceeds the cap");
    free(w.b);
}

static void
bad_structure(void **state)
{
    struct w w;

    (void)state;
    header(&w, 3, 0);
    kv_arr(&w, "deep", T_ARRAY, 1);
    put_le(&w, T_ARRAY, 4); /* depth 2: allowed */
    put_le(&w, 1, 8);
    put_le(&w, T_ARRAY, 4); /* depth 3: refused */
    put_le(&w, 0, 8);
    finish(&w);
    expect_einval(&w, "arrays nested deeper than 2");
    free(w.b);

    header(&w, 3, 0);
    kv(&w, "x", 13);
    finish(&w);
    expect_einval(&w, "key 0: unknown value type 13");
    free(w.b);

    header(&w, 3, 0);
    kv_arr(&w, "x", 0xffffffff, 0);
    finish(&w);
    expect_einval(&w, "unknown array element type 4294967295");
    free(w.b);

    header(&w, 3, 0);
    kv_u(&w, "general.alignment", T_U32, 32);
    kv_u(&w, "", T_U32, 1);
    finish(&w);
    expect_einval(&w, "key 1: empty key");
    free(w.b);

    header(&w, 3, 0);
    put_le(&w, GGUF_MAX_KEY + 1, 8);
    w.nkv = 1;
    finish(&w);
    expect_einval(&w, "key length 65537 exceeds the cap");
    free(w.b);
}

static void
integer_widths(void **state)
{
    static const uint32_t types[] = {T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_U64, T_I64};
    struct w w;
    struct gguf_info info;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        header(&w, 3, 0);
        kv_s(&w, "general.architecture", "llama");
        kv_u(&w, "llama.context_length", types[i], 100);
        kv_u(&w, "general.file_type", types[i], 7);
        finish(&w);
        assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
        assert_int_equal(info.context_length, 100);
        assert_string_equal(info.quant, "Q8_0");
        free(w.b);
    }
    header(&w, 3, 0);
    kv_s(&w, "general.architecture", "llama");
    kv_u(&w, "llama.context_length", T_U64, UINT64_MAX);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_true(info.context_length == UINT64_MAX);
    free(w.b);
}

static void
numbers_checked(void **state)
{
    struct w w;

    (void)state;
    header(&w, 3, 0);
    kv_s(&w, "general.architecture", "llama");
    kv_u(&w, "llama.context_length", T_F32, 0x45800000);
    finish(&w);
    expect_einval(&w, "key 1: llama.context_length must be an integer, not f32");
    free(w.b);

    header(&w, 3, 0);
    kv_s(&w, "general.architecture", "llama");
    kv_u(&w, "llama.block_count", T_I32, 0xffffffff);
    finish(&w);
    expect_einval(&w, "llama.block_count is negative (-1)");
    free(w.b);

    header(&w, 3, 0);
    kv_u(&w, "general.file_type", T_I64, 1ull << 63); /* INT64_MIN */
    finish(&w);
    expect_einval(&w, "general.file_type is negative (-9223372036854775808)");
    free(w.b);

    header(&w, 3, 0);
    kv_u(&w, "general.file_type", T_U32, 0x80000000);
    finish(&w);
    expect_einval(&w, "general.file_type 2147483648 is out of range");
    free(w.b);

    header(&w, 3, 0);
    kv_u(&w, "split.count", T_U32, 70000);
    finish(&w);
    expect_einval(&w, "split.count 70000 is out of range");
    free(w.b);
}

static void
strings_checked(void **state)
{
    struct w w;

    (void)state;
    header(&w, 3, 0);
    kv_u(&w, "general.architecture", T_U32, 1);
    finish(&w);
    expect_einval(&w, "general.architecture must be a string, not u32");
    free(w.b);

    header(&w, 3, 0);
    kv_arr(&w, "tokenizer.chat_template", T_STRING, 0);
    finish(&w);
    expect_einval(&w, "tokenizer.chat_template must be a string, not array");
    free(w.b);

    header(&w, 3, 0);
    kv_s(&w, "general.architecture", "a.b c");
    finish(&w);
    expect_einval(&w, "general.architecture has byte 0x20");
    free(w.b);

    header(&w, 3, 0);
    kv_s(&w, "general.architecture", "");
    finish(&w);
    expect_einval(&w, "general.architecture length 0");
    free(w.b);

    header(&w, 3, 0);
    kv_s(&w, "clip.has_vision_encoder", "yes");
    finish(&w);
    expect_einval(&w, "clip.has_vision_encoder must be a bool, not string");
    free(w.b);
}

/* The second template would leak and the second architecture would win silently. */
static void
duplicate_keys(void **state)
{
    struct w w;

    (void)state;
    header(&w, 3, 0);
    kv_s(&w, "tokenizer.chat_template", CHATML);
    kv_s(&w, "tokenizer.chat_template", CHATML);
    finish(&w);
    expect_einval(&w, "key 1: duplicate key tokenizer.chat_template");
    free(w.b);

    header(&w, 3, 0);
    kv_s(&w, "general.architecture", "llama");
    kv_u(&w, "llama.context_length", T_U32, 1);
    kv_u(&w, "llama.context_length", T_U32, 2);
    finish(&w);
    expect_einval(&w, "key 2: duplicate key llama.context_length");
    free(w.b);

    /* one before general.architecture, read by the second pass, one after it */
    header(&w, 3, 0);
    kv_u(&w, "llama.context_length", T_U32, 1);
    kv_s(&w, "general.architecture", "llama");
    kv_u(&w, "llama.context_length", T_U32, 2);
    finish(&w);
    expect_einval(&w, "duplicate key llama.context_length");
    free(w.b);
}

/* Long strings are cut on a UTF-8 boundary, so the JSON that shows them stays valid. */
static void
long_strings_truncated(void **state)
{
    struct w w;
    struct gguf_info info;
    char err[256], name[200];
    char *tmpl = malloc(GGUF_MAX_TEMPLATE + 100);

    (void)state;
    assert_non_null(tmpl);
    memset(tmpl, 'x', GGUF_MAX_TEMPLATE + 99);
    memcpy(tmpl + GGUF_MAX_TEMPLATE - 1, "\xc3\xa9", 2); /* straddles the cap */
    tmpl[GGUF_MAX_TEMPLATE + 99] = '\0';
    memset(name, 'n', sizeof(name) - 1);
    memcpy(name + 125, "\xe2\x82\xac", 3); /* bytes 125..127: the euro sign is cut */
    name[sizeof(name) - 1] = '\0';
    header(&w, 3, 0);
    kv_s(&w, "tokenizer.chat_template", tmpl);
    kv_s(&w, "general.name", name);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_int_equal(strlen(info.chat_template), GGUF_MAX_TEMPLATE - 1);
    assert_int_equal(strlen(info.name), 125);
    gguf_info_cleanup(&info);
    free(w.b);

    header(&w, 3, 0);
    kv(&w, "general.name", T_STRING);
    put_le(&w, 5, 8);
    put(&w, "ab\0cd", 5);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_string_equal(info.name, "ab");
    free(w.b);
    free(tmpl);
}

static void
mmproj_detected(void **state)
{
    struct w w;
    struct gguf_info info;
    char err[256];

    (void)state;
    header(&w, 3, 2);
    kv_s(&w, "general.architecture", "clip");
    kv_u(&w, "clip.has_vision_encoder", T_BOOL, 0);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_true(info.is_mmproj);
    free(w.b);

    header(&w, 3, 2);
    kv_s(&w, "general.architecture", "projector");
    kv_u(&w, "clip.has_vision_encoder", T_BOOL, 1);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_true(info.is_mmproj);
    free(w.b);

    header(&w, 3, 2);
    kv_s(&w, "general.architecture", "llama");
    kv_u(&w, "clip.has_vision_encoder", T_BOOL, 0);
    finish(&w);
    assert_int_equal(parse(&w, &info, err, sizeof(err)), 0);
    assert_false(info.is_mmproj);
    free(w.b);
}

static void
file_type_names(void **state)
{
    (void)state;
    assert_string_equal(gguf_file_type_name(0), "F32");
    assert_string_equal(gguf_file_type_name(1), "F16");
    assert_string_equal(gguf_file_type_name(2), "Q4_0");
    assert_string_equal(gguf_file_type_name(7), "Q8_0");
    assert_string_equal(gguf_file_type_name(15), "Q4_K_M");
    assert_string_equal(gguf_file_type_name(18), "Q6_K");
    assert_string_equal(gguf_file_type_name(30), "IQ4_XS");
    assert_string_equal(gguf_file_type_name(32), "BF16");
    assert_string_equal(gguf_file_type_name(38), "MXFP4_MOE");
    assert_string_equal(gguf_file_type_name(1024 | 15), "Q4_K_M");
    assert_string_equal(gguf_file_type_name(4), "");
    assert_string_equal(gguf_file_type_name(-1), "");
    assert_string_equal(gguf_file_type_name(INT32_MIN), "");
    assert_string_equal(gguf_file_type_name(42), "");
    assert_string_equal(gguf_file_type_name(INT32_MAX), "");
}

static void
null_err_buffer(void **state)
{
    struct w w;
    struct gguf_info info;

    (void)state;
    header(&w, 7, 0);
    assert_int_equal(parse(&w, &info, NULL, 0), -EINVAL);
    free(w.b);
}

static void
write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A vocabulary well past the first 64 KiB read, so the reader has to grow. */
static void
build_big(struct w *w)
{
    char tok[32];

    header(w, 3, 1);
    kv_s(w, "general.architecture", "gemma3");
    kv_arr(w, "tokenizer.ggml.tokens", T_STRING, 40000);
    for (int i = 0; i < 40000; i++) {
        snprintf(tok, sizeof(tok), "token-%d", i);
        put_str(w, tok);
    }
    kv_u(w, "gemma3.context_length", T_U32, 131072);
    kv_s(w, "tokenizer.chat_template", CHATML);
    finish(w);
}

static void
reads_files(void **state)
{
    char path[] = "/tmp/goinfer-test-gguf-XXXXXX", err[512], want[64];
    struct gguf_info info;
    struct w w;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    build_big(&w);
    assert_true(w.len > 4 * GGUF_READ_FIRST_BYTES);
    write_file(path, w.b, w.len);
    assert_int_equal(gguf_read_file(path, 1u << 20, &info, err, sizeof(err)), 0);
    assert_string_equal(info.arch, "gemma3");
    assert_int_equal(info.context_length, 131072);
    assert_string_equal(info.chat_template, CHATML);
    gguf_info_cleanup(&info);
    /* exactly the file's size is enough; one byte less is not */
    assert_int_equal(gguf_read_file(path, w.len, &info, err, sizeof(err)), 0);
    gguf_info_cleanup(&info);
    assert_int_equal(gguf_read_file(path, w.len - 1, &info, err, sizeof(err)), -EMSGSIZE);
    assert_non_null(strstr(err, "GGUF header is longer than"));
    assert_null(info.chat_template);
    /* a truncated file is malformed, not "read more" */
    write_file(path, w.b, w.len - 10);
    assert_int_equal(gguf_read_file(path, 1u << 20, &info, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "key 3: string length %zu exceeds the file", strlen(CHATML));
    assert_non_null(strstr(err, want));
    assert_int_equal(gguf_read_file(path, w.len - 10, &info, err, sizeof(err)), -EINVAL);
    write_file(path, "GGUF\x03\0\0", 7);
    assert_int_equal(gguf_read_file(path, 1u << 20, &info, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "too short"));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(gguf_read_file(path, 1u << 20, &info, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, path));
    assert_int_equal(gguf_read_file("/tmp", 1u << 20, &info, err, sizeof(err)), -EISDIR);
    free(w.b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_fields),
        cmocka_unit_test(defaults_when_absent),
        cmocka_unit_test(every_truncation_asks_for_more),
        cmocka_unit_test(bad_magic),
        cmocka_unit_test(versions),
        cmocka_unit_test(hostile_counts),
        cmocka_unit_test(hostile_arrays),
        cmocka_unit_test(string_array_skipped),
        cmocka_unit_test(bad_structure),
        cmocka_unit_test(integer_widths),
        cmocka_unit_test(numbers_checked),
        cmocka_unit_test(strings_checked),
        cmocka_unit_test(duplicate_keys),
        cmocka_unit_test(long_strings_truncated),
        cmocka_unit_test(mmproj_detected),
        cmocka_unit_test(file_type_names),
        cmocka_unit_test(null_err_buffer),
        cmocka_unit_test(reads_files),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
