#!/usr/bin/python3
"""Upload cost, side by side in one run, on the same disk:
  1. MB/s of a model file uploaded through Goinfer (POST /api/uploads, then PATCH chunks of
     limits.body_bytes, the sha256 checked) vs `cp` of the same file (goal: >= 0.9x);
  2. the p99 time to first token of streamed chats to a tiny model, while that upload runs vs
     without it (goal: <= 1.5x: writes and hashing stay off the event loop).

Usage: bench/upload_bench.py [size_mb] [chats]   (default 2048 MB, 200 chats; `make build`
first; GOINFER_BUILD picks the build folder, GI_LLAMA_EXE the llama-server)
"""
import hashlib
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / os.environ.get("GOINFER_BUILD", "build")
CACHE = Path(os.environ.get("GOINFER_CACHE", Path.home() / ".cache" / "goinfer"))
LLAMA = os.environ.get("GI_LLAMA_EXE") or str(CACHE / "llama-current" / "bin" / "llama-server")
SIZE = int(sys.argv[1]) << 20 if len(sys.argv) > 1 else 2048 << 20
CHATS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
CHUNK = 64 << 20  # limits.body_bytes' default
CHAT = {"model": "tiny", "stream": True, "max_tokens": 2,
        "messages": [{"role": "user", "content": "hi"}]}


def make_source(path):
    """A tiny model's header, then random bytes up to SIZE (a real file, not a sparse one);
    returns its sha256."""
    subprocess.run([str(BUILD / "mkmodel"), "-n", "big", "-o", str(path)], check=True)
    h = hashlib.sha256(path.read_bytes())
    with open(path, "ab") as f:
        left = SIZE - path.stat().st_size
        block = os.urandom(8 << 20)
        while left > 0:
            b = block[:min(left, len(block))]
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def drop_caches():
    """Both copies start from the same state: the source in the page cache, as after a write."""
    os.sync()


def time_cp(src, dst):
    drop_caches()
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    dt = time.perf_counter() - t0
    dst.unlink()
    return dt


def call(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request(method, path, body, headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)


def upload(port, src, name, sha):
    """Returns the seconds the whole upload took (create to the checked, renamed file)."""
    drop_caches()
    t0 = time.perf_counter()
    up = call(port, "POST", "/api/uploads", json.dumps({"name": name, "size": SIZE, "sha256": sha}),
              {"Content-Type": "application/json"})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    off, last = 0, None
    with open(src, "rb") as f:
        while off < SIZE:
            data = f.read(CHUNK)
            c.request("PATCH", f"/api/uploads/{up['id']}", data, {"Upload-Offset": str(off)})
            r = c.getresponse()
            last = json.loads(r.read())
            if r.status != 200:
                raise SystemExit(f"PATCH at {off}: HTTP {r.status}: {last}")
            off = last["offset"]
    c.close()
    dt = time.perf_counter() - t0
    if last.get("sha256") != sha:
        raise SystemExit(f"sha256 {last.get('sha256')} != {sha}")
    return dt


def ttft(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", json.dumps(CHAT),
              {"Content-Type": "application/json", "Connection": "close"})
    r = c.getresponse()
    first = None
    while True:
        line = r.fp.readline()
        if not line:
            break
        if first is None and line.startswith(b"data: ") and b"content" in line:
            first = time.perf_counter() - t0
    c.close()
    if r.status != 200 or first is None:
        raise SystemExit(f"chat: HTTP {r.status}")
    return first


def p99(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * 0.99))]


def chats(port, n, stop=None):
    out = []
    while len(out) < n or (stop is not None and not stop.is_set()):
        out.append(ttft(port))
        if stop is not None and stop.is_set() and len(out) >= n:
            break
    return out


def start_goinfer(models, tmp):
    log = tmp / "goinfer.log"
    cfg = tmp / "goinfer.yml"
    cfg.write_text(f"models_dir: {models}\nlisten:\n  \"127.0.0.1:0\": goinfer\n"
                   "llama:\n  args:\n    common: -c 512 -np 2 --no-warmup\n")
    p = subprocess.Popen([str(BUILD / "goinfer"), "-config", str(cfg), "-no-api-key"],
                         stderr=log.open("w"), env=dict(os.environ, GI_LLAMA_EXE=LLAMA))
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(r"listening on 127.0.0.1:(\d+)", log.read_text())
        if m and "goinfer ready" in log.read_text():
            return p, int(m.group(1))
        if p.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.05)
    raise SystemExit("goinfer did not start:\n" + log.read_text())


def main():
    base = Path(os.environ.get("BENCH_DIR", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(dir=base) as t:
        tmp = Path(t)
        models = tmp / "models"
        models.mkdir()
        subprocess.run([str(BUILD / "mkmodel"), "-n", "tiny", "-o", str(models / "tiny.gguf")],
                       check=True)
        src = tmp / "source.gguf"
        sha = make_source(src)
        p, port = start_goinfer(models, tmp)
        try:
            cp_s = [time_cp(src, models / "cp-copy.gguf") for _ in range(2)]
            up_s = []
            for i in range(2):
                up_s.append(upload(port, src, f"up-{i}.gguf", sha))
                (models / f"up-{i}.gguf").unlink()
            mb = SIZE / 1e6
            cp_rate, up_rate = mb / min(cp_s), mb / min(up_s)
            print(f"upload {SIZE >> 20} MiB: cp {cp_rate:.0f} MB/s, goinfer {up_rate:.0f} MB/s, "
                  f"ratio {up_rate / cp_rate:.2f}x (goal >= 0.9x)")

            chats(port, 5)  # the model loads, not counted
            quiet = chats(port, CHATS)
            stop = threading.Event()
            busy = []

            def run():
                while not stop.is_set():
                    busy.append(upload(port, src, "during.gguf", sha))
                    (models / "during.gguf").unlink()

            th = threading.Thread(target=run)
            th.start()
            time.sleep(0.2)
            loaded = chats(port, CHATS)
            stop.set()
            th.join()
            q, lo = p99(quiet), p99(loaded)
            print(f"time to first token, {CHATS} chats: p99 {q * 1000:.1f} ms quiet, "
                  f"{lo * 1000:.1f} ms during uploads ({len(busy)} done), ratio {lo / q:.2f}x "
                  f"(goal <= 1.5x); medians {statistics.median(quiet) * 1000:.1f} / "
                  f"{statistics.median(loaded) * 1000:.1f} ms")
        finally:
            p.terminate()
            p.wait(30)


if __name__ == "__main__":
    main()
