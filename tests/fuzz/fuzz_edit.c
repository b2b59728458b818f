/* libFuzzer target: in-place YAML scalar edits (conf/edit.c) on arbitrary text. Whenever
 * models.m.cmd is a scalar, replacing it with a value full of quotes, backslashes, control
 * bytes and UTF-8 must give a text that still parses and reads that value back exactly (a
 * key with no value written is refused, not guessed at). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/edit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {"models", "m", "cmd"};
    static const char value[] = "prog -c \"2\" 'x' \\ \t\x01 é # not a comment";
    char err[256], *old = NULL, *edited = NULL, *back = NULL;

    if (conf_edit_scalar((const char *)data, size, keys, 3, NULL, &old, err, sizeof(err)) != 0)
        return 0;
    if (conf_edit_scalar((const char *)data, size, keys, 3, value, &edited, err, sizeof(err)) !=
        0) {
        if (old[0] != '\0')
            abort(); /* it was read: it must be replaceable (an empty value is refused) */
        free(old);
        return 0;
    }
    if (conf_edit_scalar(edited, strlen(edited), keys, 3, NULL, &back, err, sizeof(err)) != 0 ||
        strcmp(back, value) != 0)
        abort(); /* the edit broke the file, or the value did not survive */
    free(old);
    free(edited);
    free(back);
    return 0;
}
