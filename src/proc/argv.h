/*
 * Command lines as argument vectors, where processes are started: split into words as a shell
 * would read them (quotes, backslashes; no expansion), quoted back, and the late macros
 * (${PORT}, ${MODEL_ID}, ${PID}) filled into each word after the split, so no value can split,
 * join or re-expand an argument.
 */
#ifndef GOINFER_PROC_ARGV_H
#define GOINFER_PROC_ARGV_H

#include <stddef.h>

#include "core/buf.h"

/* Splits a command line the way a shell would for words and quotes (no expansion).
 * Returns the number of words, or -EINVAL for an unclosed quote; *out is NULL-terminated. */
int proc_argv_split(const char *s, char ***out);
void proc_argv_free(char **v);
/* Appends s single-quoted, so proc_argv_split reads it back as one word. */
void proc_argv_quote(struct buf *b, const char *s);

/* A late macro and its value at start (or stop) time. */
struct proc_var {
    const char *name; /* "PORT", "MODEL_ID", "PID" */
    const char *value;
};

/* Replaces each ${name} of v[0..n) in one pass: a value put in is never scanned again, so a
 * model named "${PORT}" stays "${PORT}". */
char *proc_argv_subst(const char *in, const struct proc_var *v, size_t n);
/*
 * A configured cmd as argv: split into words first (proc_argv_split), then the late macros
 * filled in each word, so a value stays one argument whatever spaces or quotes it holds.
 * Returns the number of words (0 for an empty cmd), or -EINVAL for an unclosed quote;
 * *argv is NULL-terminated (free with proc_argv_free), NULL on error.
 */
int proc_argv_fill(const char *cmd, const struct proc_var *v, size_t n, char ***argv);

#endif
