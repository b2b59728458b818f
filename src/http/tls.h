/*
 * TLS for the HTTP listener (OpenSSL 3, TLS 1.2 and 1.3) through memory BIOs, so the libuv
 * socket code stays the same: ciphertext in and out of buffers, plaintext to and from the
 * HTTP layer. One context per certificate; connections keep theirs across a reload.
 */
#ifndef GOINFER_HTTP_TLS_H
#define GOINFER_HTTP_TLS_H

#include <stddef.h>

#include "core/buf.h"

struct tls_ctx;
struct tls_conn;

/* Loads a PEM certificate chain and key. Returns NULL with a message naming the file. */
struct tls_ctx *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

struct tls_conn *tls_conn_new(struct tls_ctx *ctx);
void tls_conn_free(struct tls_conn *t);
/* Takes ciphertext from the peer: plaintext for us is appended to plain, bytes to send back
 * to cipher. Returns 0, or -EPROTO with a reason in err (the connection must close). */
int tls_conn_input(struct tls_conn *t, const char *data, size_t len, struct buf *plain,
                   struct buf *cipher, char *err, size_t errlen);
/* Encrypts data; the ciphertext is appended to cipher. Returns 0 or -EPROTO. */
int tls_conn_output(struct tls_conn *t, const char *data, size_t len, struct buf *cipher);
/* A close_notify alert, appended to cipher. */
void tls_conn_close_notify(struct tls_conn *t, struct buf *cipher);

/* Writes a self-signed certificate and key (EC P-256, a year, CN=host) for a first try. */
int tls_write_self_signed(const char *cert_path, const char *key_path, const char *host,
                          char *err, size_t errlen);

#endif
