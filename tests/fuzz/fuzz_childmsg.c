/* libFuzzer target: a child's output line as the child protocol reads it. A configured cmd
 * prints what it likes; the parser must keep bounded stage names, an index inside them and a
 * value in 0..1. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proc/childmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proc_child_msg m;
    const struct proc_progress *p = &m.progress;

    if (proc_child_msg_parse((const char *)data, size, &m) < 0 || !m.has_progress)
        return 0;
    if (p->n_stages > PROC_STAGES_MAX || p->current >= (int)p->n_stages || p->value < 0 ||
        p->value > 1)
        abort();
    for (size_t i = 0; i < p->n_stages; i++)
        if (strnlen(p->stages[i], PROC_STAGE_NAME_MAX) >= PROC_STAGE_NAME_MAX)
            abort();
    return 0;
}
