#!/usr/bin/python3
"""Added delay per SSE event, side by side in one run: the same event streams read directly
from an upstream and through Goinfer, at 1, 100 and 1,000 concurrent streams, with Goinfer's
RSS at the peak. The upstream is a FAKE (asyncio, in this process): it stamps each event with
the time it was sent, so the reader measures each event's delay; the difference between the
two paths is what Goinfer adds.

Usage: bench/sse_bench.py [events per stream, default 20]   (run `make build` first)
"""
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fake_sse import write_stamped_events

ROOT = Path(__file__).resolve().parents[1]
EVENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
GAP = 0.05  # seconds between events


async def upstream(reader, writer):
    """A fake llama-server: any request gets EVENTS stamped events, GAP apart."""
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    if m:
        await reader.readexactly(int(m.group(1)))
    await write_stamped_events(writer, EVENTS, GAP)
    writer.close()


async def stream(port, delays):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"model":"sse","stream":true}'
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                 b"application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))
    await writer.drain()
    async for line in reader:
        if line.startswith(b"data: "):
            delays.append((time.perf_counter_ns() - int(line[6:])) / 1e6)
    writer.close()


async def measure(port, n):
    delays = []
    await asyncio.gather(*(stream(port, delays) for _ in range(n)))
    delays.sort()
    if len(delays) < n * EVENTS:
        raise SystemExit(f"only {len(delays)} of {n * EVENTS} events arrived through port {port}")
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main():
    server = await asyncio.start_server(upstream, "127.0.0.1", 0, backlog=4096)
    up = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as t:
        cfg = Path(t) / "goinfer.yml"
        cfg.write_text(f"listen:\n  \"127.0.0.1:0\": goinfer\nlimits:\n"
                       f"  max_connections_per_ip: 5000\nmodels:\n  sse:\n    cmd: sleep 100000\n"
                       f"    proxy: http://127.0.0.1:{up}\n    checkEndpoint: none\n")
        log = Path(t) / "goinfer.log"
        g = subprocess.Popen([str(ROOT / "build" / "goinfer"), "-config", str(cfg), "-no-api-key"],
                             stderr=log.open("w"))
        try:
            port = None
            for _ in range(100):
                m = re.search(r"listening on 127.0.0.1:(\d+)", log.read_text())
                if m:
                    port = int(m.group(1))
                    break
                await asyncio.sleep(0.05)
            if port is None:
                raise SystemExit("goinfer did not start:\n" + log.read_text()[-2000:])
            print(f"SSE events, {EVENTS} per stream, {GAP * 1000:.0f} ms apart; delay in ms "
                  "(direct / through goinfer / added)")
            print(f"{'streams':>8} {'p50':>22} {'p99':>22} {'goinfer RSS':>12}")
            for n in (1, 100, 1000):
                d50, d99 = await measure(up, n)
                peak = [0.0]

                async def watch():
                    while True:
                        peak[0] = max(peak[0], rss_mb(g.pid))
                        await asyncio.sleep(0.05)

                w = asyncio.create_task(watch())
                g50, g99 = await measure(port, n)
                w.cancel()
                print(f"{n:>8} {d50:6.2f} /{g50:6.2f} /{g50 - d50:+6.2f} "
                      f"{d99:6.2f} /{g99:6.2f} /{g99 - d99:+6.2f} {peak[0]:9.1f} MB")
        finally:
            g.terminate()
            g.wait(30)
    server.close()


if __name__ == "__main__":
    os.environ.pop("http_proxy", None)
    asyncio.run(main())
