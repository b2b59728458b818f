#!/usr/bin/python3
"""FAKE Hugging Face hub, plain HTTP on 127.0.0.1, for Goinfer's download tests.

  fake_hub.py ROOT   serves the repositories under ROOT/<org>/<repo>/ and prints
                     "FAKE hub listening on <port>"

  GET /api/models/<org>/<repo>/tree/main   the hub's tree: [{"type","path","size","lfs":{"oid",
                                           "size"}}], oids overridden by <repo>/.oids.json
  GET /<org>/<repo>/resolve/main/<path>    302 to http://<ROOT/.redirect or localhost>:<port>
                                           /cdn/<org>/<repo>/<path>, as the hub sends to its CDN
  GET /cdn/<org>/<repo>/<path>             the file, with Range; a name listed in ROOT/.cut is
                                           cut at half its length the first time (once each)
  GET /files/<name>                        ROOT/files/<name>; /slow/<name> the same at 1 MB/s

Every request is appended to ROOT/requests.log as "METHOD PATH RANGE".
"""
import hashlib
import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(sys.argv[1])
LOCK = threading.Lock()


def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def record(self):
        with LOCK, open(ROOT / "requests.log", "a") as f:
            f.write(f"{self.command} {self.path} {self.headers.get('Range', '-')}\n")

    def answer(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.record()
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and parts[4:6] == ["tree", "main"]:
            return self.tree(ROOT / parts[2] / parts[3])
        if len(parts) > 4 and parts[2:4] == ["resolve", "main"]:
            host = (ROOT / ".redirect").read_text().strip() if (ROOT / ".redirect").exists() \
                else "localhost"
            loc = f"http://{host}:{self.server.server_port}/cdn/{'/'.join(parts[:2])}/" \
                  + "/".join(parts[4:])
            return self.answer(302, b"", "text/plain", [("Location", loc)])
        if parts[0] == "cdn":
            return self.file(ROOT / "/".join(parts[1:]))
        if parts[0] in ("files", "slow"):
            return self.file(ROOT / "files" / "/".join(parts[1:]), slow=parts[0] == "slow")
        self.answer(404, b'{"error":"not found"}')

    def tree(self, repo):
        if not repo.is_dir():
            return self.answer(404, b'{"error":"Repository not found"}')
        oids = json.loads((repo / ".oids.json").read_text()) if (repo / ".oids.json").exists() \
            else {}
        out = [{"type": "directory", "path": "docs", "oid": "0" * 40, "size": 0}]
        for p in sorted(repo.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                rel = str(p.relative_to(repo))
                n = p.stat().st_size
                out.append({"type": "file", "path": rel, "size": n,
                            "oid": "1" * 40, "lfs": {"oid": oids.get(rel, sha(p)), "size": n,
                                                     "pointerSize": 134}})
        self.answer(200, json.dumps(out).encode())

    def file(self, p, slow=False):
        if not p.is_file():
            return self.answer(404, b"not found", "text/plain")
        data = p.read_bytes()
        start, status, headers = 0, 200, []
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return self.answer(416, b"", "text/plain",
                                   [("Content-Range", f"bytes */{len(data)}")])
            status = 206
            headers = [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")]
        body = data[start:]
        cut = ROOT / ".cut"
        names = cut.read_text().split() if cut.exists() else []
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if p.name in names and start == 0:  # once: half, then the connection drops
            with LOCK:
                names.remove(p.name)
                cut.write_text("\n".join(names))
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if slow:
            for i in range(0, len(body), 1 << 16):
                self.wfile.write(body[i:i + (1 << 16)])
                self.wfile.flush()
                time.sleep(0.065)
            return
        self.wfile.write(body)


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    srv.daemon_threads = True
    print(f"FAKE hub listening on {srv.server_port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
