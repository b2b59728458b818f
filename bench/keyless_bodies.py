#!/usr/bin/python3
"""What keyless clients cost a server: N connections each announce a 64 MiB body without a key
and push M MiB of it; prints the server's RSS before and after, for each goinfer given.

    bench/keyless_bodies.py [N] [M] build/goinfer [/path/to/other/goinfer ...]

Each binary runs in its own process with the same config; no model is started (the
requests never get past the key check), so GI_LLAMA_EXE is /bin/true.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1 << 20


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(exe, n, m):
    with tempfile.TemporaryDirectory() as d:
        port_file = Path(d) / "log"
        cfg = Path(d) / "g.yml"
        cfg.write_text(f"models_dir: {d}\napi_key: bench-key-0123456789abcdef\n"
                       "listen:\n  \"127.0.0.1:0\": goinfer\n")
        log = open(port_file, "w")
        p = subprocess.Popen([exe, "-config", str(cfg)], stderr=log, stdout=subprocess.DEVNULL,
                             env={**os.environ, "GI_LLAMA_EXE": "/bin/true"})
        try:
            port = None
            for _ in range(100):
                time.sleep(0.05)
                for line in port_file.read_text().splitlines():
                    if "listening on 127.0.0.1:" in line:
                        port = int(line.split("127.0.0.1:")[1].split()[0])
                if port:
                    break
            before = rss_mb(p.pid)
            socks, chunk, t0 = [], b"x" * MIB, time.monotonic()
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Length: %d\r\n\r\n" % (64 * MIB))
                s.settimeout(3)
                socks.append(s)
            for s in socks:
                try:
                    for _ in range(m):
                        s.sendall(chunk)
                except OSError:
                    pass
            after = rss_mb(p.pid)
            took = time.monotonic() - t0
            for s in socks:
                s.close()
            return before, after, took
        finally:
            p.terminate()
            p.wait(10)


def main():
    n, m = int(sys.argv[1]), int(sys.argv[2])
    print(f"{n} keyless connections x {m} MiB of a 64 MiB body each")
    for exe in sys.argv[3:]:
        before, after, took = run(exe, n, m)
        print(f"{exe}: RSS {before:.1f} MB -> {after:.1f} MB ({took:.1f} s)")


if __name__ == "__main__":
    main()
