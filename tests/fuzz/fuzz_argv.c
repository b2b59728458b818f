/*
 * libFuzzer target for the argv a model starts with. The input is up to three NUL-separated
 * fields: a model name, a file name (its "&k=v" flags) and a companion script. It traps when
 * a name, path or value does not stay one argument, when Goinfer's --host, --port and alias
 * move, when a reserved flag (models_flag_reserved) gets through, when a flag is changed on
 * the way, or when a substituted value is scanned again for macros.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/swapconf.h"
#include "core/xmalloc.h"
#include "models/catalog.h"
#include "models/discovery.h"
#include "proc/argv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PORT "4242"

static void
check(int cond)
{
    if (!cond)
        __builtin_trap();
}

/* The raw flags of both sources, reserved ones included: the builder must drop them. */
static char **
raw_flags(const char *path, const char *script)
{
    char **a = models_flags_from_name(path), **b = models_flags_from_text(script);
    size_t na = 0, nb = 0;
    char **v;

    while (a && a[na])
        na++;
    while (b && b[nb])
        nb++;
    v = xcalloc(na + nb + 1, sizeof(*v));
    memcpy(v, a ? a : v, na * sizeof(*v));
    memcpy(v + na, b ? b : v, nb * sizeof(*v));
    free(a);
    free(b);
    return v;
}

/* What is left after the fixed head is the raw flags, in order, less the reserved ones. */
static void
check_tail(char **argv, int from, int argc, char **raw)
{
    size_t r = 0;

    for (int i = from; i < argc; i++) {
        check(models_flag_reserved(argv[i]) == 0);
        while (raw[r] != NULL && strcmp(raw[r], argv[i]) != 0)
            r++;
        check(raw[r] != NULL); /* a word of the input, unchanged */
        r++;
    }
}

static void
discovered(const char *name, const char *file, const char *script)
{
    char *args[] = {"--metrics-name", "${MODEL_ID}", "${PORT}", NULL};
    char *path = xasprintf("/m/%s.gguf", file), **flags = raw_flags(path, script), **argv = NULL;
    struct model_def d = {
        .name = (char *)name, .exe = "/bin/llama-server", .path = path, .args = args};
    const char *head[] = {
        "/bin/llama-server", "-m", path, "--host", "127.0.0.1", "--port", PORT, "--alias", name,
        "--metrics-name",    name, PORT};
    int n, k = (int)(sizeof(head) / sizeof(head[0]));

    d.flags = flags;
    n = catalog_argv(&d, PORT, &argv);
    check(n >= k && argv[n] == NULL);
    for (int i = 0; i < k; i++)
        check(strcmp(argv[i], head[i]) == 0);
    check_tail(argv, k, n, flags);
    proc_argv_free(argv);
    proc_argv_free(flags);
    free(path);
}

static void
configured(const char *name)
{
    const struct proc_var vars[] = {{"PORT", PORT}, {"MODEL_ID", name}};
    char **argv = NULL, *model = xasprintf("/m/%s.gguf", name);
    int n = proc_argv_fill("srv --port ${PORT} --alias ${MODEL_ID} -m /m/${MODEL_ID}.gguf", vars, 2,
                           &argv);

    check(n == 7 && argv[7] == NULL);
    check(strcmp(argv[2], PORT) == 0 && strcmp(argv[4], name) == 0);
    check(strcmp(argv[6], model) == 0);
    proc_argv_free(argv);
    free(model);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = xmalloc(size + 3), *field[3];

    memcpy(s, data, size);
    s[size] = s[size + 1] = s[size + 2] = '\0'; /* missing fields are empty */
    field[0] = s;
    field[1] = field[0] + strlen(field[0]) + 1; /* at most s + size + 1 */
    field[2] = field[1] + strlen(field[1]) + 1; /* at most s + size + 2 */
    discovered(field[0], field[1], field[2]);
    configured(field[0]);
    free(s);
    return 0;
}
