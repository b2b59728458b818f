#!/usr/bin/python3
"""Added delay per SSE event, side by side in one run: the same event streams read directly
from an upstream, through nginx (Debian's, one worker, buffering off, keep-alive upstream) and
through Goinfer, at 1, 100 and 1,000 concurrent streams, with Goinfer's RSS at the peak. Both ends are build/sse_load (bench/sse_load.c, C on libuv): a FAKE upstream
thread that stamps each event with CLOCK_MONOTONIC as it writes it (each stream starting at a
random point of the gap), and a reader thread that takes each event's delay. The difference
between a proxy's path and the direct one is what that proxy adds. (In Python, the measuring
process's own p99 was 16-23 ms at 1,000 streams, direct: it hid what Goinfer adds.) On a
2-core machine the two sse_load threads and the proxy share the cores: nginx's column shows
what that costs any proxy.

Usage: bench/sse_bench.py [events per stream, default 20]   (run `make build` first)
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from nginx_conf import nginx_conf

ROOT = Path(__file__).resolve().parents[1]
EVENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
GAP_MS = 50


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    """build/sse_load: its upstream's port, and one round of n streams to a port at a time."""

    def __init__(self):
        exe = ROOT / "build" / "sse_load"
        if not exe.exists():
            raise SystemExit(f"{exe} is missing: run `make build` first")
        self.p = subprocess.Popen([str(exe), str(EVENTS), str(GAP_MS)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.port = int(self.p.stdout.readline())

    def round(self, n, port, path):
        self.p.stdin.write(f"{n} {port}\n")
        self.p.stdin.flush()
        p50, p99, count = self.p.stdout.readline().split()
        if int(count) != n * EVENTS:
            raise SystemExit(f"only {count} of {n * EVENTS} events arrived {path}")
        return float(p50), float(p99)

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def start_goinfer(tmp, upstream_port):
    cfg = tmp / "goinfer.yml"
    cfg.write_text(f"listen:\n  \"127.0.0.1:0\": goinfer\nlimits:\n"
                   f"  max_connections_per_ip: 5000\nmodels:\n  sse:\n    cmd: sleep 100000\n"
                   f"    proxy: http://127.0.0.1:{upstream_port}\n    checkEndpoint: none\n")
    log = tmp / "goinfer.log"
    g = subprocess.Popen([str(ROOT / "build" / "goinfer"), "-config", str(cfg),
                          "-no-api-key"], stderr=log.open("w"))
    for _ in range(100):
        m = re.search(r"listening on 127.0.0.1:(\d+)", log.read_text())
        if m:
            return g, int(m.group(1))
        time.sleep(0.05)
    g.terminate()
    raise SystemExit("goinfer did not start:\n" + log.read_text()[-2000:])


def start_nginx(tmp, upstream_port):
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, f"""\
  upstream sse {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://sse; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_buffering off; }} }}"""))
    n = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return n, port
        except OSError:
            time.sleep(0.05)
    n.terminate()
    raise SystemExit("nginx did not start: " + (tmp / "nginx.err").read_text()[-1000:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_during(pid, fn):
    """fn(), and the highest RSS pid had meanwhile (sampled every 50 ms)."""
    peak, done = [0.0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            done.wait(0.05)

    w = threading.Thread(target=watch)
    w.start()
    try:
        out = fn()
    finally:
        done.set()
        w.join()
    return out, peak[0]


def main():
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is missing: install the Debian package nginx (make setup does)")
    load = Load()
    with tempfile.TemporaryDirectory() as t:
        g, port = start_goinfer(Path(t), load.port)
        ngx, ngx_port = start_nginx(Path(t), load.port)
        try:
            print(f"SSE events, {EVENTS} per stream, {GAP_MS} ms apart, delay in ms: direct, "
                  "and what nginx and Goinfer add to it")
            print(f"{'streams':>8} {'p50 direct/+nginx/+goinfer':>28} "
                  f"{'p99 direct/+nginx/+goinfer':>28} {'goinfer RSS':>12}")
            for n in (1, 100, 1000):
                d50, d99 = load.round(n, load.port, "directly")
                n50, n99 = load.round(n, ngx_port, "through nginx")
                (g50, g99), peak = peak_rss_during(
                    g.pid, lambda: load.round(n, port, "through Goinfer"))
                print(f"{n:>8} {d50:8.2f} /{n50 - d50:+7.2f} /{g50 - d50:+7.2f} "
                      f"{d99:8.2f} /{n99 - d99:+7.2f} /{g99 - d99:+7.2f} {peak:9.1f} MB")
        finally:
            g.terminate()
            ngx.terminate()
            g.wait(30)
            ngx.wait(30)
            load.close()


if __name__ == "__main__":
    os.environ.pop("http_proxy", None)
    main()
