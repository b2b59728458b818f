#include "admin/diff.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/xmalloc.h"

#define CONTEXT 3

struct line {
    const char *p;
    size_t n; /* without its '\n' */
};

struct lines {
    struct line *v;
    size_t n;
    bool no_final_newline;
};

static void
split(const char *s, size_t len, struct lines *out)
{
    size_t i = 0;

    out->v = NULL;
    out->n = 0;
    out->no_final_newline = len > 0 && s[len - 1] != '\n';
    while (i < len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (s + i)) : len - i;

        out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
        out->v[out->n++] = (struct line){s + i, n};
        i += n + 1;
    }
}

static bool
same(const struct line *x, const struct line *y)
{
    return x->n == y->n && memcmp(x->p, y->p, x->n) == 0;
}

/* One edit script entry: ' ' kept, '-' from a, '+' from b. */
struct op {
    char kind;
    size_t ai, bi;
};

/* The LCS of a[lo..ahi) and b[lo..bhi) as ops appended to *ops; all '-' then all '+' when the
 * table would be too large. */
static void
middle(const struct lines *a, size_t ahi, const struct lines *b, size_t bhi, size_t lo,
       struct op *ops, size_t *k)
{
    size_t n = ahi - lo, m = bhi - lo, i = 0, j = 0;
    uint32_t *t = NULL;

    if (n > 0 && m > 0 && (n + 1) * (m + 1) <= ADMIN_DIFF_MAX_CELLS) {
        t = xcalloc((n + 1) * (m + 1), sizeof(*t));
        for (size_t x = n; x-- > 0;)
            for (size_t y = m; y-- > 0;)
                t[x * (m + 1) + y] =
                    same(&a->v[lo + x], &b->v[lo + y]) ? t[(x + 1) * (m + 1) + y + 1] + 1
                    : t[(x + 1) * (m + 1) + y] > t[x * (m + 1) + y + 1] ? t[(x + 1) * (m + 1) + y]
                                                                        : t[x * (m + 1) + y + 1];
        while (i < n && j < m) {
            if (same(&a->v[lo + i], &b->v[lo + j]))
                ops[(*k)++] = (struct op){' ', lo + i++, lo + j++};
            else if (t[(i + 1) * (m + 1) + j] >= t[i * (m + 1) + j + 1])
                ops[(*k)++] = (struct op){'-', lo + i++, lo + j};
            else
                ops[(*k)++] = (struct op){'+', lo + i, lo + j++};
        }
    }
    while (i < n)
        ops[(*k)++] = (struct op){'-', lo + i++, lo + j};
    while (j < m)
        ops[(*k)++] = (struct op){'+', lo + i, lo + j++};
    free(t);
}

static void
put_line(struct buf *out, char kind, const struct lines *l, size_t i)
{
    buf_printf(out, "%c%.*s\n", kind, (int)l->v[i].n, l->v[i].p);
    if (i + 1 == l->n && l->no_final_newline)
        buf_printf(out, "\\ No newline at end of file\n");
}

/* Hunks: runs of changes with CONTEXT lines around, merged when close. */
static void
hunks(struct buf *out, const struct op *ops, size_t k, const struct lines *a, const struct lines *b)
{
    size_t i = 0;

    while (i < k) {
        size_t start, end, last, na = 0, nb = 0;

        while (i < k && ops[i].kind == ' ')
            i++;
        if (i == k)
            break;
        start = i > CONTEXT ? i - CONTEXT : 0;
        last = i;
        for (end = i; end < k; end++) {
            if (ops[end].kind != ' ')
                last = end;
            else if (end - last > 2 * CONTEXT)
                break;
        }
        end = last + CONTEXT + 1 < k ? last + CONTEXT + 1 : k;
        for (size_t x = start; x < end; x++) {
            na += ops[x].kind != '+';
            nb += ops[x].kind != '-';
        }
        buf_printf(out, "@@ -%zu,%zu +%zu,%zu @@\n", ops[start].ai + (na > 0), na,
                   ops[start].bi + (nb > 0), nb);
        for (size_t x = start; x < end; x++)
            put_line(out, ops[x].kind, ops[x].kind == '+' ? b : a,
                     ops[x].kind == '+' ? ops[x].bi : ops[x].ai);
        i = end;
    }
}

char *
admin_diff(const char *a_name, const char *a, size_t alen, const char *b_name, const char *b,
           size_t blen)
{
    struct lines la, lb;
    struct op *ops;
    struct buf out;
    size_t lo = 0, ahi, bhi, k = 0;
    char *s;

    if (alen == blen && memcmp(a, b, alen) == 0)
        return xstrdup("");
    split(a, alen, &la);
    split(b, blen, &lb);
    ahi = la.n;
    bhi = lb.n;
    while (lo < ahi && lo < bhi && same(&la.v[lo], &lb.v[lo]))
        lo++;
    while (ahi > lo && bhi > lo && same(&la.v[ahi - 1], &lb.v[bhi - 1]))
        ahi--, bhi--;
    ops = xcalloc(la.n + lb.n + 1, sizeof(*ops));
    for (size_t i = 0; i < lo; i++)
        ops[k++] = (struct op){' ', i, i};
    middle(&la, ahi, &lb, bhi, lo, ops, &k);
    for (size_t i = 0; ahi + i < la.n; i++)
        ops[k++] = (struct op){' ', ahi + i, bhi + i};
    buf_init(&out, SIZE_MAX);
    buf_printf(&out, "--- %s\n+++ %s\n", a_name, b_name);
    hunks(&out, ops, k, &la, &lb);
    s = xstrndup(out.data, out.len);
    buf_cleanup(&out);
    free(ops);
    free(la.v);
    free(lb.v);
    return s;
}
