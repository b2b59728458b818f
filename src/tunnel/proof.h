/*
 * The token proof of the tunnel's upgrade: HMAC-SHA256 of the shared token over keying
 * material exported from this very TLS session, so a captured header can't be replayed on
 * another connection and the token itself never crosses the wire.
 */
#ifndef GOINFER_TUNNEL_PROOF_H
#define GOINFER_TUNNEL_PROOF_H

#include <stdbool.h>
#include <stddef.h>

#include "http/tls.h"

#define TUNNEL_PROOF_SIZE 48 /* 44 base64 characters and a NUL */

int tunnel_proof(const struct tls_conn *t, const char *token, char out[TUNNEL_PROOF_SIZE]);
/* Constant time. */
bool tunnel_proof_ok(const struct tls_conn *t, const char *token, const char *given, size_t len);

#endif
