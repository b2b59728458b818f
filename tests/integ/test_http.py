"""The HTTP edge: HEAD, Expect: 100-continue, pipelining, Connection: close delivering the whole
response, garbage and oversized input answered with clear errors."""
import socket
import time
from pathlib import Path

import httpx

from conftest import API_KEY, auth


def raw(g, data, service="goinfer", read_until_close=True, timeout=10):
    host, port = g.ports[service]
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                return out
            out += chunk


def test_head_has_no_body_and_keeps_the_connection_usable(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    out = raw(g, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, rest = out.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 200"), out  # no body between the two responses
    r = httpx.head(g.url() + f"/upstream/tiny-a/health", headers=auth(), timeout=10)
    assert r.status_code == 200 and r.content == b""


def test_expect_100_continue_is_answered(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    body = b'{"model":"tiny-a","content":"' + b"a" * 2_000_000 + b'"}'
    host, port = g.ports["goinfer"]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
                  b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        t0 = time.monotonic()
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        assert time.monotonic() - t0 < 0.9  # curl would give up waiting after 1 s


def test_connection_close_delivers_the_whole_response(tmp_path, start_goinfer):
    fake = Path(__file__).parent / "fakes" / "fake_llama_server.py"
    cfg = tmp_path / "echo.yml"
    cfg.write_text(f"api_key: {API_KEY}\nlisten:\n  \"127.0.0.1:0\": goinfer\nmodels:\n"
                   f"  echo:\n    cmd: {fake} -m /tmp/echo-x.gguf --port ${{PORT}}\n")
    g = start_goinfer(None, args=["-config", str(cfg)], config=False)
    body = ('{"model":"echo","pad":"' + "x" * 6_000_000 + '"}').encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    host, port = g.ports["goinfer"]
    with socket.create_connection((host, port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(req)
        time.sleep(1)  # goinfer queues the response and decides to close meanwhile
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, payload = out.split(b"\r\n\r\n", 1)
    length = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
    assert length and len(payload) == int(length[0].split(b":")[1]) == len(body)


def test_pipelined_requests_beyond_the_buffer_are_all_answered(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    one = (b"POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
           b"\r\nContent-Type: application/json\r\nContent-Length: ")
    body = b'{"model":"tiny-a","content":"' + b"x" * 30_000 + b'"}'
    n = 6  # about 180 KB pipelined, three times the 64 KB buffer
    data = (one + str(len(body)).encode() + b"\r\n\r\n" + body) * n
    data += b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(g, data, timeout=60)
    assert out.count(b"HTTP/1.1 200 OK") == n + 1


def test_garbage_and_oversized_input(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    out = raw(g, b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in out
    out = raw(g, b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431") and b"too large" in out
    out = raw(g, b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 10_000 + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431") and b"too many request headers" in out
    out = raw(g, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413") and b"too large" in out
    assert client.get(g.url() + "/health").status_code == 200  # and everyone else is served
