#!/usr/bin/python3
"""What a virtual key costs per request, side by side in one run: the same chat completion
through the same Goinfer to the same FAKE upstream (an nginx that answers a fixed completion with
its usage at once), with a static key, then with a virtual key (budget check, reservation, and
settlement queued for the ledger on every request). Prints requests/s (wrk, three alternated runs each) and latency
p50/p99 (one keep-alive connection, the two keys interleaved request by request), and the
overhead. Goal: under 0.1 ms added at p50.

Usage: bench/vkey_bench.py [requests per key, default 4000] [wrk seconds, default 5]
(run `make build` first; GOINFER_BUILD=dir for another build folder). Needs nginx and wrk.
"""
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / os.environ.get("GOINFER_BUILD", "build")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
SECS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
STATIC = "bench-static-key-0123456789"
BODY = json.dumps({"model": "fake_chat", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "Hello"}]})
ANSWER = ('{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":'
          '"assistant","content":"Hi"},"finish_reason":"stop"}],'
          '"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}')


def fake_upstream(t, port):
    """The FAKE upstream: nginx answering every request with ANSWER."""
    d = t / "fake_up"
    d.mkdir()
    (d / "nginx.conf").write_text(f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{ listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{ANSWER}'; }} }}
}}
""")
    return subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)])


def start_goinfer(t, up_port):
    (t / "goinfer.yml").write_text(f"""api_key: {STATIC}
listen:
  "127.0.0.1:0": goinfer
models:
  fake_chat:
    cmd: sleep 100000
    proxy: http://127.0.0.1:{up_port}
    checkEndpoint: none
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env["GI_STATE_DIR"] = str(t / "state")
    err = open(t / "goinfer.err", "w")
    p = subprocess.Popen([str(BUILD / "goinfer"), "-config", str(t / "goinfer.yml")],
                         stderr=err, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", (t / "goinfer.err").read_text())
        if m and "goinfer ready" in (t / "goinfer.err").read_text():
            return p, int(m.group(1))
        time.sleep(0.05)
    raise SystemExit("goinfer did not start:\n" + (t / "goinfer.err").read_text())


def call(conn, key, path="/v1/chat/completions", body=BODY, method="POST"):
    t0 = time.perf_counter_ns()
    conn.request(method, path, body, {"Authorization": f"Bearer {key}",
                                      "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    dt = time.perf_counter_ns() - t0
    if r.status not in (200, 201):
        raise SystemExit(f"{path}: HTTP {r.status}: {data[:300]!r}")
    return dt, data


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] / 1e6


def wrk_rps(port, key, t):
    (t / "chat.lua").write_text(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = '{BODY}'
""")
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{SECS}s", "-s", str(t / "chat.lua"),
                          f"http://127.0.0.1:{port}/v1/chat/completions"],
                         capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m is None or non2xx:
        raise SystemExit("wrk: " + out)
    return float(m.group(1))


def main():
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"vkey_bench: {tool} is needed")
    t = Path(tempfile.mkdtemp(prefix="vkey-bench-"))
    up_port = 20000 + os.getpid() % 20000
    up = fake_upstream(t, up_port)
    g = None
    try:
        time.sleep(0.3)
        g, port = start_goinfer(t, up_port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        _, made = call(conn, STATIC, "/api/keys", json.dumps({
            "name": "bench", "budget_usd": 1e9, "budget_usd_period": "monthly",
            "budget_tokens": 1e12, "budget_tokens_period": "daily", "rpm": 10**9, "tpm": 10**12,
            "price_prompt": 1e-7, "price_completion": 2e-7}))
        virtual = json.loads(made)["secret"]
        for _ in range(300):  # warm: the model "started", connections open
            call(conn, STATIC)
            call(conn, virtual)
        lat = {STATIC: [], virtual: []}
        for _ in range(N):
            for k in (STATIC, virtual):
                lat[k].append(call(conn, k)[0])
        runs = {STATIC: [], virtual: []}
        for _ in range(3):  # alternated, so a neighbour's load falls on both alike
            for k in (STATIC, virtual):
                runs[k].append(wrk_rps(port, k, t))
        rps = {k: statistics.median(v) for k, v in runs.items()}
        _, state = call(conn, STATIC, "/api/keys/bench", None, "GET")
        settled = json.loads(state)["ledger"]
    finally:
        if g is not None:
            g.terminate()
            g.wait()
        up.terminate()
        up.wait()
        shutil.rmtree(t, ignore_errors=True)
    s, v = lat[STATIC], lat[virtual]
    print(f"{'through Goinfer, FAKE upstream':38s} {'req/s (wrk 16c, median of 3)':>30s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(f"{'static key':38s} {rps[STATIC]:30.0f} {pct(s, .5):8.3f} {pct(s, .99):8.3f}")
    print(f"{'virtual key (budget, reserve, settle)':38s} {rps[virtual]:30.0f} {pct(v, .5):8.3f} "
          f"{pct(v, .99):8.3f}")
    print(f"overhead: p50 {pct(v, .5) - pct(s, .5):+.3f} ms, p99 {pct(v, .99) - pct(s, .99):+.3f} ms, "
          f"req/s {rps[virtual] / rps[STATIC]:.2f}x; median of per-pair differences "
          f"{statistics.median(b - a for a, b in zip(s, v)) / 1e6:+.3f} ms "
          f"({N} requests per key; the ledger settled {settled['requests']} requests)")


if __name__ == "__main__":
    main()
