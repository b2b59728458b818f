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
/* The percent-decoded value of key=... in a URL query string, or NULL. Returns 0. */
int select_query_value(const char *query, const char *key, char **value);
/*
 * For /upstream/<model>/<rest>: finds the longest known name that prefixes path (names may hold
 * '/'). names is a NULL-terminated list. Returns the index, or -1; *rest points into path.
 */
int select_upstream_prefix(const char *path, const char *const *names, const char **rest);

/* How a body is rewritten for the upstream, in llama-swap's order: "model" set to model, the
 * keys in strip dropped, then set's keys set, then those of set_by_id's entry for requested
 * (which may override set's). set and set_by_id are JSON object text; a key with dots sets a
 * nested value ("a.b": {"a":{"b":...}}), as llama-swap's sjson paths do. "model" itself is
 * never stripped or set by them. Every field may be NULL. */
struct select_rewrite {
    char *const *strip; /* NULL-terminated */
    const char *model;
    const char *set;
    const char *set_by_id;
    const char *requested;
};

/* Returns 1 with *out (malloc'd) when the JSON object body changed, 0 when it is to be sent as
 * is (nothing to do, or not a JSON object). */
int select_rewrite_body(const char *body, size_t len, const struct select_rewrite *rw, char **out,
                        size_t *out_len);

#endif
