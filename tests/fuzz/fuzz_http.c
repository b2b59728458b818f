/* libFuzzer target: the HTTP/1.1 server (request line, headers, chunked and sized bodies,
 * pipelining, limits, absolute-form targets) fed arbitrary bytes over a real loopback
 * connection. The handler echoes the body, streamed in two parts, so responses of every kind
 * are produced too; paths under /deny are answered from the head (the early answer, its
 * lingering close) and bodies are reserved against small in-flight limits. */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/log.h"
#include "http/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static struct http_server *srv;
static int port;

static void
echo(struct http_request *req, void *arg)
{
    static const struct http_header h = {"Content-Type", 12, "text/plain", 10};
    size_t half = req->body.len / 2;

    (void)arg;
    if (strcmp(req->path, "/error") == 0) {
        http_respond_error(req, 400, "invalid_request_error", "no");
        return;
    }
    http_stream_start(req, 200, &h, 1, -1);
    if (req->body.len > 0) {
        http_stream_write(req, req->body.data, half);
        http_stream_write(req, req->body.data + half, req->body.len - half);
    }
    http_stream_end(req);
}

static bool
admit(struct http_request *req, void *arg)
{
    (void)arg;
    if (strncmp(req->path, "/deny", 5) != 0)
        return true;
    http_respond_error(req, 401, "authentication_error", "denied from the head");
    return false;
}

static void
setup(void)
{
    static const struct http_limits limits = {.header_bytes = 4096,
                                              .body_bytes = 65536,
                                              .header_ms = 1000,
                                              .keepalive_ms = 1000,
                                              .write_high = 65536,
                                              .write_stall_ms = 1000,
                                              .max_conns = 64,
                                              .max_conns_per_ip = 64,
                                              .body_in_flight = 98304,
                                              .body_per_ip = 81920};

    log_set_level(LOG_LEVEL_ERROR);
    uv_loop_init(&loop);
    srv = http_server_new(&loop, &limits, echo, NULL);
    http_server_on_admit(srv, admit);
    if (http_server_listen(srv, "127.0.0.1", 0, 1, false, &port) < 0)
        __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    char sink[65536];
    int fd, spins = 0;
    ssize_t n;

    if (srv == NULL)
        setup();
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        __builtin_trap();
    if (size > 0 && write(fd, data, size) < 0)
        __builtin_trap();
    shutdown(fd, SHUT_WR); /* the server sees EOF once it has read everything */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (;;) { /* until the server closes: every input must end its connection */
        uv_run(&loop, UV_RUN_NOWAIT);
        n = read(fd, sink, sizeof(sink));
        if (n == 0)
            break;
        if (++spins > 200000)
            __builtin_trap(); /* a connection that never ends */
    }
    close(fd);
    return 0;
}
