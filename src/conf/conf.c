#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/sections.h"
#include "conf/swapconf.h"
#include "conf/yaml.h"
#include "core/buf.h"
#include "core/version.h"
#include "core/xmalloc.h"

/* ---- pure helpers ---- */

static int
service_bit(const char *w, size_t n)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"goinfer", CONF_SVC_GOINFER},
                 {"openai", CONF_SVC_OPENAI},
                 {"llama-swap", CONF_SVC_OPENAI | CONF_SVC_SWAP},
                 {"admin", CONF_SVC_ADMIN}};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i].name) == n && strncmp(names[i].name, w, n) == 0)
            return (int)names[i].bit;
    return -1;
}

static int
parse_services(const char *s, unsigned *out, bool *tls, char *err, size_t errlen)
{
    const char *p = s;

    *out = 0;
    *tls = false;
    while (*p) {
        size_t n;
        int bit;

        p += strspn(p, ", \t");
        n = strcspn(p, ", \t");
        if (n == 0)
            break;
        bit = service_bit(p, n);
        if (bit < 0 &&
            ((n == 3 && strncmp(p, "tls", 3) == 0) || (n == 5 && strncmp(p, "https", 5) == 0))) {
            *tls = true;
            p += n;
            continue;
        }
        if (bit < 0) {
            snprintf(err, errlen,
                     "unknown service '%.*s' (use goinfer, openai, llama-swap, admin, and tls)",
                     (int)n, p);
            return -EINVAL;
        }
        *out |= (unsigned)bit;
        p += n;
    }
    if (*out == 0) {
        snprintf(err, errlen, "no service named (use goinfer, openai, llama-swap, admin)");
        return -EINVAL;
    }
    return 0;
}

int
conf_parse_listen(const char *addr, const char *services, const char *default_host,
                  struct conf_listen *out, char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    long port;
    size_t hlen;

    if (colon == NULL || colon[1] == '\0') {
        snprintf(err, errlen, "'%s': expected host:port or :port", addr);
        return -EINVAL;
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        snprintf(err, errlen, "'%s': port must be a number from 0 to 65535", addr);
        return -EINVAL;
    }
    hlen = (size_t)(colon - addr);
    if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') /* [::1]:4444 */
        addr++, hlen -= 2;
    if (parse_services(services, &out->services, &out->tls, err, errlen) < 0)
        return -EINVAL;
    out->host = hlen ? xstrndup(addr, hlen) : xstrdup(default_host);
    out->port = (int)port;
    return 0;
}

bool
conf_host_loopback(const char *host)
{
    unsigned char a[16];

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) != 1)
        return false; /* a name: whoever it resolves to may be anyone */
    if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a))
        return a[12] == 127;
    return IN6_IS_ADDR_LOOPBACK((struct in6_addr *)a);
}

/* ---- goinfer.yml (and llama-swap.yml beside it) ---- */

static int
set_listen(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    struct conf *c = obj;
    char msg[256];

    if (n->type != YAML_MAPPING_NODE)
        return yerr(y, n, key->name,
                    "expected a mapping of address to services, e.g. \":4444\": goinfer");
    for (size_t i = 0; i < c->n_listen; i++)
        free(c->listen[i].host);
    c->n_listen = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *a = ynode(y, p->key), *s = ynode(y, p->value);

        if (a->type != YAML_SCALAR_NODE || s->type != YAML_SCALAR_NODE)
            return yerr(y, a, key->name, "expected \"host:port\": services");
        if (c->n_listen == CONF_MAX_LISTEN)
            return yerr(y, a, key->name, "too many addresses");
        if (conf_parse_listen((char *)a->data.scalar.value, (char *)s->data.scalar.value, c->host,
                              &c->listen[c->n_listen], msg, sizeof(msg)) < 0)
            return yerr(y, a, key->name, msg);
        c->n_listen++;
    }
    return 0;
}

static int
set_args(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    static const struct ykey keys[] = {YKEY_STRING("common", struct conf, args_common),
                                       YKEY_STRING("goinfer", struct conf, args_goinfer),
                                       YKEY_STRING("verbose", struct conf, args_verbose),
                                       YKEY_STRING("debug", struct conf, args_debug),
                                       {NULL, NULL, 0}};

    (void)key;
    return ymap(y, n, "llama.args", keys, obj);
}

static int
set_llama(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    static const struct ykey keys[] = {
        YKEY_STRING("exe", struct conf, llama_exe), {"args", set_args, 0}, {NULL, NULL, 0}};

    (void)key;
    return ymap(y, n, "llama", keys, obj);
}

