"""The HTTP edge against a hostile client: no key means no memory, bodies are bounded per
address and in all, a body that drips is cut, and the guards read the request as the HTTP
specification does (Host, absolute-form targets, one header limit)."""
import json
import os
import socket
import threading
import time
from pathlib import Path

from conftest import API_KEY, auth

MIB = 1 << 20


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def head(path, length, key=None, extra=""):
    h = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    h += f"Content-Length: {length}\r\n" + extra
    if key:
        h += f"Authorization: Bearer {key}\r\n"
    return (h + "\r\n").encode()


def read_answer(s, timeout=5):
    """Everything the server sends until it closes (or timeout)."""
    s.settimeout(timeout)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def test_no_key_no_body_memory(models_dir, start_goinfer):
    """Twenty keyless clients each pushing 16 MiB of a 64 MiB body: each gets its 401 before its
    body, no "100 Continue", and the server never holds their bytes (it took 1.26 GB).
    Under ASan, freed read buffers wait in its quarantine (256 MB): kept small here, as what
    is measured is what Goinfer holds."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    g = start_goinfer(models_dir, env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=1"})
    host, port = g.ports["goinfer"]
    before = rss_kb(g.proc.pid)
    socks = []
    for _ in range(20):
        s = socket.create_connection((host, port))
        s.sendall(head("/v1/chat/completions", 64 * MIB, extra="Expect: 100-continue\r\n"))
        socks.append(s)
    answers = []
    for s in socks:
        s.settimeout(5)
        answers.append(s.recv(4096))
    for a in answers:
        assert a.startswith(b"HTTP/1.1 401") and b"100 Continue" not in a, a
        assert b"Connection: close" in a
    chunk = b"x" * MIB
    pushed = 0
    for s in socks:  # the server reads and drops them while the connection lingers
        try:
            s.settimeout(5)
            for _ in range(16):
                s.sendall(chunk)
                pushed += len(chunk)
        except OSError:
            pass  # the linger ended: the server closed, which is fine too
    grown = rss_kb(g.proc.pid) - before
    for s in socks:
        s.close()
    assert grown < 32 * 1024, f"RSS grew by {grown} KiB after {pushed >> 20} MiB of keyless bodies"


def test_an_early_answer_reaches_a_client_still_sending(models_dir, start_goinfer):
    """The 401 goes out while the client is still writing its body; the connection lingers so
    the answer is not destroyed by a reset."""
    g = start_goinfer(models_dir)
    host, port = g.ports["goinfer"]
    with socket.create_connection((host, port)) as s:
        s.sendall(head("/v1/chat/completions", 8 * MIB) + b"x" * (4 * MIB))
        out = read_answer(s)
    assert out.startswith(b"HTTP/1.1 401") and b"missing API key" in out


def test_a_body_too_large_for_anyone_is_refused_and_the_answer_arrives(models_dir,
                                                                      start_goinfer):
    """413 from the head (Content-Length past body_bytes) while the client keeps sending: the
    connection lingers, so the 413 is read, not lost to a reset."""
    g = start_goinfer(models_dir)
    host, port = g.ports["goinfer"]
    with socket.create_connection((host, port)) as s:
        s.sendall(head("/v1/chat/completions", 100 * MIB, key=API_KEY))
        try:
            s.sendall(b"x" * (8 * MIB))
        except OSError:
            pass
        out = read_answer(s)
    assert out.startswith(b"HTTP/1.1 413") and b"request body too large" in out, out[:200]


def test_trailers_do_not_move_the_headers(models_dir, start_goinfer):
    """A chunked body's trailers used to be appended to the buffer the headers point into: a
    long one moved it, and the CORS answer echoed the Origin from freed memory."""
    g = start_goinfer(models_dir, extra="origins: [\"http://app.example\"]\n")
    host, port = g.ports["goinfer"]
    for _ in range(3):
        with socket.create_connection((host, port)) as s:
            body = b'{"model":"no-such-one"}'
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                      b"Origin: http://app.example\r\nAuthorization: Bearer " + API_KEY.encode() +
                      b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                      b"%x\r\n" % len(body) + body + b"\r\n0\r\nX-Pad: " + b"t" * 4000 +
                      b"\r\n\r\n")
            out = read_answer(s)
        assert out.startswith(b"HTTP/1.1 404"), out[:300]
        assert b"Access-Control-Allow-Origin: http://app.example\r\n" in out, out[:400]


def test_unknown_route_and_method_are_answered_before_the_body(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    host, port = g.ports["goinfer"]
    for path, status in (("/nope", b"404"), ("/health", b"405")):
        with socket.create_connection((host, port)) as s:
            s.sendall(head(path, 32 * MIB, key=API_KEY, extra="Expect: 100-continue\r\n"))
            s.settimeout(5)
            out = s.recv(4096)
        assert out.startswith(b"HTTP/1.1 " + status) and b"100 Continue" not in out, out


def test_an_authorized_expect_gets_100_continue(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    host, port = g.ports["goinfer"]
    body = json.dumps({"model": "no-such-model", "messages": []}).encode()
    with socket.create_connection((host, port)) as s:
        s.sendall(head("/v1/chat/completions", len(body), key=API_KEY,
                       extra="Expect: 100-continue\r\n"))
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        assert b"model 'no-such-model' not found" in s.recv(65536)


BODY_LIMITS = """limits:
  body_bytes: 1000000
  body_bytes_per_ip: 1500000
  body_bytes_in_flight: 2500000
