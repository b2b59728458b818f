/*
 * The GPU machine's end of the reverse tunnel: dials every configured server (TLS 1.3, ALPN
 * goinfer/1, its own certificate, the server's pin checked), upgrades with the token proof,
 * then serves HTTP/2 on the connection it opened: each stream is an end user's request, run
 * against this machine's own Goinfer listener and streamed back. Reconnects with full-jitter
 * backoff (1 s base, 60 s cap; Retry-After wins; 5 minutes after a refusal of its identity).
 */
#ifndef GOINFER_TUNNEL_CLIENT_H
#define GOINFER_TUNNEL_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "conf/tunnelconf.h"

struct tunnel_client;

/* local_url: this process's own listener ("http://127.0.0.1:4444"); local_key: its user key
 * (NULL when none). Borrows conf. Returns NULL with err filled when the identity can't load. */
struct tunnel_client *tunnel_client_new(uv_loop_t *loop, const struct conf_tunnel_client *conf,
                                        const char *local_url, const char *local_key, char *err,
                                        size_t errlen);
void tunnel_client_free(struct tunnel_client *tc);

#endif