/* The llama-swap handlers fill c->swap. */
#define SWAP_HANDLER(fn)                                                                           \
    static int fn##_wrap(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj)    \
    {                                                                                              \
        return swapconf_##fn(y, n, k, &((struct conf *)obj)->swap);                                \
    }
SWAP_HANDLER(set_macros)
SWAP_HANDLER(set_models)
SWAP_HANDLER(set_groups)
SWAP_HANDLER(set_hooks)
SWAP_HANDLER(set_routing)
SWAP_HANDLER(set_api_keys)
SWAP_HANDLER(set_peers)

#define LLAMA_SWAP_KEYS                                                                            \
    {"macros", set_macros_wrap, 0}, {"models", set_models_wrap, 0},                                \
        {"groups", set_groups_wrap, 0}, {"hooks", set_hooks_wrap, 0},                              \
        YKEY_U64("healthCheckTimeout", struct conf, swap.health_check_timeout),                    \
        YKEY_U64("startPort", struct conf, swap.start_port),                                       \
        YKEY_STRING("logLevel", struct conf, swap.log_level),                                      \
        YKEY_U64("metricsMaxInMemory", struct conf, swap.metrics_max),                             \
        YKEY_IGNORED("logToStdout"), YKEY_IGNORED("logTimeFormat"), YKEY_IGNORED("logRequests"),   \
        YKEY_IGNORED("captureBuffer"), YKEY_IGNORED("ui"), YKEY_IGNORED("performance"),            \
        YKEY_BOOL("sendLoadingState", struct conf, swap.send_loading_state),                       \
        YKEY_BOOL("includeAliasesInList", struct conf, swap.include_aliases_in_list),              \
        YKEY_U64("globalTTL", struct conf, swap.global_ttl), YKEY_IGNORED("unloadTimeout"),        \
        {"apiKeys", set_api_keys_wrap, 0}, YKEY_IGNORED("upstream"), YKEY_IGNORED("profiles"),     \
        YKEY_IGNORED("selectors"), {"routing", set_routing_wrap, 0},                               \
    {                                                                                              \
        "peers", set_peers_wrap, 0                                                                 \
    }

static int
set_tls(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    static const struct ykey keys[] = {YKEY_STRING("cert", struct conf, tls_cert),
                                       YKEY_STRING("key", struct conf, tls_key),
                                       {NULL, NULL, 0}};

    (void)key;
    return ymap(y, n, "tls", keys, obj);
}

static int
set_limits(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    static const struct ykey keys[] = {
        YKEY_U64("header_bytes", struct conf, limits.header_bytes),
        YKEY_U64("body_bytes", struct conf, limits.body_bytes),
        YKEY_U64("request_timeout", struct conf, limits.request_timeout),
        YKEY_U64("keepalive_timeout", struct conf, limits.keepalive_timeout),
        YKEY_U64("write_stall_timeout", struct conf, limits.write_stall_timeout),
        YKEY_U64("max_connections", struct conf, limits.max_connections),
        YKEY_U64("max_connections_per_ip", struct conf, limits.max_connections_per_ip),
        YKEY_U64("body_bytes_in_flight", struct conf, limits.body_bytes_in_flight),
        YKEY_U64("body_bytes_per_ip", struct conf, limits.body_bytes_per_ip),
        YKEY_U64("upstream_timeout", struct conf, limits.upstream_timeout),
        {NULL, NULL, 0}};

    (void)key;
    return ymap(y, n, "limits", keys, obj);
}

static int
set_admin(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    static const struct ykey keys[] = {
        YKEY_STRING("state_dir", struct conf, admin.state_dir),
        YKEY_U64("activity_keep", struct conf, admin.activity_keep),
        YKEY_U64("upload_max_bytes", struct conf, admin.upload_max_bytes),
        YKEY_LIST("download_hosts", struct conf, admin.download_hosts),
        YKEY_STRING("engine_dir", struct conf, admin.engine_dir),
        YKEY_STRING("engine_remote", struct conf, admin.engine_remote),
        {NULL, NULL, 0}};

    (void)key;
    return ymap(y, n, "admin", keys, obj);
}

/* log_format: text (the default) or json. */
static int
set_log_format(struct yctx *y, const yaml_node_t *n, const struct ykey *key, void *obj)
{
    struct conf *c = obj;
    char *v = NULL;
    int rc = ystring(y, n, key->name, &v);

    if (rc == 0 && strcmp(v, "json") != 0 && strcmp(v, "text") != 0)
        rc = yerr(y, n, key->name, "expected text or json");
    if (rc == 0)
        c->log_json = strcmp(v, "json") == 0;
    free(v);
    return rc;
}

