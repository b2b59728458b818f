#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc/argv.h"
#include "conf/conf.h"
#include "conf/swapconf.h"
#include "admin/engine.h"
#include "app/generation.h"
#include "core/xmalloc.h"
#include "router/router.h"

static void
listen_addresses(void **state)
{
    struct conf_listen l;
    char err[256];

    (void)state;
    assert_int_equal(conf_parse_listen(":4444", "goinfer", "127.0.0.1", &l, err, 256), 0);
    assert_string_equal(l.host, "127.0.0.1");
    assert_int_equal(l.port, 4444);
    assert_int_equal(l.services, ROUTER_SVC_GOINFER);
    free(l.host);
    assert_int_equal(conf_parse_listen("[::1]:5555", "llama-swap, admin", "x", &l, err, 256), 0);
    assert_string_equal(l.host, "::1");
    assert_int_equal(l.services, ROUTER_SVC_OPENAI | ROUTER_SVC_SWAP | ROUTER_SVC_ADMIN);
    free(l.host);
    assert_int_equal(conf_parse_listen(":http", "goinfer", "x", &l, err, 256), -EINVAL);
    assert_non_null(strstr(err, "port"));
    assert_int_equal(conf_parse_listen(":1", "gopher", "x", &l, err, 256), -EINVAL);
    assert_non_null(strstr(err, "gopher"));
}

static void
split_args_like_a_shell(void **state)
{
    char **v;

    (void)state;
    assert_int_equal(proc_argv_split("  --props -c 512 --name 'a b' \"c\\\"d\" ", &v), 6);
    assert_string_equal(v[0], "--props");
    assert_string_equal(v[4], "a b");
    assert_string_equal(v[5], "c\"d");
    assert_null(v[6]);
    proc_argv_free(v);
    assert_int_equal(proc_argv_split("--x 'open", &v), -EINVAL);
    assert_int_equal(proc_argv_split("", &v), 0);
    proc_argv_free(v);
}

