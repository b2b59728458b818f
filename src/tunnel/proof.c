#include "proof.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

int
tunnel_proof(const struct tls_conn *t, const char *token, char out[TUNNEL_PROOF_SIZE])
{
    unsigned char ekm[32], mac[32];
    unsigned int n = sizeof(mac);

    if (tls_conn_export(t, ekm, sizeof(ekm)) < 0)
        return -EPROTO;
    if (HMAC(EVP_sha256(), token, (int)strlen(token), ekm, sizeof(ekm), mac, &n) == NULL)
        return -EPROTO;
    EVP_EncodeBlock((unsigned char *)out, mac, (int)n);
    return 0;
}

bool
tunnel_proof_ok(const struct tls_conn *t, const char *token, const char *given, size_t len)
{
    char want[TUNNEL_PROOF_SIZE];

    if (token == NULL || tunnel_proof(t, token, want) < 0 || len != strlen(want))
        return false;
    return CRYPTO_memcmp(want, given, len) == 0;
}
