#include "select.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "core/xmalloc.h"

int
select_model_from_json(const char *body, size_t len, char **name, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = NULL, *m;
    int rc = 0;

    *name = NULL;
    if (len == 0)
        return 0;
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        snprintf(err, errlen, "request body is not valid JSON: %s (line %d, column %d)", je.text,
                 je.line, je.column);
        rc = -EINVAL;
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "request body must be a JSON object");
        rc = -EINVAL;
        goto out;
    }
    m = json_object_get(root, "model");
    if (m == NULL || json_is_null(m))
        goto out;
    if (!json_is_string(m)) {
        snprintf(err, errlen, "\"model\" must be a string naming a model (see GET /v1/models)");
        rc = -EINVAL;
        goto out;
    }
    if (json_string_length(m) > 0)
        *name = xstrndup(json_string_value(m), json_string_length(m));
out:
    json_decref(root);
    return rc;
}
