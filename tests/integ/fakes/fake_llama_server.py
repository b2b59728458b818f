#!/usr/bin/python3
"""FAKE llama-server, for fault injection only (the real one covers every normal behaviour).

It takes llama-server's command line and picks a behaviour from the model file's name:
  drip-*   streams 5 SSE events 200 ms apart (proves goinfer forwards without buffering)
  die-*    streams 2 events, then exits mid-stream (a child crash during generation)
  endless-* streams an event every 20 ms until the client goes; then writes the time it
           noticed to <model>.gone (proves goinfer aborts upstream when its client leaves)
  echo-*   answers with the JSON body it received (proves what goinfer forwards)
  slow-*   answers after 2 s (holds a request in flight)
  hang-*   never answers (upstream timeouts)
  stale-*  answers the first request on a connection, then closes the connection when the
           next one arrives, unanswered (a keep-alive timeout racing a reused connection)
  eofbody-* answers with a body that has no length: it ends when the connection closes
  interim-* sends a 103 Early Hints response before the real one
  chunkecho-* answers with the JSON body it received, chunked, all in one write, the last
           chunk included (a whole chunked answer that arrives in one read)
"""
import http.server
import json
import os
import sys
import time


def arg(name):
    return sys.argv[sys.argv.index(name) + 1]


MODEL = arg("-m")
KIND = os.path.basename(MODEL).split("-")[0]


def event(i):
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def stale(self):
        """True when this request must get no answer: the connection closes instead."""
        self.served = getattr(self, "served", 0) + 1
        if KIND == "stale" and self.served > 1:
            self.close_connection = True
            return True
        return False

    def do_GET(self):
        if self.stale():
            return
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if self.stale():
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if KIND == "hang":
            time.sleep(3600)
        if KIND == "interim":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        if KIND == "eofbody":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if KIND == "chunkecho":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
            self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
                             + b"0\r\n\r\n")
            return
        if KIND in ("echo", "slow", "stale", "interim"):
            if KIND == "slow":
                time.sleep(2)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            getattr(self, "stream_" + KIND)()
        except (BrokenPipeError, ConnectionResetError):
            now = time.time()
            with open(MODEL + ".gone.tmp", "w") as f:
                f.write(repr(now))
            os.replace(MODEL + ".gone.tmp", MODEL + ".gone")

    def send(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream_drip(self):
        for i in range(5):
            self.send(event(i))
            time.sleep(0.2)
        self.send(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def stream_die(self):
        for i in range(2):
            self.send(event(i))
        time.sleep(0.05)
        os._exit(3)

    def stream_endless(self):
        for i in range(100000):
            self.send(event(i))
            time.sleep(0.02)


http.server.ThreadingHTTPServer(("127.0.0.1", int(arg("--port"))), Handler).serve_forever()
