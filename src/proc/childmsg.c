#include "childmsg.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

static bool
stage_name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= PROC_STAGE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* {"stages":[...],"current":"...","value":0.5}: false when it is not that shape. */
static bool
read_progress(const json_t *payload, struct proc_progress *p)
{
    const json_t *stages = json_object_get(payload, "stages");
    const json_t *cur = json_object_get(payload, "current");
    const json_t *val = json_object_get(payload, "value");
    size_t i;
    json_t *st;

    memset(p, 0, sizeof(*p));
    p->current = -1;
    if (!json_is_number(val) || (stages != NULL && !json_is_array(stages)))
        return false;
    p->value = json_number_value(val);
    if (isnan(p->value))
        return false;
    p->value = p->value < 0 ? 0 : p->value > 1 ? 1 : p->value;
    json_array_foreach (stages, i, st) {
        if (!json_is_string(st) || p->n_stages == PROC_STAGES_MAX ||
            !stage_name_ok(json_string_value(st), json_string_length(st)))
            return false;
        memcpy(p->stages[p->n_stages++], json_string_value(st), json_string_length(st) + 1);
    }
    for (i = 0; json_is_string(cur) && i < p->n_stages; i++)
        if (strcmp(p->stages[i], json_string_value(cur)) == 0)
            p->current = (int)i;
    if (json_is_string(cur) && p->current < 0 && p->n_stages < PROC_STAGES_MAX &&
        stage_name_ok(json_string_value(cur), json_string_length(cur))) {
        /* a stage outside the plan (or no plan): kept so the listings can name it */
        memcpy(p->stages[p->n_stages], json_string_value(cur), json_string_length(cur) + 1);
        p->current = (int)p->n_stages++;
    }
    return true;
}

int
proc_child_msg_parse(const char *line, size_t len, struct proc_child_msg *out)
{
    static const struct {
        const char *name;
        enum proc_child_state state;
    } states[] = {{"loading", PROC_CHILD_LOADING},
                  {"ready", PROC_CHILD_READY},
                  {"sleeping", PROC_CHILD_SLEEPING}};

    size_t plen = strlen(PROC_CHILD_PREFIX);
    json_t *root;
    const char *state;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (len < plen || memcmp(line, PROC_CHILD_PREFIX, plen) != 0)
        return -EINVAL;
    root = json_loadb(line + plen, len - plen, JSON_REJECT_DUPLICATES, NULL);
    state = json_string_value(json_object_get(root, "state"));
    if (state == NULL)
        goto out;
    out->state = PROC_CHILD_OTHER;
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        if (strcmp(state, states[i].name) == 0)
            out->state = states[i].state;
    if (out->state == PROC_CHILD_LOADING)
        out->has_progress = read_progress(json_object_get(root, "payload"), &out->progress);
    rc = 0;
out:
    json_decref(root);
    return rc;
}
