/*
 * Editing one scalar of a YAML text in place: the rest of the file (comments, order, quoting,
 * blank lines) stays byte for byte. Pure: text in, text out; no file, no global.
 */
#ifndef GOINFER_CONF_EDIT_H
#define GOINFER_CONF_EDIT_H

#include <stddef.h>

/*
 * The scalar at keys[0].keys[1]...keys[n-1] (block or flow mappings from the root) of text.
 * With value NULL, *out is that scalar's value; otherwise *out is the whole text with that
 * scalar replaced by value, written as a double-quoted YAML string (a block scalar's line end
 * kept). Returns 0; -ENOENT when a key is missing (err names it); -EINVAL when text is not
 * YAML or the node is not a scalar. The caller frees *out.
 */
int conf_edit_scalar(const char *text, size_t len, const char *const *keys, size_t n,
                     const char *value, char **out, char *err, size_t errlen);

#endif
