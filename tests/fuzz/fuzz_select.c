/* libFuzzer target: which model a request body names (JSON, multipart, query) and the body
 * rewrite for strip_params/useModelName: all of it is reachable from any client. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/select.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *const strip[] = {"temperature", "top_k", NULL};
    const char *body = (const char *)data;
    char err[256], *name = NULL, *out = NULL, *q;
    size_t out_len = 0;
    static const char ct[] = "multipart/form-data; boundary=XyZ";

    select_model_from_json(body, size, &name, err, sizeof(err));
    free(name);
    select_model_from_multipart(body, size, ct, sizeof(ct) - 1, &name);
    free(name);
    if (select_rewrite_body(body, size, strip, "m", &out, &out_len) == 1)
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
