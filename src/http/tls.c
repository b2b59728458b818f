#include "tls.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

struct tls_ctx {
    SSL_CTX *ssl;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* network -> OpenSSL */
    BIO *wbio; /* OpenSSL -> network */
};

static void
openssl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "unknown";

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, reason);
}

/* Any certificate will do for the handshake: the tunnel checks its key's pin afterwards. */
static int
accept_any_cert(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

/* A tunnel client offers goinfer/1 and alone is asked for a certificate, so browsers on the
 * same port never see a certificate prompt; everyone else speaks HTTP/1.1. The tunnel is
 * TLS 1.3 only (both ends are ours, and its token proof rests on the exporter, which 1.2 binds
 * to the session only with extended master secret); other HTTPS clients may still use 1.2, so
 * it is a goinfer/1 offer over 1.2 that fails the handshake. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        const unsigned char *p = in + i + 1;
        unsigned n = in[i];

        if (i + 1 + n > inlen)
            break;
        if (n == 9 && memcmp(p, TLS_ALPN_TUNNEL, 9) == 0) {
            if (SSL_version(ssl) != TLS1_3_VERSION)
                return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
            SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any_cert);
            *out = p;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    for (unsigned i = 0; i < inlen; i += 1u + in[i])
        if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    return SSL_TLSEXT_ERR_NOACK;
}

struct tls_ctx *
tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    struct tls_ctx *c = xcalloc(1, sizeof(*c));
    char what[600];

    c->ssl = SSL_CTX_new(TLS_server_method());
    if (c->ssl == NULL)
        fatalx("out of memory creating a TLS context");
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(c->ssl, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(c->ssl, cert) != 1) {
        snprintf(what, sizeof(what), "TLS certificate %s", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ssl, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof(what), "TLS key %s", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c->ssl) != 1) {
        snprintf(what, sizeof(what), "TLS key %s does not match certificate %s", key, cert);
        goto fail;
    }
    return c;
fail:
    openssl_error(err, errlen, what);
    tls_ctx_free(c);
    return NULL;
}

void
tls_ctx_free(struct tls_ctx *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ssl); /* connections hold their own reference */
    free(c);
}

struct tls_conn *
tls_conn_new(struct tls_ctx *ctx)
{
    struct tls_conn *t = xcalloc(1, sizeof(*t));

    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL)
        fatalx("out of memory creating a TLS connection");
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs now */
    SSL_set_accept_state(t->ssl);
    return t;
}

void
tls_conn_free(struct tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

/* Moves what OpenSSL wants to send into cipher. */
static int
drain(struct tls_conn *t, struct buf *cipher)
{
    char tmp[16384];
    int n;

    while ((n = BIO_read(t->wbio, tmp, sizeof(tmp))) > 0)
        if (buf_append(cipher, tmp, (size_t)n) < 0)
            return -EMSGSIZE;
    return 0;
}

int
tls_conn_input(struct tls_conn *t, const char *data, size_t len, struct buf *plain,
               struct buf *cipher, char *err, size_t errlen)
{
    char tmp[16384];
    int n, e;

    if (len > 0 && BIO_write(t->rbio, data, (int)len) != (int)len)
        return -EPROTO;
    for (;;) {
        n = SSL_read(t->ssl, tmp, sizeof(tmp));
        if (n <= 0)
            break;
        if (buf_append(plain, tmp, (size_t)n) < 0)
            return -EMSGSIZE;
    }
    e = SSL_get_error(t->ssl, n);
    if (drain(t, cipher) < 0)
        return -EMSGSIZE;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_ZERO_RETURN)
        return 0;
    openssl_error(err, errlen, "TLS");
    return -EPROTO;
}

int
tls_conn_output(struct tls_conn *t, const char *data, size_t len, struct buf *cipher)
{
    size_t done = 0;

    while (done < len) {
        int n = SSL_write(t->ssl, data + done, (int)(len - done));

        if (n <= 0) {
            ERR_clear_error();
            return -EPROTO;
        }
        done += (size_t)n;
        if (drain(t, cipher) < 0)
            return -EMSGSIZE;
    }
    return drain(t, cipher);
}

void
tls_conn_close_notify(struct tls_conn *t, struct buf *cipher)
{
    if (SSL_is_init_finished(t->ssl) && SSL_shutdown(t->ssl) >= 0)
        drain(t, cipher);
    ERR_clear_error();
}

int
tls_stream_input(struct tls_conn *t, const struct tls_stream *io, const char *data, size_t len,
                 char *err, size_t errlen)
{
    struct buf plain, cipher;
    int rc;

    buf_init(&plain, SIZE_MAX); /* no larger than the ciphertext read */
    buf_init(&cipher, SIZE_MAX);
    rc = tls_conn_input(t, data, len, &plain, &cipher, err, errlen);
    if (rc == 0 && cipher.len > 0) /* handshake records, session tickets */
        io->send(io->arg, cipher.data, cipher.len);
    if (rc == 0 && plain.len > 0)
        io->deliver(io->arg, plain.data, plain.len);
    buf_cleanup(&plain);
    buf_cleanup(&cipher);
    return rc;
}

