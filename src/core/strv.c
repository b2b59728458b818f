#include "strv.h"

#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

size_t
strv_len(char *const *v)
{
    size_t n = 0;

    while (v && v[n])
        n++;
    return n;
}

void
strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void
strv_add(char ***v, const char *s, size_t len)
{
    size_t n = strv_len(*v);

    *v = xrealloc(*v, (n + 2) * sizeof(**v));
    (*v)[n] = xstrndup(s, len);
    (*v)[n + 1] = NULL;
}

char **
strv_split(const char *s)
{
    char **out = xcalloc(1, sizeof(*out));

    while (s && *s) {
        size_t n;

        s += strspn(s, ", ");
        n = strcspn(s, ", ");
        if (n == 0)
            break;
        strv_add(&out, s, n);
        s += n;
    }
    return out;
}