/* The admin section's defaults: the state under $XDG_STATE_HOME/goinfer (~/.local/state), the
 * last 100000 requests, files up to 256 GiB, downloads from Hugging Face only. */
static void
default_admin(struct conf_admin *a)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

    a->state_dir = xdg && *xdg ? xasprintf("%s/goinfer", xdg)
                               : xasprintf("%s/.local/state/goinfer", home && *home ? home : ".");
    a->activity_keep = 100000;
    a->upload_max_bytes = 256ull << 30;
    strv_add(&a->download_hosts, "huggingface.co", strlen("huggingface.co"));
    strv_add(&a->download_hosts, "*.hf.co", strlen("*.hf.co"));
    a->engine_remote = xstrdup("https://github.com/ggml-org/llama.cpp");
}

/* Defaults: generous for real use, bounded against abuse. */
static void
default_limits(struct conf_limits *l)
{
    *l = (struct conf_limits){
        .header_bytes = 32 * 1024,
        .body_bytes = 64 * 1024 * 1024,
        .request_timeout = 30,
        .keepalive_timeout = 75,
        .write_stall_timeout = 60,
        .max_connections = 4096,
        .max_connections_per_ip = 256,
        .body_bytes_in_flight = 256 * 1024 * 1024, /* four largest bodies at once */
        .body_bytes_per_ip = 128 * 1024 * 1024,
        .upstream_timeout = 600,
    };
}

static const struct ykey goinfer_keys[] = {
    YKEY_STRING("models_dir", struct conf, models_dir),
    YKEY_STRING("api_key", struct conf, api_key),
    YKEY_STRING("admin_api_key", struct conf, admin_api_key),
    YKEY_STRING("api_key_file", struct conf, api_key_file),
    YKEY_STRING("admin_api_key_file", struct conf, admin_api_key_file),
    YKEY_LIST("origins", struct conf, origins),
    {"listen", set_listen, 0},
    {"llama", set_llama, 0},
    {"limits", set_limits, 0},
    {"admin", set_admin, 0},
    {"tls", set_tls, 0},
    {"server", tunnelconf_set_server, 0},
    {"client", tunnelconf_set_client, 0},
    YKEY_STRING("default_model", struct conf, default_model),
    YKEY_STRING("ledger", struct conf, ledger),
    {"log_format", set_log_format, 0},
    LLAMA_SWAP_KEYS,
    {NULL, NULL, 0}};

static const struct ykey llama_swap_keys[] = {LLAMA_SWAP_KEYS, {NULL, NULL, 0}};

char *
conf_swap_file_for(const char *file)
{
    const char *slash = strrchr(file, '/');

    return slash ? xasprintf("%.*s/llama-swap.yml", (int)(slash - file), file)
                 : xstrdup("llama-swap.yml");
}

/* Reads goinfer.yml, then llama-swap.yml from the same folder when there is one. */
static int
load_files(struct conf *c, const char *file, char *err, size_t errlen)
{
    struct yctx y = {.err = err, .errlen = errlen, .user = c};
    char *swap_file;
    int rc;

    c->file = xstrdup(file);
    rc = yload(&y, file, goinfer_keys, c);
    if (rc < 0)
        goto out;
    swap_file = conf_swap_file_for(file);
    if (access(swap_file, F_OK) == 0) {
        c->swap_file = swap_file;
        y.lenient = true; /* llama-swap's own file: what it ignores, we ignore too (warned) */
        rc = yload(&y, swap_file, llama_swap_keys, c);
    } else {
        free(swap_file);
    }
    if (rc == 0)
        rc = swapconf_validate(&c->swap, err, errlen);
out:
    c->warnings = y.warnings; /* for /ui */
    return rc;
}

/* ---- environment and flags ---- */

static void
env_string(const char *name, char **out)
{
    const char *v = getenv(name);

    if (v != NULL && *v != '\0') {
        free(*out);
        *out = xstrdup(v);
    }
}

