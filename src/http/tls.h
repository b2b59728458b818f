/*
 * TLS for the HTTP listener (OpenSSL 3, TLS 1.2 and 1.3) through memory BIOs, so the libuv
 * socket code stays the same: ciphertext in and out of buffers, plaintext to and from the
 * HTTP layer. One context per certificate; connections keep theirs across a reload.
 */
#ifndef GOINFER_HTTP_TLS_H
#define GOINFER_HTTP_TLS_H

#include <stdbool.h>
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

/*
 * TLS over a byte stream, the glue both ends share (the HTTP server's connections, the tunnel
 * client's): what is sent is encrypted and handed to send; what arrives is decrypted, the
 * handshake's own records go back through send, and plaintext goes to deliver.
 */
struct tls_stream {
    int (*send)(void *arg, const char *data, size_t len); /* ciphertext for the socket */
    void (*deliver)(void *arg, const char *data, size_t len);
    void *arg;
};

/* Returns 0, or -EPROTO with a reason in err (the connection must close). */
int tls_stream_input(struct tls_conn *t, const struct tls_stream *io, const char *data, size_t len,
                     char *err, size_t errlen);
/* Returns 0, or < 0 when it could not be encrypted or sent. */
int tls_stream_output(struct tls_conn *t, const struct tls_stream *io, const char *data,
                      size_t len);

/* Writes a self-signed certificate and key (EC P-256, a year, CN=host) for a first try. */
int tls_write_self_signed(const char *cert_path, const char *key_path, const char *host, char *err,
                          size_t errlen);

/* ---- for the reverse tunnel (src/tunnel/) ---- */

#define TLS_ALPN_TUNNEL "goinfer/1"
#define TLS_PIN_SIZE    52 /* "sha256/" + 44 base64 characters + NUL */

/* TLS 1.3 only, ALPN goinfer/1, our certificate; the server is checked by its pin, not a CA. */
struct tls_ctx *tls_client_ctx_new(const char *cert, const char *key, char *err, size_t errlen);
struct tls_conn *tls_conn_new_client(struct tls_ctx *ctx, const char *server_name);
/* The ClientHello, appended to cipher. Returns 0 or -EPROTO. */
int tls_conn_start(struct tls_conn *t, struct buf *cipher);
bool tls_conn_ready(const struct tls_conn *t);
/* The peer chose ALPN goinfer/1 (the server then asked for a client certificate). */
bool tls_conn_is_tunnel(const struct tls_conn *t);
/* The peer's key pin, "sha256/<base64>"; -1 without a peer certificate. */
int tls_conn_peer_pin(const struct tls_conn *t, char out[TLS_PIN_SIZE]);
int tls_cert_pin(const char *cert_path, char out[TLS_PIN_SIZE]);
/* Keying material bound to this TLS session (RFC 5705), for the tunnel's token proof. */
int tls_conn_export(const struct tls_conn *t, unsigned char *out, size_t len);

/* 32 random bytes from OpenSSL's generator, as 64 hex digits (API keys, key secrets): 0 or
 * -EIO. */
int tls_random_hex(char out[65]);

#endif