static char *
write_tmp(const char *text)
{
    char *path = strdup("/tmp/goinfer-conf-XXXXXX");
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int
load(const char *text, struct conf *c, char *err)
{
    char *path = write_tmp(text);
    char *argv[] = {"goinfer", "-config", path, NULL};
    int rc;

    unsetenv("GI_MODELS_DIR");
    unsetenv("GI_API_KEY");
    rc = conf_load(c, 3, argv, err, 512);
    unlink(path);
    free(path);
    return rc;
}

static void
yaml_file_and_env(void **state)
{
    struct conf c;
    char err[512];

    (void)state;
    assert_int_equal(load("models_dir: /m\napi_key: k1\norigins:\n  - http://localhost\n"
                          "listen:\n  \":0\": goinfer,openai\nllama:\n  exe: /bin/true\n"
                          "  args:\n    common: --props\n",
                          &c, err),
                     0);
    assert_string_equal(c.models_dir, "/m");
    assert_string_equal(c.api_key, "k1");
    assert_string_equal(c.origins[0], "http://localhost");
    assert_null(c.origins[1]);
    assert_int_equal(c.n_listen, 1);
    assert_int_equal(c.listen[0].services, ROUTER_SVC_GOINFER | ROUTER_SVC_OPENAI);
    assert_string_equal(c.args_common, "--props");
    conf_cleanup(&c);
    setenv("GI_LLAMA_EXE", "/env/llama", 1);
    assert_int_equal(load("llama:\n  exe: /file/llama\n", &c, err), 0);
    assert_string_equal(c.llama_exe, "/env/llama"); /* environment over file */
    assert_int_equal(c.n_listen, 2);                /* the seed's defaults */
    unsetenv("GI_LLAMA_EXE");
    conf_cleanup(&c);
}

static void
yaml_errors_name_line_and_key(void **state)
{
    struct conf c;
    char err[512];

    (void)state;
    assert_int_equal(load("models_dir: /m\nmodel_dir: /typo\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, ":2: unknown key 'model_dir'"));
    assert_non_null(strstr(err, "models_dir"));
    conf_cleanup(&c);
    assert_int_equal(load("listen:\n  \":44x\": goinfer\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, ":2: listen:"));
    conf_cleanup(&c);
    assert_int_equal(load("llama: [1, 2\n", &c, err), -EINVAL);
    conf_cleanup(&c);
    /* found by fuzzing: a key given twice (it also leaked the first listen hosts) */
    assert_int_equal(
        load("listen:\n  \":1\": goinfer\napi_key: k\nlisten:\n  \":2\": goinfer\n", &c, err),
        -EINVAL);
    assert_non_null(strstr(err, ":4: listen: given twice"));
    conf_cleanup(&c);
}

static void
tunnel_sections(void **state)
{
    struct conf c;
    char err[512];

    (void)state;
    assert_int_equal(load("server:\n  token: t0123456789abcdef\n  clients: [sha256/x]\n"
                          "  max_queue: 3\nclient:\n  slots: 2\n  servers:\n"
                          "    - {url: \"https://s:443\", pin: sha256/p, token: t}\n",
                          &c, err),
                     0);
    assert_true(c.tunnel_accept);
    assert_string_equal(c.tunnel_server.token, "t0123456789abcdef");
    assert_string_equal(c.tunnel_server.clients[0], "sha256/x");
    assert_int_equal(c.tunnel_server.max_queue, 3);
    assert_int_equal(c.tunnel_server.ping_interval, 15); /* defaults */
    assert_int_equal(c.tunnel_server.ping_timeout, 10);
    assert_int_equal(c.tunnel_client.n_servers, 1);
    assert_string_equal(c.tunnel_client.servers[0].url, "https://s:443");
    assert_int_equal(c.tunnel_client.slots, 2);
    conf_cleanup(&c);
    assert_int_equal(load("client:\n  servers:\n    - {url: \"https://s\", pin: p}\n", &c, err),
                     -EINVAL);
    assert_non_null(strstr(err, "url, pin and token"));
    conf_cleanup(&c);
    assert_int_equal(
        load("client:\n  servers:\n    - {url: \"http://s\", pin: p, token: t}\n", &c, err),
        -EINVAL);
    assert_non_null(strstr(err, "https://"));
    conf_cleanup(&c);
    assert_int_equal(load("client:\n  slots: 0\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "slots"));
    conf_cleanup(&c);
    assert_int_equal(load("server:\n  ping_timeout: 0\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "1 or more"));
    conf_cleanup(&c);
    assert_int_equal(load("server:\n  tokn: x\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "tokn"));
    conf_cleanup(&c);
}

static void
unknown_flag(void **state)
{
    struct conf c;
    char err[512];
    char *argv[] = {"goinfer", "-frobnicate", NULL};

    (void)state;
    assert_int_equal(conf_load(&c, 2, argv, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "-frobnicate"));
    conf_cleanup(&c);
}

/* The seed README's llama-swap.yml, trimmed: macros nest, ${PORT} waits for start time. */
static const char *seed_swap =
    "logLevel: info\n"
    "healthCheckTimeout: 500\n"
    "metricsMaxInMemory: 1000\n"
    "startPort: 6000\n"
    "macros:\n"
    "    cmd-fim: /bin/llama-server --props --no-warmup\n"
    "    cmd-common: ${cmd-fim} --port ${PORT}\n"
    "    cmd-goinfer: ${cmd-common} --chat-template-file template.jinja\n"
    "models:\n"
    "  org/Qwen:\n"
    "    description: \"Small\"\n"
    "    name: Qwen2.5\n"
    "    useModelName: \"Qwen2.5-Coder\"\n"
    "    aliases:\n"
    "      - \"qwen-a\"\n"
    "      - \"qwen-b\"\n"
    "    env: []\n"
    "    cmd: ${cmd-common}  -m /m/q.gguf\n"
    "    proxy: http://localhost:${PORT}\n"
    "    checkEndpoint: /health\n"
    "    unlisted: false\n"
    "    ttl: 3600\n"
    "    filters:\n"
    "      strip_params: \"temperature,top_p,top_k\"\n"
    "  GI_org/Qwen:\n"
    "      cmd: ${cmd-goinfer}  -m /m/q.gguf\n"
    "      unlisted: true\n"
    "hooks:\n"
    "  on_startup:\n"
    "    preload:\n"
    "      - \"org/Qwen\"\n"
    "groups:\n"
    "  \"group1\":\n"
    "    swap: true\n"
    "    exclusive: true\n"
    "    members:\n"
    "      - \"org/Qwen\"\n"
    "  \"forever\":\n"
    "    persistent: true\n"
    "    swap: false\n"
    "    exclusive: false\n"
    "    members: [\"GI_org/Qwen\"]\n";

/* A reload warns when the client's settings differ from the running ones, and only then. */
static void
tunnel_client_same_or_not(void **state)
{
    static const char *const base = "client:\n  servers:\n"
                                    "    - {url: \"https://s:443\", pin: sha256/p, token: t}\n";
    struct conf a, b;
    char err[512], yml[512];

    (void)state;
    assert_int_equal(load(base, &a, err), 0);
    assert_int_equal(load(base, &b, err), 0);
    a.tunnel_client.cert = strdup(TUNNEL_CLIENT_CERT); /* as the running client fills it in */
    assert_true(tunnelconf_client_same(&a.tunnel_client, &b.tunnel_client));
    conf_cleanup(&b);
    snprintf(yml, sizeof(yml), "%s  slots: 3\n", base);
    assert_int_equal(load(yml, &b, err), 0);
    assert_false(tunnelconf_client_same(&a.tunnel_client, &b.tunnel_client));
    conf_cleanup(&b);
    assert_int_equal(load("client:\n  servers:\n"
                          "    - {url: \"https://s:443\", pin: sha256/q, token: t}\n",
                          &b, err),
                     0);
    assert_false(tunnelconf_client_same(&a.tunnel_client, &b.tunnel_client));
    conf_cleanup(&b);
    conf_cleanup(&a);
}

static void
llama_swap_section(void **state)
{
    struct conf c;
    char err[512];
    const struct conf_model *m;

    (void)state;
    assert_int_equal(load(seed_swap, &c, err), 0);
    assert_int_equal(c.swap.n_models, 2);
    m = &c.swap.models[0];
    assert_string_equal(m->name, "org/Qwen");
    assert_string_equal(m->cmd,
                        "/bin/llama-server --props --no-warmup --port ${PORT}  -m /m/q.gguf");
    assert_string_equal(m->proxy, "http://localhost:${PORT}");
    assert_string_equal(m->aliases[1], "qwen-b");
    assert_int_equal(m->ttl, 3600);
    assert_string_equal(m->filters.strip_params, "temperature,top_p,top_k");
    m = &c.swap.models[1];
    assert_true(m->unlisted);
    assert_string_equal(m->proxy, "http://127.0.0.1:${PORT}"); /* the default */
    assert_string_equal(m->check_endpoint, "/health");
    assert_non_null(strstr(m->cmd, "--chat-template-file template.jinja"));
    assert_int_equal(c.swap.n_groups, 2);
    assert_true(c.swap.groups[1].persistent);
    assert_false(c.swap.groups[1].swap);
    assert_string_equal(c.swap.preload[0], "org/Qwen");
    assert_int_equal(c.swap.health_check_timeout, 500);
    assert_int_equal(c.swap.start_port, 6000);
    conf_cleanup(&c);
}

static void
llama_swap_errors(void **state)
{
    struct conf c;
    char err[512];

    (void)state;
    assert_int_equal(load("models:\n  a:\n    cmd: ${nope} -m x\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "unknown macro ${nope}"));
    assert_non_null(strstr(err, ":3: a:"));
    conf_cleanup(&c);
    assert_int_equal(load("models:\n  a:\n    cmd: x\n    tll: 5\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, ":4: unknown key 'tll' in a"));
    conf_cleanup(&c);
    assert_int_equal(load("models:\n  a:\n    proxy: http://x\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "cmd is required"));
    conf_cleanup(&c);
    /* as llama-swap: a member defined nowhere loads (it may be a discovered model; the
     * catalog warns about one that is no model at all) */
    assert_int_equal(load("models:\n  a:\n    cmd: x\ngroups:\n  g:\n    members: [b]\n", &c, err),
                     0);
    conf_cleanup(&c);
    assert_int_equal(load("models:\n  a:\n    cmd: x\n    ttl: soon\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "ttl: expected seconds"));
    conf_cleanup(&c);
    assert_int_equal(load("models:\n  a:\n    cmd: x\n    ttl: -1\n", &c, err), 0);
    assert_true(c.swap.models[0].ttl_default); /* llama-swap's "the default": globalTTL */
    conf_cleanup(&c);
    setenv("GOINFER_TEST_EXE", "/opt/llama", 1);
    assert_int_equal(load("models:\n  a:\n    cmd: ${env.GOINFER_TEST_EXE} -m x\n", &c, err), 0);
    assert_string_equal(c.swap.models[0].cmd, "/opt/llama -m x");
    conf_cleanup(&c);
}

/* globalTTL, apiKeys, setParams/setParamsByID, routing's groups and peers, read as llama-swap
 * documents them. */
static void
llama_swap_keys_honoured(void **state)
{
    struct conf c;
    char err[512];
    const struct swapconf *s;

    (void)state;
    setenv("GOINFER_TEST_PEER_KEY", "sk-peer", 1);
    assert_int_equal(
        load("globalTTL: 30\napiKeys: [\"sk-a\", \"${env.GOINFER_TEST_PEER_KEY}\"]\n"
             "models:\n  a:\n    cmd: x\n    filters:\n      setParams:\n        max_tokens: 3\n"
             "        temperature: 0.5\n        stop: [\"\\n\", '7']\n        flag: true\n"
             "        nothing: null\n        s: \"1\"\n"
             "      setParamsByID:\n        \"${MODEL_ID}:hi\": {n: 2}\n        a: {n: 1}\n"
             "  b:\n    cmd: x\n    ttl: 0\n"
             "routing:\n  router:\n    use: group\n    settings:\n      groups:\n"
             "        g: {swap: false, members: [a, b]}\n"
             "peers:\n  p1:\n    proxy: http://127.0.0.1:9\n    apiKey: "
             "${env.GOINFER_TEST_PEER_KEY}\n"
             "    models: [m1, m2]\n    filters: {stripParams: top_k, setParams: {x: 1}}\n",
             &c, err),
        0);
    s = &c.swap;
    assert_int_equal(s->global_ttl, 30);
    assert_true(s->models[0].ttl_default);
    assert_false(s->models[1].ttl_default);
    assert_string_equal(s->api_keys[0], "sk-a");
    assert_string_equal(s->api_keys[1], "sk-peer");
    assert_string_equal(s->models[0].filters.set_params,
                        "{\"max_tokens\":3,\"temperature\":0.5,\"stop\":[\"\\n\",\"7\"],"
                        "\"flag\":true,\"nothing\":null,\"s\":\"1\"}");
    assert_string_equal(s->models[0].filters.set_params_by_id,
                        "{\"a:hi\":{\"n\":2},\"a\":{\"n\":1}}");
    assert_string_equal(s->models[0].aliases[0], "a:hi"); /* an id is an alias, not the name */
    assert_null(s->models[0].aliases[1]);
    assert_int_equal(s->n_groups, 1);
    assert_false(s->groups[0].swap);
    assert_string_equal(s->groups[0].members[1], "b");
    assert_int_equal(s->n_peers, 1);
    assert_string_equal(s->peers[0].api_key, "sk-peer");
    assert_string_equal(s->peers[0].models[1], "m2");
    assert_string_equal(s->peers[0].filters.strip_params, "top_k");
    conf_cleanup(&c);
    assert_int_equal(load("apiKeys: [\"a b\"]\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "cannot contain spaces"));
    assert_null(strstr(err, "a b")); /* a key is never in an error */
    conf_cleanup(&c);
    assert_int_equal(load("peers:\n  p:\n    models: [m]\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "proxy is required"));
    conf_cleanup(&c);
    assert_int_equal(load("peers:\n  p:\n    proxy: http://h\n", &c, err), -EINVAL);
    assert_non_null(strstr(err, "models can not be empty"));
    conf_cleanup(&c);
}

/* Goinfer's keys on a peer (cloud upstreams) and a model's fallback: the key from a file
 * (trimmed, never in an error), headers, retries, modelsRefresh with allow and no models, and a
 * fallback that must name a peer's model. */
static void
cloud_peer_keys(void **state)
{
    struct conf c;
    char err[512], *text;
    char *keyfile = write_tmp("  sk-or-from-file\n");
    const struct conf_peer *p;

    (void)state;
    text = xasprintf("peers:\n  or:\n    proxy: https://openrouter.ai/api\n"
                     "    apiKeyFile: %s\n    caFile: /etc/ca.pem\n    retries: 2\n"
                     "    headers: {HTTP-Referer: \"https://app.example\", X-Title: My app}\n"
                     "    modelsRefresh: 600\n    allow: [\"openai/*\"]\n"
                     "models:\n  local:\n    cmd: x\n    fallback: or/openai/gpt-4o\n",
                     keyfile);
    assert_int_equal(load(text, &c, err), -EINVAL); /* gpt-4o is listed by nobody yet */
    assert_non_null(strstr(err, "fallback or/openai/gpt-4o is no peer's model"));
    conf_cleanup(&c);
    free(text);
    text = xasprintf("peers:\n  or:\n    proxy: https://openrouter.ai/api\n"
                     "    apiKeyFile: %s\n    caFile: /etc/ca.pem\n    retries: 2\n"
                     "    headers: {HTTP-Referer: \"https://app.example\", X-Title: My app}\n"
                     "    modelsRefresh: 600\n    allow: [\"openai/*\"]\n"
                     "    models: [openai/gpt-4o]\n"
                     "models:\n  local:\n    cmd: x\n    fallback: or/openai/gpt-4o\n",
                     keyfile);
    assert_int_equal(load(text, &c, err), 0);
    p = &c.swap.peers[0];
    assert_string_equal(p->api_key, "sk-or-from-file");
    assert_string_equal(p->ca_file, "/etc/ca.pem");
    assert_int_equal(p->retries, 2);
    assert_int_equal(p->models_refresh, 600);
    assert_string_equal(p->allow[0], "openai/*");
    assert_string_equal(p->headers[0], "HTTP-Referer: https://app.example");
    assert_string_equal(p->headers[1], "X-Title: My app");
    assert_string_equal(c.swap.models[0].fallback, "or/openai/gpt-4o");
    conf_cleanup(&c);
    free(text);
    /* modelsRefresh alone: models may be empty; retries defaults to 1 */
    assert_int_equal(
        load("peers:\n  or:\n    proxy: https://h/api\n    modelsRefresh: 60\n", &c, err), 0);
    assert_int_equal(c.swap.peers[0].retries, 1);
    conf_cleanup(&c);
    text = xasprintf("peers:\n  or:\n    proxy: https://h\n    apiKey: sk-x\n"
                     "    apiKeyFile: %s\n    models: [m]\n",
                     keyfile);
    assert_int_equal(load(text, &c, err), -EINVAL);
    assert_non_null(strstr(err, "not both"));
    conf_cleanup(&c);
    free(text);
    assert_int_equal(load("peers:\n  or:\n    proxy: https://h\n    apiKeyFile: /nonexistent/k\n"
                          "    models: [m]\n",
                          &c, err),
                     -EINVAL);
    assert_non_null(strstr(err, "apiKeyFile /nonexistent/k"));
    conf_cleanup(&c);
    assert_int_equal(load("peers:\n  or:\n    proxy: https://h\n    models: [m]\n"
                          "    headers: {\"Bad Name\": x}\n",
                          &c, err),
                     -EINVAL);
    conf_cleanup(&c);
    unlink(keyfile);
    free(keyfile);
}

static void
subst_late_macros(void **state)
{
    char *s;

    (void)state;
    s = swapconf_subst("srv --port ${PORT} --alias ${MODEL_ID} --p2 ${PORT}", "PORT", "6001");
    assert_string_equal(s, "srv --port 6001 --alias ${MODEL_ID} --p2 6001");
    free(s);
}

static bool
claim_all(const struct generation *g, void *arg)
{
    (void)g;
    return *(bool *)arg;
}

/* A replaced generation lives while a request that began under it runs, or while something
 * else (the swap) claims it, and is freed after; the request table grows past its buckets. */
static void
generations_free_what_nothing_uses(void **state)
{
    struct generations gs;
    struct generation *g1 = xcalloc(1, sizeof(*g1)), *g2 = xcalloc(1, sizeof(*g2));
    bool claimed = true;

    (void)state;
    generations_init(&gs, g1);
    generations_begin(&gs, 1);
    generations_begin(&gs, 2);
    generations_replace(&gs, g2);
    generations_begin(&gs, 3);              /* under g2 */
    assert_false(generations_end(&gs, 99)); /* never began: ignored */
    assert_false(generations_end(&gs, 1));  /* g1 still has request 2 */
    assert_int_equal(generations_collect(&gs, NULL, NULL), 0);
    assert_ptr_equal(gs.retired, g1);
    assert_true(generations_end(&gs, 2)); /* the last one of g1 */
    assert_false(generations_end(&gs, 2));
    assert_int_equal(generations_collect(&gs, claim_all, &claimed), 1);
    assert_ptr_equal(gs.retired, g1); /* claimed: kept */
    claimed = false;
    assert_int_equal(generations_collect(&gs, claim_all, &claimed), 0);
    assert_null(gs.retired);
    assert_false(generations_end(&gs, 3)); /* g2 is in force: never freed by its requests */
    assert_ptr_equal(gs.current, g2);
    for (uint64_t id = 10; id < 10010; id++)
        generations_begin(&gs, id);
    assert_int_equal(g2->users, 10000);
    generations_replace(&gs, xcalloc(1, sizeof(struct generation)));
    for (uint64_t id = 10009; id >= 10; id--)
        assert_true(generations_end(&gs, id) == (id == 10));
    assert_int_equal(gs.n_users, 0);
    generations_begin(&gs, 20000); /* left running at exit: cleanup frees it all the same */
    generations_collect(&gs, NULL, NULL);
    assert_null(gs.retired);
    generations_cleanup(&gs);
}

/* A stamp stays while nothing happens, and changes with a rename over the file (an editor's
 * save) even when the new one has the same size. */
static void
stamps_tell_a_change_from_none(void **state)
{
    char dir[] = "/tmp/test_conf_stampXXXXXX", *file, *tmp;
    struct generation_stamp a, b;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    file = xasprintf("%s/site.yml", dir);
    tmp = xasprintf("%s/.site.yml.swp", dir);
    generation_stamp(file, &a);
    assert_false(a.f[0].exists || a.f[1].exists);
    f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(fputs("api_key: 0123456789abcdef\n", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    generation_stamp(file, &a);
    generation_stamp(file, &b);
    assert_true(a.f[0].exists && !a.f[1].exists && generation_stamp_same(&a, &b));
    f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fputs("api_key: 0123456789abcdeF\n", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, file), 0); /* an editor's save: another inode */
    generation_stamp(file, &b);
    assert_false(generation_stamp_same(&a, &b));
    assert_int_equal(unlink(file), 0);
    assert_int_equal(rmdir(dir), 0);
    free(file);
    free(tmp);
}

/* Which listen hosts only this machine reaches (-no-api-key warns about the others). */
static void
loopback_hosts(void **state)
{
    static const char *const local[] = {"127.0.0.1", "127.8.9.10", "::1",
                                        "localhost", "LocalHost",  "::ffff:127.0.0.1"};
    static const char *const reachable[] = {
        "0.0.0.0",          "::",      "10.0.0.5", "128.0.0.1", "::ffff:10.0.0.1",
        "127.evil.example", "gpu.lan", ""};

    (void)state;
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
        assert_true(conf_host_loopback(local[i]));
    for (size_t i = 0; i < sizeof(reachable) / sizeof(reachable[0]); i++)
        assert_false(conf_host_loopback(reachable[i]));
}

/* cmd as llama-swap reads it: comment lines dropped, continuations joined. */
static void
cmd_comments_and_continuations(void **state)
{
    char *c = swapconf_clean_cmd("# the server\n  llama-server \\\n    -m /m.gguf \\ \n"
                                 "    # --flash-attn\n    --port ${PORT}\n");

    (void)state;
    assert_string_equal(c, "  llama-server      -m /m.gguf      --port ${PORT}");
    free(c);
    c = swapconf_clean_cmd("srv -c 512");
    assert_string_equal(c, "srv -c 512");
    free(c);
    c = swapconf_clean_cmd("# only a comment\n");
    assert_string_equal(c, "");
    free(c);
}

/* A model's own macros win over the global ones and may use them (llama-swap's model-level
 * macros). */
static void
model_macros(void **state)
{
    struct conf c;
    char err[512];

    (void)state;
    assert_int_equal(load("macros:\n  exe: /opt/ls\n  ctx: \"1\"\nmodels:\n  a:\n"
                          "    macros:\n      ctx: \"2\"\n      bin: ${exe}-x\n"
                          "    cmd: ${bin} -c ${ctx}\n  b:\n    cmd: ${exe} -c ${ctx}\n",
                          &c, err),
                     0);
    assert_string_equal(c.swap.models[0].cmd, "/opt/ls-x -c 2");
    assert_string_equal(c.swap.models[1].cmd, "/opt/ls -c 1");
    conf_cleanup(&c);
}

/* admin.engine_dir and engine_remote, GI_ENGINE_DIR over the file; the engine an admin chose
 * (state_dir/engine.json) is taken while it is an executable, and wins over llama.exe. */
static void
admin_engine_keys_and_choice(void **state)
{
    struct conf c;
    char err[512], dir[] = "/tmp/goinfer-engine-XXXXXX", *file, *exe;
    FILE *f;

    (void)state;
    assert_int_equal(
        load("admin:\n  engine_dir: /e\n  engine_remote: https://x/llama.cpp\n", &c, err), 0);
    assert_string_equal(c.admin.engine_dir, "/e");
    assert_string_equal(c.admin.engine_remote, "https://x/llama.cpp");
    conf_cleanup(&c);
    setenv("GI_ENGINE_DIR", "/env/engines", 1);
    assert_int_equal(load("admin:\n  engine_dir: /e\n", &c, err), 0);
    assert_string_equal(c.admin.engine_dir, "/env/engines");
    assert_string_equal(c.admin.engine_remote, "https://github.com/ggml-org/llama.cpp");
    unsetenv("GI_ENGINE_DIR");
    conf_cleanup(&c);
    assert_int_not_equal(load("admin:\n  engine_dirs: /e\n", &c, err), 0);
    assert_non_null(strstr(err, "engine_dirs"));
    conf_cleanup(&c);

    assert_non_null(mkdtemp(dir));
    assert_null(engine_chosen_exe(dir)); /* none chosen */
    file = xasprintf("%s/engine.json", dir);
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("{\"exe\": \"/bin/true\", \"engine\": \"x\"}", f);
    fclose(f);
    exe = engine_chosen_exe(dir);
    assert_string_equal(exe, "/bin/true");
    free(exe);
    assert_int_equal(load("llama:\n  exe: /file/llama\n", &c, err), 0);
    free(c.admin.state_dir);
    c.admin.state_dir = xstrdup(dir);
    exe = generation_llama_exe(&c, err, sizeof(err));
    assert_string_equal(exe, "/bin/true"); /* the admin's choice over llama.exe */
    free(exe);
    conf_cleanup(&c);
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("{\"exe\": \"/nonexistent/llama-server\"}", f);
    fclose(f);
    assert_null(engine_chosen_exe(dir)); /* gone: the configured one again */
    unlink(file);
    rmdir(dir);
    free(file);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(listen_addresses),
        cmocka_unit_test(split_args_like_a_shell),
        cmocka_unit_test(cmd_comments_and_continuations),
        cmocka_unit_test(model_macros),
        cmocka_unit_test(yaml_file_and_env),
        cmocka_unit_test(yaml_errors_name_line_and_key),
        cmocka_unit_test(unknown_flag),
        cmocka_unit_test(tunnel_sections),
        cmocka_unit_test(tunnel_client_same_or_not),
        cmocka_unit_test(llama_swap_section),
        cmocka_unit_test(llama_swap_errors),
        cmocka_unit_test(llama_swap_keys_honoured),
        cmocka_unit_test(cloud_peer_keys),
        cmocka_unit_test(subst_late_macros),
        cmocka_unit_test(generations_free_what_nothing_uses),
        cmocka_unit_test(stamps_tell_a_change_from_none),
        cmocka_unit_test(loopback_hosts),
        cmocka_unit_test(admin_engine_keys_and_choice),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