static void
apply_env(struct conf *c)
{
    const char *origins = getenv("GI_ORIGINS"), *format = getenv("GI_LOG_FORMAT");

    env_string("GI_MODELS_DIR", &c->models_dir);
    env_string("GI_LLAMA_EXE", &c->llama_exe);
    env_string("GI_API_KEY", &c->api_key);
    env_string("GI_ADMIN_API_KEY", &c->admin_api_key);
    env_string("GI_DEFAULT_MODEL", &c->default_model);
    env_string("GI_TUNNEL_TOKEN", &c->tunnel_server.token);
    env_string("GI_STATE_DIR", &c->admin.state_dir);
    env_string("GI_LEDGER", &c->ledger);
    env_string("GI_ENGINE_DIR", &c->admin.engine_dir);
    if (format != NULL && *format != '\0') /* anything but json is text */
        c->log_json = strcmp(format, "json") == 0;
    if (origins != NULL) { /* set, even empty, replaces the file's list */
        strv_free(c->origins);
        c->origins = strv_split(origins);
    }
}

struct flags {
    const char *config;
    bool debug, no_api_key, quiet, help, write, version;
};

static void
usage(void)
{
    fprintf(stderr,
            "usage: goinfer [-config FILE] [-write] [-no-api-key] [-debug] [-q] [-version] [-h]\n"
            "  -config FILE   configuration file (default ./goinfer.yml when present)\n"
            "  -write         write goinfer.yml (new API key) and llama-swap.yml from the\n"
            "                 models found, keeping the old files as .bak, then exit\n"
            "  -no-api-key    serve without an API key (only on a private machine);\n"
            "                 with -write, a placeholder key\n"
            "  -debug         debug logs, llama-server's output, and llama.args.debug; with\n"
            "                 -write, the debug API key (development only), logLevel debug\n"
            "  -q             quiet: warnings and errors only\n"
            "  -version       print the version and exit (also --version)\n"
            "  -help          print this help and exit (also -h, --help)\n"
            "  (every flag may start with - or --; -config=FILE works too)\n"
            "environment (over goinfer.yml; flags over both):\n"
            "  GI_MODELS_DIR     folders searched for *.gguf, ':'-separated\n"
            "  GI_LLAMA_EXE      the llama-server to run\n"
            "  GI_API_KEY        the users' key       GI_ADMIN_API_KEY  the admin routes' key\n"
            "  GI_TUNNEL_TOKEN   a server's secret its GPU machines prove\n"
            "  GI_HOST           the host of ':port' listen addresses (default 127.0.0.1)\n"
            "  GI_ORIGINS        CORS origins allowed, comma-separated\n"
            "  GI_DEFAULT_MODEL  the model of a request that names none (a name or a file name)\n"
            "  GI_STATE_DIR      the admin store's folder (default ~/.local/state/goinfer)\n"
            "  GI_ENGINE_DIR     where engine builds are installed (default GOINFER_CACHE)\n"
            "  GI_HF_BASE        the Hugging Face hub downloads resolve against\n"
            "  GI_LEDGER         the virtual keys' ledger: postgresql://... (default SQLite)\n"
            "  GI_ENGINE_SCRIPT  the engine build script (default scripts/engine-build.sh)\n"
            "  GI_LOG_FORMAT     text (default) or json: one JSON object per log line\n"
            "  GOINFER_CACHE     where make setup keeps the llama-server it builds\n");
}

static int
parse_flags(struct flags *f, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i] + (strncmp(argv[i], "--", 2) == 0 ? 2 : 1);

        if (argv[i][0] != '-') {
            snprintf(err, errlen, "unexpected argument '%s' (see goinfer -help)", argv[i]);
            return -EINVAL;
        }
        if (strcmp(a, "config") == 0 && i + 1 < argc)
            f->config = argv[++i];
        else if (strncmp(a, "config=", 7) == 0)
            f->config = a + 7;
        else if (strcmp(a, "debug") == 0)
            f->debug = true;
        else if (strcmp(a, "no-api-key") == 0)
            f->no_api_key = true;
        else if (strcmp(a, "q") == 0)
            f->quiet = true;
        else if (strcmp(a, "write") == 0)
            f->write = true;
        else if (strcmp(a, "h") == 0 || strcmp(a, "help") == 0)
            f->help = true;
        else if (strcmp(a, "version") == 0)
            f->version = true;
        else {
            snprintf(err, errlen, "unknown flag '%s' (see goinfer -help)", argv[i]);
            return -EINVAL;
        }
    }
    return 0;
}

/* A key file holds the key on its first line; a key given directly wins. */
static int
read_key_file(const char *path, char **key, char *err, size_t errlen)
{
    char line[512];
    FILE *f;
    size_t n;

    if (path == NULL || *key != NULL)
        return 0;
    f = fopen(path, "r");
    if (f == NULL || fgets(line, sizeof(line), f) == NULL) {
        snprintf(err, errlen, "API key file %s: %s", path, f ? "empty" : strerror(errno));
        if (f)
            fclose(f);
        return -EINVAL;
    }
    fclose(f);
    n = strcspn(line, "\r\n");
    *key = xstrndup(line, n);
    explicit_bzero(line, sizeof(line));
    return 0;
}

