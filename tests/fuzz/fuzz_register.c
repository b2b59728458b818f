/* libFuzzer target: a GPU machine's control lines (register, load, draining) as the tunnel
 * server parses them. Whoever holds an allowed client key writes these bytes; the server must
 * keep only valid, bounded names, each once, and an index that agrees with the list. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_models(const struct tunnel_msg *m)
{
    if (m->n_models > TUNNEL_MAX_MODELS || json_object_size(m->index) != m->n_models)
        abort();
    for (size_t i = 0; i < m->n_models; i++) {
        const char *id = m->models[i].id;
        size_t n = strlen(id);
        json_t *at = json_object_get(m->index, id);

        if (n == 0 || n > TUNNEL_MODEL_ID_MAX || at == NULL ||
            json_integer_value(at) != (json_int_t)i)
            abort();
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)id[k] < 0x20 || id[k] == 0x7f)
                abort();
    }
    for (size_t k = 0; m->version[k] != '\0'; k++)
        if ((unsigned char)m->version[k] < 0x20 || m->version[k] == 0x7f)
            abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tunnel_msg m;

    tunnel_msg_parse(&m, (const char *)data, size);
    if (m.type == TUNNEL_MSG_REGISTER) {
        check_models(&m);
        if (m.slots == 0 || m.slots >= 100000)
            abort();
    } else if (m.models != NULL || m.n_models != 0) {
        abort();
    }
    tunnel_msg_cleanup(&m);
    return 0;
}
