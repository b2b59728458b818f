#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/xmalloc.h"
#include "keys/broker.h"

static const char usage[] =
    "usage: goinfer keys [-state-dir DIR] [-ledger postgresql://...] COMMAND\n"
    "  create NAME [RULES]   a new key; prints its secret, the only time it is shown\n"
    "  list                  every key with its spend (never a secret)\n"
    "  show NAME|ID          one key, with its ledger totals\n"
    "  update NAME|ID RULES  changes the rules given\n"
    "  revoke NAME|ID        revokes the key and its browser tokens\n"
    "RULES: --models 'glob,glob' --origins 'https://a,https://b' --expires 30d|12h|UNIX|never\n"
    "  --budget-usd X --budget-usd-period daily|weekly|monthly|none\n"
    "  --budget-tokens N --budget-tokens-period ...  --rpm N --tpm N --max-tokens N\n"
    "  --price-prompt USD --price-completion USD (a token, for models that report no cost)\n"
    "The ledger is <state dir>/" KEYS_LEDGER_FILE
    "; the state dir is -state-dir, else GI_STATE_DIR,\n"
    "else $XDG_STATE_HOME/goinfer, else ~/.local/state/goinfer (admin.state_dir's default);\n"
    "with -ledger (or GI_LEDGER), goinfer.yml's ledger: in PostgreSQL instead.\n";

static char *
state_dir(const char *flag)
{
    const char *env = getenv("GI_STATE_DIR"), *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");

    if (flag != NULL)
        return xstrdup(flag);
    if (env != NULL && *env)
        return xstrdup(env);
    if (xdg != NULL && *xdg)
        return xasprintf("%s/goinfer", xdg);
    return xasprintf("%s/.local/state/goinfer", home ? home : ".");
}

/* A flag's value as the JSON the rules take. */
static json_t *
value_of(const char *field, const char *v)
{
    char *end;
    double d;

    if (strcmp(field, "models") == 0 || strcmp(field, "origins") == 0) {
        json_t *a = json_array();
        const char *p = v;

        while (*p) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);

            if (n > 0)
                json_array_append_new(a, json_stringn(p, n));
            p += n + (comma != NULL);
        }
        return a;
    }
    if (strcmp(v, "none") == 0 && strstr(field, "period") == NULL)
        return json_null();
    d = strtod(v, &end);
    if (end != v && *end == '\0')
        return d == (double)(json_int_t)d ? json_integer((json_int_t)d) : json_real(d);
    return json_string(v);
}

/* "--budget-usd 5" ... into {"budget_usd": 5, ...}; -EINVAL on a flag with no value. */
static int
rules_of(int argc, char **argv, json_t *spec)
{
    for (int i = 0; i < argc; i++) {
        char field[64];
        const char *name = argv[i];

        if (strncmp(name, "--", 2) != 0 || i + 1 >= argc || strlen(name) >= sizeof(field) + 2) {
            fprintf(stderr, "goinfer keys: expected --rule value, got '%s'\n%s", name, usage);
            return -EINVAL;
        }
        snprintf(field, sizeof(field), "%s", name + 2);
        for (char *p = field; *p; p++)
            if (*p == '-')
                *p = '_';
        json_object_set_new(spec, field, value_of(field, argv[++i]));
    }
    return 0;
}

static int
print(json_t *o, int status, const char *err)
{
    char *s;

    if (o == NULL) {
        fprintf(stderr, "goinfer keys: %s\n", err);
        return status == 404 ? 2 : 1;
    }
    s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return 0;
}

static int
run(struct broker *b, int argc, char **argv)
{
    const char *cmd = argv[0];
    int64_t now = (int64_t)time(NULL);
    char err[256] = "";
    int status = 400, rc;
    json_t *spec = json_object(), *o = NULL;

    if (strcmp(cmd, "list") == 0 && argc == 1) {
        o = broker_list(b, now);
    } else if (strcmp(cmd, "show") == 0 && argc == 2) {
        o = broker_get(b, argv[1], now, &status, err, sizeof(err));
    } else if (strcmp(cmd, "revoke") == 0 && argc == 2) {
        o = broker_revoke(b, argv[1], now, &status, err, sizeof(err));
    } else if ((strcmp(cmd, "create") == 0 || strcmp(cmd, "update") == 0) && argc >= 2) {
        if (rules_of(argc - 2, argv + 2, spec) < 0) {
            json_decref(spec);
            return 1;
        }
        if (cmd[0] == 'c') {
            json_object_set_new(spec, "name", json_string(argv[1]));
            o = broker_create(b, spec, now, &status, err, sizeof(err));
            if (o != NULL)
                fprintf(stderr, "goinfer keys: the secret is shown once: keep it now\n");
        } else {
            o = broker_update(b, argv[1], spec, now, &status, err, sizeof(err));
        }
    } else {
        fprintf(stderr, "%s", usage);
        json_decref(spec);
        return 1;
    }
    rc = print(o, status, err);
    json_decref(spec);
    return rc;
}

int
keys_cli(int argc, char **argv)
{
    const char *flag = NULL, *url = getenv("GI_LEDGER");
    char err[512], *dir;
    struct ledger *l = NULL;
    struct broker *b;
    int rc;

    argc--, argv++;
    while (argc >= 2 && (strcmp(argv[0], "-state-dir") == 0 || strcmp(argv[0], "-ledger") == 0)) {
        *(argv[0][1] == 's' ? &flag : &url) = argv[1];
        argc -= 2, argv += 2;
    }
    if (url != NULL && *url == '\0')
        url = NULL;
    if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "help") == 0) {
        fprintf(argc < 1 ? stderr : stdout, "%s", usage);
        return argc < 1;
    }
    dir = state_dir(flag);
    if (ledger_open(NULL, dir, url, &l, err, sizeof(err)) < 0) {
        fprintf(stderr, "goinfer %s\n", err);
        free(dir);
        return 1;
    }
    b = broker_new(NULL, l);
    rc = run(b, argc, argv);
    broker_free(b);
    free(dir);
    return rc;
}
