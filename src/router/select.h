/* Which model a request names: pure logic, no I/O, so tests and fuzzers call it directly. */
#ifndef GOINFER_ROUTER_SELECT_H
#define GOINFER_ROUTER_SELECT_H

#include <stddef.h>

/*
 * Reads "model" from a JSON request body. Returns 0 with *name set (malloc'd) or NULL when the
 * body names none; -EINVAL with a message in err when the body is not a JSON object or "model"
 * is not a string.
 */
int select_model_from_json(const char *body, size_t len, char **name, char *err, size_t errlen);

#endif
