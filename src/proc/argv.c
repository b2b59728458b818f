#include "argv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

int
proc_argv_split(const char *s, char ***out)
{
    char **v = xcalloc(1, sizeof(*v));
    size_t n = 0;
    struct buf w;

    buf_init(&w, 1 << 20);
    while (s && *s) {
        char q = 0;

        s += strspn(s, " \t\n");
        if (*s == '\0')
            break;
        buf_reset(&w);
        for (; *s && (q || (*s != ' ' && *s != '\t' && *s != '\n')); s++) {
            if (q == 0 && (*s == '\'' || *s == '"'))
                q = *s;
            else if (q != 0 && *s == q)
                q = 0;
            else if (*s == '\\' && q != '\'' && s[1])
                buf_append(&w, ++s, 1);
            else
                buf_append(&w, s, 1);
        }
        if (q != 0) {
            buf_cleanup(&w);
            proc_argv_free(v);
            *out = NULL;
            return -EINVAL;
        }
        v = xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = xstrdup(buf_cstr(&w));
        v[n] = NULL;
    }
    buf_cleanup(&w);
    *out = v;
    return (int)n;
}

void
proc_argv_quote(struct buf *b, const char *s)
{
    buf_append(b, "'", 1);
    for (; *s; s++) {
        if (*s == '\'')
            buf_append(b, "'\\''", 4);
        else
            buf_append(b, s, 1);
    }
    buf_append(b, "'", 1);
}

void
proc_argv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static const struct proc_var *
find_var(const struct proc_var *v, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i].name) == len && strncmp(v[i].name, name, len) == 0)
            return &v[i];
    return NULL;
}

char *
proc_argv_subst(const char *in, const struct proc_var *v, size_t n)
{
    struct buf b;
    const char *p = in;
    char *out;

    buf_init(&b, 1 << 20);
    while (*p) {
        const char *open = strstr(p, "${"), *close = open ? strchr(open + 2, '}') : NULL;
        const struct proc_var *var;

        if (close == NULL) {
            buf_append(&b, p, strlen(p));
            break;
        }
        var = find_var(v, n, open + 2, (size_t)(close - open - 2));
        if (var == NULL) { /* not ours: keep "${" and look again right after it */
            buf_append(&b, p, (size_t)(open - p) + 2);
            p = open + 2;
            continue;
        }
        buf_append(&b, p, (size_t)(open - p));
        buf_append(&b, var->value, strlen(var->value));
        p = close + 1;
    }
    out = xstrdup(buf_cstr(&b));
    buf_cleanup(&b);
    return out;
}

int
proc_argv_fill(const char *cmd, const struct proc_var *v, size_t n, char ***argv)
{
    int argc = proc_argv_split(cmd, argv);

    for (int i = 0; i < argc; i++) {
        char *w = proc_argv_subst((*argv)[i], v, n);

        free((*argv)[i]);
        (*argv)[i] = w;
    }
    return argc;
}
