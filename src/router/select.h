/* Which model a request names: pure logic, no I/O, so tests and fuzzers call it directly. */
#ifndef GOINFER_ROUTER_SELECT_H
#define GOINFER_ROUTER_SELECT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Reads "model" from a JSON request body. Returns 0 with *name set (malloc'd) or NULL when the
 * body names none; -EINVAL with a message in err when the body is not a JSON object or "model"
 * is not a string.
 */
int select_model_from_json(const char *body, size_t len, char **name, char *err, size_t errlen);
/* The same for large bodies, without parsing all of them: only the top level is walked, and
 * only "model"'s value decoded (the rest of a malformed body is left to llama-server). */
int select_model_scan(const char *body, size_t len, char **name, char *err, size_t errlen);

/* Whether a JSON request body asks for a stream ("stream": true at its top level); false for
 * anything unreadable. Walks the top level only, as select_model_scan does. */
bool select_wants_stream(const char *body, size_t len);

/*
 * Reads the "model" field of a multipart/form-data body (audio transcription uploads).
 * content_type is the request's Content-Type with its boundary. Returns 0 with *name set or NULL.
 */
int select_model_from_multipart(const char *body, size_t len, const char *content_type,
                                size_t ct_len, char **name);
/* Reads model=... from a URL query string (percent-decoded). Returns 0 with *name or NULL. */
int select_model_from_query(const char *query, char **name);
/*
 * For /upstream/<model>/<rest>: finds the longest known name that prefixes path (names may hold
 * '/'). names is a NULL-terminated list. Returns the index, or -1; *rest points into path.
 */
int select_upstream_prefix(const char *path, const char *const *names, const char **rest);

/*
 * Rewrites a JSON object body for the upstream: drops the keys in strip (NULL-terminated, may
 * be NULL) and sets "model" to model when not NULL. Returns 1 with *out (malloc'd) when it
 * changed something, 0 when the body is to be sent as is.
 */
int select_rewrite_body(const char *body, size_t len, char *const *strip, const char *model,
                        char **out, size_t *out_len);

#endif
