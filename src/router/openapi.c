/* GET /api/openapi.json: the route table described in OpenAPI 3.0. */
#include "router/openapi.h"

#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"

static const struct {
    const char *method, *path, *summary;
} summaries[] = {
    {"GET", "/health", "Liveness; with a valid key also the model count and what runs"},
    {"GET", "/.well-known/goinfer-tunnel", "A GPU machine's tunnel upgrade (server mode)"},
    {"GET", "/v1/models",
     "The models, OpenAI's list with llama.cpp's status and llama-swap's fields"},
    {"GET", "/models", "The same list with each file's path, size and GGUF fields"},
    {"GET", "/models/sse", "llama.cpp's feed of model state changes and load progress"},
    {"GET", "/api/events", "The admin app's feed: model state changes and the log"},
    {"GET", "/api/openapi.json", "This description"},
    {"GET", "/ui", "The admin app"},
    {"GET", "/ui/", "The admin app's files"},
    {"GET", "/running", "The model processes, tunnels and configuration warnings"},
    {"POST", "/unload", "Stop every model (busy ones when their requests end)"},
    {"GET", "/unload", "Stop every model (the seed's verb)"},
    {"POST", "/models/unload", "Stop one model: {\"model\": id} (llama.cpp's router API)"},
    {"POST", "/models/load", "Start one model and answer once it is ready: {\"model\": id}"},
    {"POST", "/api/models/unload", "Stop every model (llama-swap's API)"},
    {"GET", "/api/models", "Every model, disabled ones too, with its arguments and figures"},
    {"GET", "/api/models/", "A model's llama-server arguments: /api/models/<id>/args"},
    {"PUT", "/api/models/", "Set a model's arguments, written to its config: {\"args\": ...}"},
    {"GET", "/api/config", "goinfer.yml and llama-swap.yml: path, text, hash, in force or not"},
    {"POST", "/api/config/validate", "Check a candidate text with the loader: errors at lines"},
    {"GET", "/api/config/diff", "The files on disk against the configuration in force"},
    {"PUT", "/api/config/", "Save a file (backup, atomic write, reload): {text, base_hash}"},
    {"POST", "/api/restart", "Graceful restart: a new process takes the listening sockets"},
    {"GET", "/api/engine", "The llama-server in use, the engines installed, the build job"},
    {"GET", "/api/files", "The model files, the folders' free space, uploads and downloads"},
    {"DELETE", "/api/files/", "Delete a model file (?force=1 stops the model using it)"},
    {"POST", "/api/uploads", "Open a resumable upload: {name, size, sha256?}"},
    {"PATCH", "/api/uploads/", "The next chunk of an upload, at its Upload-Offset"},
    {"PUT", "/api/uploads/", "The next chunk of an upload, at its Upload-Offset"},
    {"GET", "/api/uploads/", "Where an upload stands (its offset)"},
    {"DELETE", "/api/uploads/", "Cancel an upload"},
    {"POST", "/api/downloads", "Download a model in the background: {url} or {hf: org/repo:quant}"},
    {"GET", "/api/downloads", "The downloads and their progress"},
    {"DELETE", "/api/downloads/", "Cancel a download"},
    {"POST", "/api/engine/build", "Build llama-server in the background (source, backend, tls)"},
    {"DELETE", "/api/engine/build", "Cancel the build in progress"},
    {"POST", "/api/engine/use", "Switch to an installed engine: {\"engine\": folder|default}"},
    {"POST", "/api/models/", "Enable or disable a model: /api/models/<id>/enable|disable"},
    {"GET", "/api/activity", "The recent requests, newest first (?limit=&before=&model=)"},
    {"GET", "/api/activity/series", "Requests, tokens and tokens/s per model over time"},
    {"GET", "/api/audit", "The audit trail of admin actions"},
    {"GET", "/api/keys", "The virtual keys with their rules and spend (never a secret)"},
    {"POST", "/api/keys",
     "Create a virtual key: {\"name\", \"models\", \"budget_usd\", ...}; its secret is "
     "shown once"},
    {"GET", "/api/keys/", "One virtual key (id or name), with its ledger totals"},
    {"PATCH", "/api/keys/", "Change a virtual key's rules (the fields given)"},
    {"DELETE", "/api/keys/", "Revoke a virtual key and its browser tokens"},
    {"POST", "/v1/tokens",
     "Mint a browser token with a virtual key: {\"origin\", \"models\", \"ttl\", "
     "\"budget_usd\", \"budget_tokens\"}"},
    {"POST", "/api/fleet/load",
     "Load a model on one GPU machine: {\"machine\": pin, \"model\": id}"},
    {"POST", "/api/fleet/unload",
     "Unload a model on one GPU machine: {\"machine\": pin, \"model\": id}"},
    {"POST", "/api/models/unload/", "Stop the model named in the path (llama-swap's API)"},
    {"GET", "/v1/models/", "One model (the openai SDK's models.retrieve)"},
    {"GET", "/logs", "The log history"},
    {"GET", "/logs/stream", "The log history, then each line as it is written"},
    {"POST", "/reload", "Reload the configuration (as SIGHUP does)"},
    {"GET", "/metrics", "Prometheus metrics"},
    {"POST", "/completions", "llama.cpp's completion API"},
    {"POST", "/completion", "llama.cpp's completion API"},
    {"POST", "/infill", "llama.cpp's code infill"},
    {"POST", "/rerank", "Rerank documents"},
    {"POST", "/reranking", "Rerank documents"},
    {"POST", "/tokenize", "Tokenize text"},
    {"POST", "/detokenize", "Detokenize tokens"},
    {"POST", "/embedding", "llama.cpp's embeddings"},
    {"POST", "/embeddings", "llama.cpp's embeddings"},
    {"POST", "/apply-template", "Apply the model's chat template"},
    {"GET", "/props", "llama.cpp's router props, or one model's with ?model="},
    {"GET", "/slots", "llama-server's slots (?model=)"},
    {"GET", "/tools", "llama-server's tools (?model=)"},
    {"POST", "/tools", "Call a llama-server tool (?model=)"},
    {"POST", "/v1/streams/lookup", "Which conversations still stream (llama.cpp's web UI)"},
    {"POST", "/v1/", "Every OpenAI-style route: chat, completions, embeddings, responses..."},
    {"*", "/upstream/", "Straight to one model's llama-server: /upstream/<model>/<path>"},
};

