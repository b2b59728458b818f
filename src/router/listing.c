/* Model objects for /v1/models, /v1/models/<id> and GET /models. */
#include "router/listing.h"

#include <string.h>

#include "core/version.h"

static json_t *
strings(char *const *v)
{
    json_t *a = json_array();

    for (; v != NULL && *v != NULL; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

/* Without surrounding white space, as llama-swap shows name and description. */
static json_t *
trimmed(const char *s)
{
    size_t n;

    s += strspn(s, " \t\r\n");
    n = strlen(s);
    while (n > 0 && strchr(" \t\r\n", s[n - 1]) != NULL)
        n--;
    return json_stringn(s, n);
}

static bool
has(char *const *v, const char *s)
{
    for (; v != NULL && *v != NULL; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

/* "text+image->text", as llama-swap and OpenRouter write a modality. */
static json_t *
modality(char *const *in, char *const *out)
{
    char buf[128] = "";

    for (char *const *v = in; *v; v++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", v == in ? "" : "+", *v);
    snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "->");
    for (char *const *v = out; *v; v++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", v == out ? "" : "+", *v);
    return json_string(buf);
}

/* architecture: the configured capabilities, else what the files say (a projector: image). */
static json_t *
architecture(const struct model_def *m)
{
    const struct conf_caps *c = &m->caps;
    json_t *a = json_object();

    if (c->in != NULL || c->out != NULL) {
        if (c->in != NULL)
            json_object_set_new(a, "input_modalities", strings(c->in));
        if (c->out != NULL)
            json_object_set_new(a, "output_modalities", strings(c->out));
        if (c->in != NULL && c->out != NULL)
            json_object_set_new(a, "modality", modality(c->in, c->out));
        return a;
    }
    json_object_set_new(a, "input_modalities",
                        m->mmproj ? json_pack("[s,s]", "text", "image") : json_pack("[s]", "text"));
    json_object_set_new(a, "output_modalities", json_pack("[s]", "text"));
    return a;
}

/* llama-swap's capabilities object and supported_parameters, from its capabilities: key. */
static void
capabilities(json_t *o, const struct model_def *m)
{
    const struct conf_caps *c = &m->caps;
    json_t *caps = json_object();

    if (has(c->in, "image") || (c->in == NULL && m->mmproj != NULL))
        json_object_set_new(caps, "vision", json_true());
    if (has(c->in, "audio") && has(c->out, "text"))
        json_object_set_new(caps, "audio_transcriptions", json_true());
    if (has(c->in, "text") && has(c->out, "audio"))
        json_object_set_new(caps, "audio_speech", json_true());
    if (has(c->in, "text") && has(c->out, "image"))
        json_object_set_new(caps, "image_generation", json_true());
    if (has(c->in, "image") && has(c->out, "image"))
        json_object_set_new(caps, "image_to_image", json_true());
    if (c->tools) {
        json_object_set_new(caps, "function_calling", json_true());
        json_object_set_new(o, "supported_parameters", json_pack("[s,s]", "tools", "tool_choice"));
    }
    if (c->reranker)
        json_object_set_new(caps, "reranker", json_true());
    if (json_object_size(caps) > 0)
        json_object_set_new(o, "capabilities", caps);
    else
        json_decref(caps);
}

/* meta.llamaswap: the configured metadata (without the keys the capabilities own) and what
 * the entry is (a model, or an alias of one); meta.n_ctx: the context length. */
static void
meta(json_t *o, const struct model_def *m, const char *id, uint64_t n_ctx)
{
    static const char *const owned[] = {"architecture", "capabilities", "supported_parameters",
                                        "context_length"};
    json_t *swap = m->metadata ? json_loads(m->metadata, JSON_DECODE_ANY, NULL) : NULL;

    if (!json_is_object(swap)) {
        json_decref(swap);
        swap = json_object();
    }
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
        json_object_del(swap, owned[i]);
    if (strcmp(id, m->name) != 0) {
        json_object_set_new(swap, "type", json_string("alias"));
        json_object_set_new(swap, "modelID", json_string(m->name));
    } else {
        json_object_set_new(swap, "type", json_string("model"));
        if (m->aliases != NULL && m->aliases[0] != NULL)
            json_object_set_new(swap, "aliases", strings(m->aliases));
    }
    json_object_set_new(o, "meta", json_pack("{s:o}", "llamaswap", swap));
    if (n_ctx > 0)
        json_object_set_new(json_object_get(o, "meta"), "n_ctx", json_integer((json_int_t)n_ctx));
}

/* The file: path, size, shards, projector, and the GGUF header's fields (or why unreadable). */
static void
gguf_fields(json_t *o, const struct model_def *m)
{
    json_object_set_new(o, "vision", json_boolean(m->mmproj != NULL));
    if (m->path == NULL)
        return;
    json_object_set_new(o, "path", json_string(m->path));
    json_object_set_new(o, "size", json_integer((json_int_t)m->size));
    json_object_set_new(o, "shards", json_integer(m->shards));
    if (m->mmproj != NULL)
        json_object_set_new(o, "mmproj", json_string(m->mmproj));
    if (!m->meta.ok) {
        json_object_set_new(o, "gguf", json_pack("{s:s}", "error", m->meta.error));
        return;
    }
    json_object_set_new(o, "gguf",
                        json_pack("{s:s, s:I, s:s, s:b}", "architecture", m->meta.arch,
                                  "context_length", (json_int_t)m->meta.context_length,
                                  "quantization", m->meta.quant, "chat_template",
                                  m->meta.has_chat_template));
}

json_t *
listing_model(const struct model_def *m, const char *id, json_t *status, json_int_t created,
              bool gguf)
{
    uint64_t n_ctx = m->caps.context ? m->caps.context : m->meta.ok ? m->meta.context_length : 0;
    json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created", created,
                          "owned_by", "goinfer");

    if (m->display_name != NULL)
        json_object_set_new(o, "name", trimmed(m->display_name));
    if (m->description != NULL)
        json_object_set_new(o, "description", trimmed(m->description));
    json_object_set_new(o, "aliases", strings(m->aliases));
    json_object_set_new(o, "architecture", architecture(m));
    capabilities(o, m);
    if (n_ctx > 0)
        json_object_set_new(o, "context_length", json_integer((json_int_t)n_ctx));
    meta(o, m, id, n_ctx);
    json_object_set_new(o, "status", status);
    if (gguf)
        gguf_fields(o, m);
    return o;
}

json_t *
listing_router_props(void)
{
    return json_pack("{s:s, s:i, s:b, s:s, s:s, s:{s:{}, s:i}, s:{}, s:s, s:b}", "role", "router",
                     "max_instances", 1, "models_autoload", 1, "model_alias", "goinfer",
                     "model_path", "none", "default_generation_settings", "params", "n_ctx", 0,
                     "ui_settings", "build_info", goinfer_version, "cors_proxy_enabled", 0);
}
