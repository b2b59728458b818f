#!/usr/bin/python3
"""FAKE OpenRouter, for tests and benchmarks only: an HTTPS server with the test's own
certificate that answers like https://openrouter.ai/api (GET /api/v1/models, POST
/api/v1/chat/completions with and without streaming, OpenRouter's error shape, the final usage
with "cost", its ": OPENROUTER PROCESSING" comments).

usage: fake_openrouter.py PORT CERT KEY API_KEY LOGFILE [GONE_DIR]
  (PORT 0: an ephemeral port, printed on stdout as "port N"; CERT "-": plain HTTP)

The model picks a behaviour:
  fake/ok         answers (stream or not), usage {prompt_tokens, completion_tokens, cost}
  fake/payment    402 (insufficient credits)        fake/ratelimit  429 (rate limited)
  fake/down       502 on every attempt               fake/flaky      503 on the first attempt
                                                                     of a request, then 200
  fake/cut        streams 2 chunks, then closes the connection mid-stream
  fake/slow       waits 2 s before answering (a slow first byte)
  fake/big        streams 512 chunks of 64 KiB (32 MiB) as fast as it can, then usage
  fake/endless    streams a chunk every 20 ms until the client goes, then writes the moment it
                  noticed to GONE_DIR/endless.gone
Every request is appended to LOGFILE as one JSON line: method, path, model, whether the key
was right, and the attribution headers (HTTP-Referer, X-Title).
"""
import http.server
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time

PORT, CERT, KEY, API_KEY, LOGFILE = sys.argv[1:6]
GONE_DIR = sys.argv[6] if len(sys.argv) > 6 else None
LOCK = threading.Lock()
FLAKY_SEEN = set()
MODELS = ["fake/ok", "fake/payment", "fake/ratelimit", "fake/down", "fake/flaky", "fake/cut",
          "fake/slow", "fake/endless", "fake/big", "other/not-allowed"]


def dumps(o):
    return json.dumps(o, separators=(",", ":"))


def usage():
    return {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cost": 0.000123,
            "is_byok": False, "cost_details": {"upstream_inference_cost": None}}


def chunk(i, model, **extra):
    c = {"id": "gen-fake-1", "provider": "FAKE", "model": model, "object": "chat.completion.chunk",
         "created": 1700000000,
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": f"tok{i} "},
                      "finish_reason": None}]}
    c.update(extra)
    return b"data: " + dumps(c).encode() + b"\n\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()  # no Nagle: a head and a body in two writes would wait for a delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def record(self, model, key_ok):
        line = {"method": self.command, "path": self.path, "model": model, "key_ok": key_ok,
                "referer": self.headers.get("HTTP-Referer"), "title": self.headers.get("X-Title"),
                "t": time.time()}
        with LOCK, open(LOGFILE, "a") as f:
            f.write(dumps(line) + "\n")

    def send_json(self, status, obj):
        body = dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, message):
        self.send_json(status, {"error": {"code": status, "message": message,
                                          "metadata": {"provider_name": "FAKE"}}})

    def key_ok(self):
        return self.headers.get("Authorization") == f"Bearer {API_KEY}"

    def do_GET(self):
        self.record(None, self.key_ok())
        if self.path.split("?")[0] != "/api/v1/models":
            return self.error(404, "not found")
        self.send_json(200, {"data": [{"id": m, "name": f"FAKE {m}", "created": 1700000000,
                                       "context_length": 8192,
                                       "pricing": {"prompt": "0.000001", "completion": "0.000002"}}
                                      for m in MODELS]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        model = body.get("model")
        ok = self.key_ok()
        self.record(model, ok)
        if self.path != "/api/v1/chat/completions":
            return self.error(404, "not found")
        if not ok:
            return self.error(401, "No auth credentials found")
        kind = (model or "").split("/")[-1]
        if kind == "payment":
            return self.error(402, "Insufficient credits. Add more using https://openrouter.ai/credits")
        if kind == "ratelimit":
            return self.error(429, "Rate limit exceeded: free-models-per-min")
        if kind == "down":
            return self.error(502, "FAKE provider returned error")
        if kind == "flaky":
            tag = dumps(body.get("messages"))
            with LOCK:
                first = tag not in FLAKY_SEEN
                FLAKY_SEEN.add(tag)
            if first:
                return self.error(503, "FAKE: no provider available, try again")
        if kind == "slow":
            time.sleep(2)
        if body.get("stream"):
            return self.stream(model, kind)
        self.send_json(200, {"id": "gen-fake-1", "provider": "FAKE", "model": model,
                             "object": "chat.completion", "created": 1700000000,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "FAKE hello"}}],
                             "usage": usage()})

    def stream(self, model, kind):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        send(b": OPENROUTER PROCESSING\n\n")
        if kind == "big":
            pad = "x" * 65000
            for i in range(512):
                send(b"data: " + dumps({"i": i, "choices": [{"index": 0, "delta": {"content": pad}}]}
                                       ).encode() + b"\n\n")
            send(chunk(0, model, usage=usage()))
            send(b"data: [DONE]\n\n")
            send(b"")
            return
        if kind == "endless":
            try:
                for i in range(100000):
                    send(chunk(i, model))
                    time.sleep(0.02)
            except OSError:
                if GONE_DIR:
                    with open(os.path.join(GONE_DIR, "endless.gone"), "w") as f:
                        f.write(repr(time.time()))
            return
        for i in range(3):
            send(chunk(i, model))
            if kind == "cut" and i == 1:
                self.wfile.flush()
                self.connection.shutdown(2)  # mid-stream, no last chunk
                self.close_connection = True
                return
        send(chunk(3, model, usage=usage()) .replace(b'"content":"tok3 "', b'"content":""'))
        send(b"data: [DONE]\n\n")
        send(b"")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    srv = Server(("127.0.0.1", int(PORT)), Handler)
    if CERT != "-":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CERT, KEY)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"port {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
