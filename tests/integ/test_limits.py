"""limits: in goinfer.yml: each breach gets its status and a clear message, and never
affects other clients."""
import re
import socket
import time
from pathlib import Path

import httpx

from conftest import API_KEY, auth

LIMITS = """limits:
  header_bytes: 4096
  body_bytes: 10000
  request_timeout: 1
  max_connections_per_ip: 3
  upstream_timeout: 1
"""


def test_size_limits(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, extra=LIMITS)
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(), content=b"x" * 20000)
    assert r.status_code == 413 and "limit 10000 bytes" in r.json()["error"]["message"]
    r = client.get(g.url() + "/health", headers={"X-Pad": "a" * 5000})
    assert r.status_code == 431
    assert client.get(g.url() + "/health").status_code == 200


def test_slow_client_gets_408_and_others_are_served(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, extra=LIMITS)
    host, port = g.ports["goinfer"]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        t0 = time.monotonic()
        assert client.get(g.url() + "/health").status_code == 200  # meanwhile
        out = s.recv(4096)
        assert out.startswith(b"HTTP/1.1 408") and 0.8 < time.monotonic() - t0 < 3


def test_connections_per_address(models_dir, start_goinfer):
    g = start_goinfer(models_dir, extra=LIMITS)
    host, port = g.ports["goinfer"]
    held = [socket.create_connection((host, port)) for _ in range(3)]
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            out = b""
            while chunk := s.recv(4096):
                out += chunk
        assert out.startswith(b"HTTP/1.1 429") and b"too many connections from 127.0.0.1" in out
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert httpx.get(g.url() + "/health").status_code == 200


def test_upstream_silence_is_a_504(tmp_path, start_goinfer, client):
    fake = Path(__file__).parent / "fakes" / "fake_llama_server.py"
    cfg = tmp_path / "hang.yml"
    cfg.write_text(f"api_key: {API_KEY}\nlisten:\n  \"127.0.0.1:0\": goinfer\n" + LIMITS +
                   f"models:\n  hang:\n    cmd: {fake} -m /tmp/hang-x.gguf --port ${{PORT}}\n")
    g = start_goinfer(None, args=["-config", str(cfg)], config=False)
    t0 = time.monotonic()
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(), json={"model": "hang"})
    assert r.status_code == 504 and "sent nothing for 1 s" in r.json()["error"]["message"]
    assert time.monotonic() - t0 < 10  # libcurl checks the rate once a second or so


def test_the_file_limit_is_raised_and_a_low_one_is_named(models_dir, start_goinfer):
    """Each connection is a descriptor: the soft limit (often 1,024) goes up to the hard one."""
    g = start_goinfer(models_dir, prefix=("prlimit", "--nofile=256:2048", "--"))
    limits = Path(f"/proc/{g.proc.pid}/limits").read_text()
    assert re.search(r"Max open files\s+2048\s+2048", limits), limits
    low = start_goinfer(models_dir, prefix=("prlimit", "--nofile=256:512", "--"))
    low.wait_log(r"limits.max_connections is 4096, but this process may open only 512 files")
