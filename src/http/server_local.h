/*
 * Between server.c and local.c only: a request from http_local_start is answered by the
 * same response functions as any other; they hand its output to local.c instead of a socket.
 */
#ifndef GOINFER_HTTP_SERVER_LOCAL_H
#define GOINFER_HTTP_SERVER_LOCAL_H

#include "http/server.h"

/* server.c */
uint64_t http_next_request_id(void);
void http_access_log(const struct http_request *req);
void http_server_dispatch(struct http_server *srv, struct http_request *req);
size_t http_server_write_high(const struct http_server *srv);
/* Local requests count as active, so a shutdown waits for them as for connections. */
void http_server_count_local(struct http_server *srv, int delta);

/* local.c */
struct http_server *local_server(const struct http_request *req);
void local_head(struct http_request *req, const struct http_header *h, size_t n,
                int64_t content_length);
int local_body(struct http_request *req, const char *data, size_t len);
/* Ends the response; req may be freed on return. */
void local_finish(struct http_request *req, bool cut);
size_t local_queued(const struct http_request *req);
const char *local_peer(const struct http_request *req);

#endif