static int
read_key_files(struct conf *c, char *err, size_t errlen)
{
    if (read_key_file(c->api_key_file, &c->api_key, err, errlen) < 0 ||
        read_key_file(c->admin_api_key_file, &c->admin_api_key, err, errlen) < 0)
        return -EINVAL;
    return 0;
}

static void
default_listen(struct conf *c)
{
    char err[128];

    conf_parse_listen(":4444", "goinfer", c->host, &c->listen[0], err, sizeof(err));
    conf_parse_listen(":5555", "openai", c->host, &c->listen[1], err, sizeof(err));
    c->n_listen = 2;
}

/* The debug key of goinfer -write -debug is in Goinfer's source, so anyone can read it: it
 * guards nothing on an address other machines reach, and is refused there. */
static int
check_debug_key(const struct conf *c, char *err, size_t errlen)
{
    bool debug_key = (c->api_key && strcmp(c->api_key, CONF_DEBUG_API_KEY) == 0) ||
                     (c->admin_api_key && strcmp(c->admin_api_key, CONF_DEBUG_API_KEY) == 0);

    for (size_t i = 0; debug_key && i < c->n_listen; i++) {
        if (!conf_host_loopback(c->listen[i].host)) {
            snprintf(err, errlen,
                     "the API key is the public debug key of goinfer -write -debug and %s:%d is "
                     "an address other machines may reach: listen on 127.0.0.1 only, or run "
                     "goinfer -write (without -debug) for a secret key",
                     c->listen[i].host, c->listen[i].port);
            return -EINVAL;
        }
    }
    return 0;
}

int
conf_load(struct conf *c, int argc, char **argv, char *err, size_t errlen)
{
    struct flags f = {0};
    const char *host = getenv("GI_HOST");
    int rc;

    memset(c, 0, sizeof(*c));
    rc = parse_flags(&f, argc, argv, err, errlen);
    if (rc < 0)
        return rc;
    if (f.help) {
        usage();
        return 1;
    }
    if (f.version) {
        printf("goinfer %s\n", goinfer_version);
        return 1;
    }
    c->host = xstrdup(host && *host ? host : "127.0.0.1");
    default_limits(&c->limits);
    default_admin(&c->admin);
    tunnelconf_defaults(&c->tunnel_server, &c->tunnel_client);
    if (f.config == NULL && access("goinfer.yml", F_OK) == 0 && !f.write)
        f.config = "goinfer.yml";
    if (f.config != NULL && !(f.write && access(f.config, F_OK) != 0)) {
        rc = load_files(c, f.config, err, errlen);
        if (rc < 0)
            return rc;
    }
    apply_env(c);
    c->debug = f.debug;
    c->quiet = f.quiet;
    c->no_api_key = f.no_api_key;
    c->write = f.write;
    if (f.write && c->file == NULL)
        c->file = xstrdup(f.config ? f.config : "goinfer.yml");
    if (c->n_listen == 0)
        default_listen(c);
    rc = read_key_files(c, err, errlen);
    return rc < 0 || c->write ? rc : check_debug_key(c, err, errlen);
}

static void
wipe_free(char *secret)
{
    if (secret != NULL)
        explicit_bzero(secret, strlen(secret));
    free(secret);
}

void
conf_cleanup(struct conf *c)
{
    free(c->file);
    free(c->models_dir);
    wipe_free(c->api_key);
    wipe_free(c->admin_api_key);
    wipe_free(c->ledger); /* a URL may hold a password */
    free(c->api_key_file);
    free(c->admin_api_key_file);
    strv_free(c->origins);
    free(c->swap_file);
    strv_free(c->warnings);
    swapconf_cleanup(&c->swap);
    for (size_t i = 0; i < c->n_listen; i++)
        free(c->listen[i].host);
    free(c->llama_exe);
    free(c->args_common);
    free(c->args_goinfer);
    free(c->args_verbose);
    free(c->args_debug);
    free(c->default_model);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->admin.state_dir);
    free(c->admin.engine_dir);
    free(c->admin.engine_remote);
    strv_free(c->admin.download_hosts);
    free(c->host);
    tunnelconf_cleanup(&c->tunnel_server, &c->tunnel_client);
    memset(c, 0, sizeof(*c));
}