const char *
openapi_summary(const char *method, const char *path)
{
    for (size_t i = 0; i < sizeof(summaries) / sizeof(summaries[0]); i++)
        if (strcmp(summaries[i].method, method) == 0 && strcmp(summaries[i].path, path) == 0)
            return summaries[i].summary;
    return NULL;
}

/* One operation: its summary, and the key it needs. */
static json_t *
operation(const struct openapi_route *r)
{
    const char *summary = openapi_summary(r->method, r->path);
    json_t *op = json_pack("{s:s, s:{s:{s:s}}}", "summary", summary ? summary : "undocumented",
                           "responses", "default", "description",
                           "JSON, or an error in OpenAI's shape {error:{message,type,code}}");

    if (r->access != OPENAPI_PUBLIC)
        json_object_set_new(op, "security",
                            json_pack("[{s:[]}]", r->access == OPENAPI_ADMIN ? "admin" : "user"));
    return op;
}

json_t *
openapi_document(const struct openapi_route *routes, size_t n, const char *version)
{
    static const char *const all[] = {"get", "post", "put", "patch", "delete"};
    json_t *paths = json_object();

    for (size_t i = 0; i < n; i++) {
        const struct openapi_route *r = &routes[i];
        size_t len = strlen(r->path);
        char *path = r->path[len - 1] == '/' ? xasprintf("%s{rest}", r->path) : xstrdup(r->path);
        json_t *item = json_object_get(paths, path);

        if (item == NULL) {
            item = json_object();
            json_object_set_new(paths, path, item);
        }
        for (size_t m = 0; m < sizeof(all) / sizeof(all[0]); m++)
            if (strcmp(r->method, "*") == 0 || strcasecmp(r->method, all[m]) == 0)
                json_object_set_new(item, all[m], operation(r));
        free(path);
    }
    return json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:{s:{s:s, s:s}, s:{s:s, s:s}}}}", "openapi", "3.0.3",
        "info", "title", "Goinfer", "version", version, "description",
        "Keys: Authorization: Bearer <key> (or x-api-key, or Basic with the key as password). "
        "Admin routes need admin_api_key when one is set.",
        "paths", paths, "components", "securitySchemes", "user", "type", "http", "scheme", "bearer",
        "admin", "type", "http", "scheme", "bearer");
}
