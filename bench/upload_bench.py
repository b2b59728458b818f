#!/usr/bin/python3
"""Upload cost, side by side in one run, on the same disk:
  1. MB/s of a model file uploaded through Goinfer (POST /api/uploads, then PATCH chunks, the
     sha256 checked) vs `cp` of the same file (goal: >= 0.9x);
  2. the p99 time to first token of streamed chats to a tiny model, while that upload runs vs
     without it (goal: <= 1.5x: writes and hashing stay off the event loop).

Chunks of 8 MiB (see CHUNK).

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
# 8 MiB chunks: measured 538 MB/s against 349 for 64 MiB ones (limits.body_bytes' default),
# as glibc serves bodies that size from memory it keeps, where each 64 MiB body is a fresh
# mmap whose page faults the event loop pays
CHUNK = 8 << 20
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


def time_cp(src, dst, durable=False):
    drop_caches()
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    if durable:
        os.sync()
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


def upload(port, src, name, sha, conns=2, durable=False):
    """Returns the seconds the whole upload took (create to the checked, renamed file). Chunks
    go on `conns` connections in turn: the next one is sent while the last is written (Goinfer
    holds it until then), as a browser or a script with two connections would."""
    drop_caches()
    t0 = time.perf_counter()
    up = call(port, "POST", "/api/uploads", json.dumps({"name": name, "size": SIZE, "sha256": sha}),
              {"Content-Type": "application/json"})
    chunk = CHUNK
    offsets = list(range(0, SIZE, chunk))
    sent = [threading.Event() for _ in offsets]
    done = [threading.Event() for _ in offsets]
    answers, errors = {}, []
    fd = os.open(src, os.O_RDONLY)

    def worker(first):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for k in range(first, len(offsets), conns):
            data = os.pread(fd, chunk, offsets[k])
            while not errors:
                if k > 0:
                    sent[k - 1].wait()
                c.request("PATCH", f"/api/uploads/{up['id']}", data,
                          {"Upload-Offset": str(offsets[k])})
                sent[k].set()
                r = c.getresponse()
                body = json.loads(r.read())
                if r.status == 200:
                    answers[k] = body
                    done[k].set()
                    break
                if r.status == 429:  # too many body bytes from us at once: again soon
                    time.sleep(0.05)
                elif r.status == 409 and k > 0:
                    done[k - 1].wait()  # came before its predecessor was taken: again
                else:
                    errors.append(f"PATCH at {offsets[k]}: HTTP {r.status}: {body}")
                    for e in sent + done:  # nobody waits for a chunk that will not come
                        e.set()
                    break
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)
    if durable:
        os.sync()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(errors[0])
    last = answers[len(offsets) - 1]
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
            mb = SIZE / 1e6
            # into the page cache, then on the disk (each timed up to its sync)
            for durable in (False, True):
                cp_s = [time_cp(src, models / "cp-copy.gguf", durable) for _ in range(2)]
                cp_rate = mb / min(cp_s)
                for conns in (1, 2):
                    up_s = []
                    for i in range(2):
                        up_s.append(upload(port, src, f"up-{i}.gguf", sha, conns, durable))
                        (models / f"up-{i}.gguf").unlink()
                    up_rate = mb / min(up_s)
                    print(f"upload {SIZE >> 20} MiB{' + sync' if durable else ''}, {conns} "
                          f"connection(s): cp {cp_rate:.0f} MB/s, goinfer {up_rate:.0f} MB/s, "
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
