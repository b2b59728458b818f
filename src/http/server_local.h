/*
 * What local.c (requests from http_local_start) uses of server.c; server.c uses nothing of
 * local.c, which answers through its own struct http_transport.
 */
#ifndef GOINFER_HTTP_SERVER_LOCAL_H
#define GOINFER_HTTP_SERVER_LOCAL_H

#include "http/server.h"

/* server.c */
uint64_t http_next_request_id(void);
void http_access_log(const struct http_request *req);
/* The client left before the response ended: 499 if nothing was sent, the access line, the
 * handler's on_abort. Once per request, on every road. */
void http_request_gone(struct http_request *req);
/* Output drained: the handler's drain, if it waits for one. */
void http_drained(struct http_request *req);
void http_server_dispatch(struct http_server *srv, struct http_request *req);
size_t http_server_write_high(const struct http_server *srv);
/* Local requests count as active, so a shutdown waits for them as for connections. */
void http_server_count_local(struct http_server *srv, int delta);

#endif
