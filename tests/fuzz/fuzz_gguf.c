/*
 * libFuzzer target for the GGUF header reader. Besides the sanitizers' findings, it traps on
 * a broken contract: a return other than 0, -EAGAIN or -EINVAL, a failure without a message,
 * or a result whose strings are not terminated within their fields.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "models/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_result(const struct gguf_info *info)
{
    if (memchr(info->arch, 0, sizeof(info->arch)) == NULL ||
        memchr(info->name, 0, sizeof(info->name)) == NULL ||
        memchr(info->quant, 0, sizeof(info->quant)) == NULL)
        __builtin_trap();
    if (info->chat_template != NULL && strlen(info->chat_template) > GGUF_MAX_TEMPLATE)
        __builtin_trap();
    if (info->has_chat_template != (info->chat_template != NULL))
        __builtin_trap();
    if (info->n_kv > GGUF_MAX_KV || (info->version != 2 && info->version != 3))
        __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf_info info;
    char err[256];
    int rc;

    rc = gguf_parse(data, size, &info, err, sizeof(err));
    if (rc == 0)
        check_result(&info);
    else if ((rc != -EAGAIN && rc != -EINVAL) || err[0] == '\0' || info.chat_template != NULL)
        __builtin_trap();
    gguf_info_cleanup(&info);
    return 0;
}
