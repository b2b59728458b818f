#include "control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

/* A name that can be routed, listed and logged as it is. */
static bool
model_id_ok(const char *id, size_t len)
{
    if (len == 0 || len > TUNNEL_MODEL_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return false;
    return true;
}

/* The version goes to the log and /running: control characters become '?'. */
static void
copy_printable(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    for (; src != NULL && src[i] != '\0' && i + 1 < size; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    dst[i] = '\0';
}

static void
parse_register(struct tunnel_msg *m, json_t *msg)
{
    json_t *list = json_object_get(msg, "models"), *o;
    json_int_t slots = json_integer_value(json_object_get(msg, "slots"));
    size_t i, room = json_array_size(list);

    m->slots = slots > 0 && slots < 100000 ? (unsigned)slots : 1;
    m->admin = json_is_true(json_object_get(msg, "admin"));
    copy_printable(m->version, sizeof(m->version),
                   json_string_value(json_object_get(msg, "version")));
    if (m->version[0] == '\0')
        copy_printable(m->version, sizeof(m->version), "?");
    m->models =
        xcalloc((room < TUNNEL_MAX_MODELS ? room : TUNNEL_MAX_MODELS) + 1, sizeof(*m->models));
    m->index = json_object();
    json_array_foreach (list, i, o) {
        json_t *idv = json_object_get(o, "id");
        const char *id = json_string_value(idv);

        if (id == NULL || !model_id_ok(id, json_string_length(idv)))
            m->bad_id++;
        else if (json_object_get(m->index, id) != NULL)
            continue; /* named twice: once is enough */
        else if (m->n_models == TUNNEL_MAX_MODELS)
            m->over++;
        else {
            json_object_set_new(m->index, id, json_integer((json_int_t)m->n_models));
            m->models[m->n_models++] = (struct tunnel_model){
                .id = xstrdup(id),
                .hot = json_is_true(json_object_get(o, "hot")),
                .vision = json_is_true(json_object_get(o, "vision")),
            };
        }
    }
}

#define STAGES_MAX     4
#define STAGE_NAME_MAX 24

static bool
stage_ok(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (s == NULL || n == 0 || n >= STAGE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* llama.cpp's progress object, rebuilt from the parts that pass: at most STAGES_MAX stage
 * names, a current one, a value clamped to 0..1; NULL when it is not that shape. */
static json_t *
bounded_progress(const json_t *p)
{
    const json_t *stages = json_object_get(p, "stages"), *cur = json_object_get(p, "current");
    double v = json_number_value(json_object_get(p, "value"));
    json_t *out, *st;
    size_t i;

    if (!json_is_number(json_object_get(p, "value")) || v != v || !json_is_array(stages) ||
        json_array_size(stages) > STAGES_MAX || !stage_ok(cur))
        return NULL;
    json_array_foreach (stages, i, st)
        if (!stage_ok(st))
            return NULL;
    out = json_pack("{s:O, s:O, s:f}", "stages", stages, "current", cur, "value",
                    v < 0   ? 0
                    : v > 1 ? 1
                            : v);
    return out;
}

static void
parse_model(struct tunnel_msg *m, json_t *msg)
{
    json_t *idv = json_object_get(msg, "model");
    const char *status = json_string_value(json_object_get(msg, "status"));

    if (json_string_value(idv) == NULL ||
        !model_id_ok(json_string_value(idv), json_string_length(idv)) || status == NULL)
        return;
    m->model = xstrdup(json_string_value(idv));
    m->loading = strcmp(status, "loading") == 0;
    m->loaded = strcmp(status, "loaded") == 0;
    if (m->loading)
        m->progress = bounded_progress(json_object_get(msg, "progress"));
}

void
tunnel_msg_parse(struct tunnel_msg *m, const char *line, size_t len)
{
    json_t *msg = json_loadb(line, len, 0, NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    json_int_t busy;

    memset(m, 0, sizeof(*m));
    if (type == NULL) {
        m->type = TUNNEL_MSG_INVALID;
    } else if (strcmp(type, "register") == 0) {
        m->type = TUNNEL_MSG_REGISTER;
        parse_register(m, msg);
    } else if (strcmp(type, "load") == 0) {
        m->type = TUNNEL_MSG_LOAD;
        busy = json_integer_value(json_object_get(msg, "busy"));
        m->busy = busy < 0 ? 0 : busy > 100000 ? 100000 : (unsigned)busy;
    } else if (strcmp(type, "draining") == 0) {
        m->type = TUNNEL_MSG_DRAINING;
    } else if (strcmp(type, "model") == 0) {
        m->type = TUNNEL_MSG_MODEL;
        parse_model(m, msg);
    } else if (strcmp(type, "drain") == 0) {
        m->type = TUNNEL_MSG_DRAIN;
    } else if (strcmp(type, "reconnect-after") == 0) {
        json_int_t ms = json_integer_value(json_object_get(msg, "ms"));

        m->type = TUNNEL_MSG_RECONNECT_AFTER;
        m->ms = ms > 0 ? (uint64_t)ms : 0;
    } else {
        m->type = TUNNEL_MSG_OTHER;
    }
    json_decref(msg);
}

void
tunnel_msg_cleanup(struct tunnel_msg *m)
{
    for (size_t i = 0; i < m->n_models; i++)
        free(m->models[i].id);
    free(m->models);
    json_decref(m->index);
    free(m->model);
    json_decref(m->progress);
    memset(m, 0, sizeof(*m));
}

char *
tunnel_line_model(const char *model, const char *status, json_t *progress)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "model", "model", model, "status", status);
    char *line;

    if (progress != NULL)
        json_object_set(o, "progress", progress);
    line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return line;
}

int
tunnel_line_load(char *out, size_t size, unsigned busy, unsigned slots)
{
    return snprintf(out, size, "{\"type\":\"load\",\"busy\":%u,\"slots\":%u,\"queue\":0}", busy,
                    slots);
}

int
tunnel_line_goodbye(char *out, size_t size, uint64_t back_in_ms)
{
    return snprintf(out, size, "{\"type\":\"reconnect-after\",\"ms\":%llu}\n{\"type\":\"drain\"}",
                    (unsigned long long)back_in_ms);
}