"""


def test_body_bytes_are_capped_per_address(models_dir, start_goinfer):
    """One address may have 1.5 MB of bodies in flight: a second 1 MB body waits its turn
    (429), and is taken again once the first has ended."""
    g = start_goinfer(models_dir, extra=BODY_LIMITS)
    host, port = g.ports["goinfer"]
    first = socket.create_connection((host, port))
    first.sendall(head("/v1/chat/completions", 1000000, key=API_KEY) + b"{")
    time.sleep(0.2)
    with socket.create_connection((host, port)) as s:
        s.sendall(head("/v1/chat/completions", 1000000, key=API_KEY))
        out = read_answer(s)
    assert out.startswith(b"HTTP/1.1 429"), out
    assert b"too many request body bytes in flight from 127.0.0.1 (limit 1500000)" in out
    first.close()
    time.sleep(0.2)
    body = json.dumps({"model": "no-such-model", "pad": "x" * 900000}).encode()
    with socket.create_connection((host, port)) as s:
        s.sendall(head("/v1/chat/completions", len(body), key=API_KEY) + body)
        assert b" 404 " in s.recv(4096).split(b"\r\n")[0]
    g.wait_log(r"body bytes in flight \(limits.body_bytes_per_ip 1500000\)")


def test_body_bytes_are_capped_in_all(models_dir, start_goinfer):
    """Past body_bytes_in_flight across addresses the answer is 503 with Retry-After."""
    g = start_goinfer(models_dir, extra=BODY_LIMITS)
    _, port = g.ports["goinfer"]
    held = []
    for src in ("127.0.0.1", "127.0.0.3"):  # two addresses, 1 MB each
        s = socket.socket()
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(head("/v1/chat/completions", 1000000, key=API_KEY))
        held.append(s)
    time.sleep(0.2)
    s = socket.socket()
    s.bind(("127.0.0.4", 0))
    s.connect(("127.0.0.1", port))
    s.sendall(head("/v1/chat/completions", 1000000, key=API_KEY))
    out = read_answer(s)
    s.close()
    for h in held:
        h.close()
    assert out.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in out, out
    assert b"reading too many request bodies at once (limit 2500000 bytes)" in out


def test_a_chunked_body_is_counted_as_it_grows(models_dir, start_goinfer):
    g = start_goinfer(models_dir, extra=BODY_LIMITS)
    host, port = g.ports["goinfer"]
    held = socket.create_connection((host, port))
    held.sendall(head("/v1/chat/completions", 1000000, key=API_KEY))
    time.sleep(0.2)
    with socket.create_connection((host, port)) as s:
        s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                   f"Authorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
                   ).encode())
        chunk = b"%x\r\n" % 100000 + b"x" * 100000 + b"\r\n"
        try:
            for _ in range(10):
                s.sendall(chunk)
        except OSError:
            pass
        out = read_answer(s)
    held.close()
    assert out.startswith(b"HTTP/1.1 429"), out


def test_a_dripping_body_is_cut(models_dir, start_goinfer):
    """One byte every 0.7 s never trips a 1 s per-part timer; the body's overall deadline
    (request_timeout, then 64 KiB/s) does."""
    g = start_goinfer(models_dir, extra="limits:\n  request_timeout: 1\n")
    host, port = g.ports["goinfer"]
    with socket.create_connection((host, port)) as s:
        s.sendall(head("/v1/chat/completions", 100, key=API_KEY))
        t0 = time.monotonic()
        out = b""
        s.settimeout(0.7)
        while time.monotonic() - t0 < 6 and not out:
            try:
                s.sendall(b"x")
                out = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
        took = time.monotonic() - t0
    assert out.startswith(b"HTTP/1.1 408") and took < 3, (out, took)


def test_no_api_key_serves_loopback_names_only(models_dir, tmp_path, start_goinfer, client):
    """DNS rebinding: "127.evil.example" is a name anyone can point at 127.0.0.1."""
    cfg = tmp_path / "open.yml"
    cfg.write_text(f"models_dir: {models_dir}\nlisten:\n  \"127.0.0.1:0\": goinfer\n")
    g = start_goinfer(None, args=["-config", str(cfg), "-no-api-key"], config=False)
    for host in ("127.evil.example", "127.0.0.1.evil.example:80", "127.1.2.3.4"):
        r = client.post(g.url() + "/unload", headers={"Host": host})
        assert r.status_code == 403 and "only localhost" in r.json()["error"]["message"], host
    for host in ("127.0.0.1:4444", "127.1.2.3", "localhost", "[::1]:8080"):
        assert client.get(g.url() + "/v1/models", headers={"Host": host}).status_code == 200


def test_public_health_tells_nothing_of_the_models(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json={"model": "tiny-a", "max_tokens": 1, "messages": [
                        {"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    assert client.get(g.url() + "/health").json() == {"status": "ok"}
    full = client.get(g.url() + "/health", headers=auth()).json()
    assert full["running"][0]["model"] == "tiny-a"


def test_vary_origin_on_every_answer(models_dir, start_goinfer, client):
    """A shared cache must not give a browser an answer made without its Origin."""
    g = start_goinfer(models_dir)
    r = client.get(g.url() + "/v1/models", headers=auth())
    assert r.status_code == 200 and r.headers["vary"] == "Origin"


def test_one_limit_for_the_request_line_and_the_headers(models_dir, start_goinfer, client):
    """header_bytes bounds their sum: 20 KiB of target plus 20 KiB of headers is 431."""
    g = start_goinfer(models_dir)
    r = client.get(g.url() + "/health?" + "a" * 20000, headers={"X-Pad": "b" * 20000})
    assert r.status_code == 431
    assert client.get(g.url() + "/health?" + "a" * 20000).status_code == 200


def test_absolute_form_targets(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    host, port = g.ports["goinfer"]
    for target in (f"http://{host}:{port}/v1/models", f"HTTP://localhost:{port}/v1/models?x=1"):
        with socket.create_connection((host, port)) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: ignored\r\nAuthorization: Bearer "
                      f"{API_KEY}\r\nConnection: close\r\n\r\n".encode())
            out = read_answer(s)
        assert out.startswith(b"HTTP/1.1 200") and b'"tiny-a"' in out, out[:200]


def test_a_large_body_with_two_models_is_refused_like_a_small_one(models_dir, start_goinfer,
                                                                  client):
    """Past 256 KiB the model is scanned for, not parsed: a second "model" key (which
    llama-server would read) is refused as jansson refuses it in a small body."""
    g = start_goinfer(models_dir)
    pad = "x" * (300 * 1024)
    for size_pad in ("", pad):
        body = ('{"model":"tiny-a","messages":[{"role":"user","content":"%s"}],'
                '"model":"tiny-b"}' % size_pad)
        r = client.post(g.url() + "/v1/chat/completions", headers=auth(), content=body)
        assert r.status_code == 400 and "duplicate" in r.json()["error"]["message"], len(body)


def test_others_are_served_while_keyless_bodies_pour_in(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    host, port = g.ports["goinfer"]
    stop = threading.Event()

    def pour():
        while not stop.is_set():
            try:
                with socket.create_connection((host, port)) as s:
                    s.sendall(head("/v1/chat/completions", 64 * MIB) + b"x" * MIB)
                    read_answer(s, timeout=1)
            except OSError:
                pass

    threads = [threading.Thread(target=pour) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):
            assert client.get(g.url() + "/v1/models", headers=auth()).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