int
tls_stream_output(struct tls_conn *t, const struct tls_stream *io, const char *data, size_t len)
{
    struct buf cipher;
    int rc;

    buf_init(&cipher, SIZE_MAX);
    rc = tls_conn_output(t, data, len, &cipher);
    if (rc == 0)
        rc = io->send(io->arg, cipher.data ? cipher.data : "", cipher.len);
    buf_cleanup(&cipher);
    return rc;
}

static int
write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok;

    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
    if (fclose(f) != 0 || !ok)
        return -EIO;
    chmod(path, mode);
    return 0;
}

/* Clients check subjectAltName, not CN: name the host, localhost and the loopback address. */
static void
add_san(X509 *x, const char *host)
{
    char san[600];
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1", host);
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    if (ext != NULL) {
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
}

int
tls_write_self_signed(const char *cert_path, const char *key_path, const char *host, char *err,
                      size_t errlen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    int rc = -EIO;

    if (key == NULL || x == NULL) {
        openssl_error(err, errlen, "generating a TLS key");
        goto out;
    }
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
    X509_set_issuer_name(x, name);
    add_san(x, host);
    if (X509_sign(x, key, EVP_sha256()) == 0) {
        openssl_error(err, errlen, "signing the TLS certificate");
        goto out;
    }
    rc = write_pem(key_path, 0600, key, NULL);
    if (rc == 0)
        rc = write_pem(cert_path, 0644, NULL, x);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s or %s: %s", cert_path, key_path, strerror(-rc));
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- the tunnel's side of TLS: client contexts, pins, the exporter ---- */

struct tls_ctx *
tls_client_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x09" TLS_ALPN_TUNNEL;
    struct tls_ctx *c = xcalloc(1, sizeof(*c));

    c->ssl = SSL_CTX_new(TLS_client_method());
    if (c->ssl == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_3_VERSION);
    SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, accept_any_cert); /* the pin decides */
    SSL_CTX_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
    if (SSL_CTX_use_certificate_chain_file(c->ssl, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(c->ssl, key, SSL_FILETYPE_PEM) != 1) {
        openssl_error(err, errlen, cert);
        goto fail;
    }
    return c;
fail:
    if (c->ssl == NULL)
        openssl_error(err, errlen, "creating a TLS client context");
    tls_ctx_free(c);
    return NULL;
}

struct tls_conn *
tls_conn_new_client(struct tls_ctx *ctx, const char *server_name)
{
    struct tls_conn *t = tls_conn_new(ctx);

    SSL_set_connect_state(t->ssl);
    SSL_set_tlsext_host_name(t->ssl, server_name);
    return t;
}

int
tls_conn_start(struct tls_conn *t, struct buf *cipher)
{
    int n = SSL_do_handshake(t->ssl);

    if (n <= 0 && SSL_get_error(t->ssl, n) != SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return -EPROTO;
    }
    return drain(t, cipher);
}

bool
tls_conn_ready(const struct tls_conn *t)
{
    return SSL_is_init_finished(t->ssl);
}

bool
tls_conn_is_tunnel(const struct tls_conn *t)
{
    const unsigned char *p;
    unsigned n;

    SSL_get0_alpn_selected(t->ssl, &p, &n);
    return n == 9 && memcmp(p, TLS_ALPN_TUNNEL, 9) == 0 && SSL_version(t->ssl) == TLS1_3_VERSION;
}

/* "sha256/" and the base64 SHA-256 of the DER SubjectPublicKeyInfo, as HPKP and curl write it. */
static int
pin_of(X509 *x, char out[TLS_PIN_SIZE])
{
    unsigned char *der = NULL, md[32];
    int n = x ? i2d_PUBKEY(X509_get0_pubkey(x), &der) : -1;

    if (n <= 0)
        return -EPROTO;
    SHA256(der, (size_t)n, md);
    OPENSSL_free(der);
    memcpy(out, "sha256/", 7);
    EVP_EncodeBlock((unsigned char *)out + 7, md, sizeof(md));
    return 0;
}

int
tls_conn_peer_pin(const struct tls_conn *t, char out[TLS_PIN_SIZE])
{
    X509 *x = SSL_get1_peer_certificate(t->ssl);
    int rc = pin_of(x, out);

    X509_free(x);
    return rc;
}

int
tls_cert_pin(const char *cert_path, char out[TLS_PIN_SIZE])
{
    FILE *f = fopen(cert_path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    int rc = pin_of(x, out);

    if (f)
        fclose(f);
    X509_free(x);
    return rc;
}

int
tls_conn_export(const struct tls_conn *t, unsigned char *out, size_t len)
{
    static const char label[] = "EXPORTER-goinfer-tunnel";

    return SSL_export_keying_material(t->ssl, out, len, label, sizeof(label) - 1, NULL, 0, 0) == 1
               ? 0
               : -EPROTO;
}

int
tls_random_hex(char out[65])
{
    unsigned char raw[32];

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}
