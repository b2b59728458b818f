/* libFuzzer target: which model a request body names (JSON, multipart, query) and the body
 * rewrite for strip_params/useModelName: all of it is reachable from any client. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/select.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Differential: where jansson accepts the body (small bodies are parsed by it), the scanner
 * used for large bodies must find the same model. */
static void
check_scan_agrees(const char *body, size_t size)
{
    char err[256], *full = NULL, *scanned = NULL;
    int a = select_model_from_json(body, size, &full, err, sizeof(err));
    int b = select_model_scan(body, size, &scanned, err, sizeof(err));

    if (size > 0 && size < 256 * 1024 && a == 0 && memchr(body, '\\', size) == NULL &&
        memchr(body, 0, size) == NULL) { /* escapes and NULs: jansson reads them its own way */
        if (b != 0 || (full == NULL) != (scanned == NULL) ||
            (full != NULL && strcmp(full, scanned) != 0))
            abort();
    }
    free(full);
    free(scanned);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *const strip[] = {"temperature", "top_k", NULL};
    static const struct select_rewrite rw = {strip, "m", "{\"a.b\":1,\"top_k\":[2]}",
                                             "{\"m\":{\"a\":null}}", "m"};
    const char *body = (const char *)data;
    char err[256], *name = NULL, *out = NULL, *q;
    size_t out_len = 0;
    static const char ct[] = "multipart/form-data; boundary=XyZ";

    check_scan_agrees(body, size);
    select_model_from_json(body, size, &name, err, sizeof(err));
    free(name);
    select_model_from_multipart(body, size, ct, sizeof(ct) - 1, &name);
    free(name);
    if (select_rewrite_body(body, size, &rw, &out, &out_len) == 1)
        free(out);
    q = malloc(size + 1);
    if (q != NULL) {
        memcpy(q, data, size);
        q[size] = '\0';
        select_model_from_query(q, &name);
        free(name);
        free(q);
    }
    return 0;
}
