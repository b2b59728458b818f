"""What a hostile or broken GPU machine (or server) can do to the other end of a tunnel, and
what bounds it: the real goinfer on 127.0.0.1 and, in this process, the independent HTTP/2
peer of tunnel_peer.py (python3-h2) as the GPU machine.

Issue 9: a large model list merged on every request (item 2), 1xx answers written raw to the
end user (item 4), a stream no answer ever comes for, and TLS 1.2 on the tunnel.
"""
import json
import os
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from OpenSSL import SSL

from conftest import API_KEY, Goinfer, stop_clean
import tunnel_net
from tunnel_net import TOKEN, make_identity, pin_of
from tunnel_peer import MODEL, Peer, ServerPeer, start_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_MODELS = 10000   # what one registration may carry (TUNNEL_MAX_MODELS)
NAME_MAX = 256       # bytes in one model name (TUNNEL_MODEL_ID_MAX)


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    d = tmp_path_factory.mktemp("hardening-ids")
    return SimpleNamespace(**{n: make_identity(d, n) for n in ("server", "peer", "peer2")})


MiB = 1 << 20


@pytest.fixture
def server(tmp_path, ids):
    g = start_server(tmp_path, ids)
    try:
        yield g
    finally:
        stop_clean(g)


@pytest.fixture
def peers():
    made = []
    yield made
    for p in made:
        p.close()


def tunnel(server, peers, identity, models=None, registered=MODEL):
    """A Peer that dialled server, upgraded, and registered `models`."""
    mark = len(server.lines)
    p = Peer(server.tls_port, identity, server.pin, models=models)
    peers.append(p)
    status, head, rest = p.upgrade()
    assert status == 101, head
    p.start(rest)
    server.wait_log(rf"tunnel: client {re.escape(p.addr)} .*registered: {registered}",
                    timeout=10, start=mark)
    return p


def chat(model=MODEL, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra}


def many(prefix, n):
    return [{"id": f"{prefix}-{i:05d}", "hot": False, "vision": False} for i in range(n)]


def one_write_post(api, body, path="/v1/chat/completions"):
    """A POST sent in one write (no delayed ACK between head and body): (status, body)."""
    host, port = api[7:].split(":")
    data = json.dumps(body).encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                  "Connection: close\r\n\r\n".encode() + data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    head, _, rest = got.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


# ---- item 2: a large model list ----

def test_a_large_fleet_costs_no_merge_per_request_and_keeps_its_tunnels(server, peers, ids):
    """20,000 models from two GPU machines (with 100 names in common): /v1/models and the
    404 for an unknown model stay fast, and the tunnels (1 s ping timeout here) stay up.
    Before: the merge was quadratic on the only loop (7 s a request at 20,000 models)."""
    a = tunnel(server, peers, ids.peer, many("m", MAX_MODELS), registered="m-00000")
    b = tunnel(server, peers, ids.peer2, many("m", 100) + many("n", MAX_MODELS - 100),
               registered="m-00000")
    lists, unknowns = [], []
    with httpx.Client(timeout=60, headers=AUTH) as c:
        for _ in range(5):
            listed, took = timed(lambda: c.get(server.api + "/v1/models"))
            lists.append(took)
            (status, body), took = timed(lambda: one_write_post(server.api, chat("nope")))
            unknowns.append(took)
    print(f"\n20,000 tunnelled models, as the end user waits: /v1/models "
          f"{', '.join(f'{t * 1000:.0f}' for t in lists)} ms; unknown model (404) "
          f"{', '.join(f'{t * 1000:.0f}' for t in unknowns)} ms")
    assert listed.status_code == 200
    got = [m["id"] for m in listed.json()["data"]]
    assert len(got) == len(set(got)) == 2 * MAX_MODELS - 100
    assert status == 404
    msg = json.loads(body)["error"]["message"]
    assert "m-00000" in msg and "and 19868 more" in msg, msg[:300]  # 32 names shown
    # the first listing is made once (the fleet changed), the next ones are copies of it
    assert lists[0] < 1.0 and max(lists[1:]) < 0.15 and max(unknowns) < 0.05, (lists, unknowns)
    # a request still routes, and nothing was dropped
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server.api + "/v1/chat/completions", json=chat("n-09000"),
                        headers=AUTH, timeout=10)
        req = b.next_request()
        b.respond(req.id, 200, [("content-type", "application/json")], b'{"ok":1}')
        assert fut.result().content == b'{"ok":1}'
    assert not a.closed and not b.closed
    assert "disconnected" not in server.log()


def test_a_registration_is_bounded_in_models_and_name_length(server, peers, ids):
    """Past TUNNEL_MAX_MODELS the rest is left out, and names that are too long, empty or
    carry control characters are refused; each is logged, and the rest of it serves."""
    models = many("m", MAX_MODELS + 5)
    models[1:1] = [{"id": "x" * (NAME_MAX + 1)}, {"id": ""}, {"id": "evil\nforged line"},
                   {"id": "m-00000"}]  # and one named twice
    tunnel(server, peers, ids.peer, models, registered="m-00000")
    server.wait_log(r"tunnel: client .* registered 10005 models, over the 10000 allowed: "
                    r"the first 10000 are kept")
    server.wait_log(r"tunnel: client .* 3 model names refused \(empty, over 256 bytes or with "
                    r"control characters\)")
    got = [m["id"] for m in httpx.get(server.api + "/v1/models", headers=AUTH,
                                      timeout=30).json()["data"]]
    assert got == [f"m-{i:05d}" for i in range(MAX_MODELS)]
    assert "forged line" not in server.log()


# ---- item 4: 1xx answers on a tunnel stream ----

FORGED = (b"HTTP/1.1 302 Found\r\nLocation: http://evil.example/\r\n"
          b"Set-Cookie: session=stolen; Path=/\r\nContent-Length: 0\r\n\r\n")


def raw_exchange(api, body, path="/v1/chat/completions"):
    """Sends a POST in one write and returns every byte the server sends until it closes."""
    host, port = api[7:].split(":")
    data = json.dumps(body).encode()
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
              "Connection: close\r\n\r\n".encode() + data)
    return s


def read_all(s):
    """What arrives until the server closes (or 10 s of silence)."""
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    finally:
        s.close()
    return got


@pytest.mark.parametrize("interim", [[103], [100, 103]])
def test_interim_answers_are_skipped_and_the_final_one_is_the_users(server, peers, ids,
                                                                   interim):
    """A GPU machine sends 103 Early Hints (or 100 then 103) before its final headers: the end
    user gets exactly the final response, with the final headers, and its body as a body.
    Before: the final headers were never started and the machine's bytes went raw to the
    user's socket: a forged 302 with Set-Cookie reached the user."""
    peer = tunnel(server, peers, ids.peer)
    user = raw_exchange(server.api, chat())
    req = peer.next_request()
    with peer.cond:
        for status in interim:
            peer.h2.send_headers(req.id, [(":status", str(status)),
                                          ("link", "</style.css>; rel=preload"),
                                          ("content-type", "text/x-interim")])
    peer.respond(req.id, 200, [("content-type", "application/octet-stream"),
                               ("content-length", str(len(FORGED)))], FORGED)
    got = read_all(user)
    head, sep, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert sep and lines[0] == b"HTTP/1.1 200 OK", got[:300]
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    assert headers[b"content-type"] == b"application/octet-stream", headers
    assert b"set-cookie" not in headers and b"location" not in headers, headers
    assert body == FORGED  # the whole of it, as the body of the 200, and nothing else
    server.wait_log(r"POST /v1/chat/completions model=peer-model backend=tunnel status=200")
    assert "retried on another" not in server.log()
    assert not peer.closed


# ---- item 8: request bodies a GPU machine holds from a hostile server ----

def start_gpu(tmp_path, ids, server_port, extra=""):
    """A GPU machine's goinfer dialling a ServerPeer on server_port."""
    d = tmp_path / "gpu"
    (d / "models").mkdir(parents=True)  # before goinfer starts: it reads it at once
    cert, key, _ = ids.peer
    cfg = d / "goinfer.yml"
    cfg.write_text(
        f"api_key: local-{API_KEY}\nmodels_dir: {d / 'models'}\n"
        "listen:\n  \"127.0.0.1:0\": goinfer\n"
        f"client:\n  cert: {cert}\n  key: {key}\n  ping_interval: 1\n  ping_timeout: 2\n"
        f"  servers:\n    - {{url: \"https://127.0.0.1:{server_port}\", pin: \"{ids.server[2]}\", "
        f"token: {TOKEN}}}\n" + extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env["GI_LLAMA_EXE"] = "/bin/true"
    # under ASan, freed bodies wait in its quarantine (256 MB): kept small, as what is measured
    # is what goinfer holds
    env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
    g = Goinfer(["-config", str(cfg)], env, d)
    g.wait_log(r"goinfer ready", timeout=15)
    return g


def memory_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def test_a_gpu_machine_holds_a_bounded_total_of_request_bodies(tmp_path, ids):
    """A server opens 16 streams and pushes 4 MiB of body on each at once (64 MiB): the GPU
    machine holds at most limits.body_bytes_in_flight (16 MiB here) and refuses the streams
    past it with 503. Before: every body was held whole (32 x 70 MiB took it to 2.1 GB)."""
    srv = ServerPeer(ids.server)
    gpu = start_gpu(tmp_path, ids, srv.port,
                    "limits:\n  body_bytes: 5242880\n  body_bytes_in_flight: 16777216\n")
    try:
        srv.start(srv.accept())
        gpu.wait_log(r"tunnel: connected to https://127\.0\.0\.1")
        srv.wait(lambda: srv.control_in, timeout=5, what="the register line")
        time.sleep(0.3)
        before = memory_kib(gpu.proc.pid, "VmRSS")
        body = b"{" + b" " * (4 * MiB - 2) + b"}"
        sids = [srv.request("/v1/chat/completions", body=body) for _ in range(16)]
        srv.wait(lambda: all(sid in srv.responses or sid in srv.resets for sid in sids),
                 timeout=60, what="an answer on every stream")
        peak = memory_kib(gpu.proc.pid, "VmHWM")
        statuses = sorted(srv.responses.get(sid, 0) for sid in sids)
        print(f"\n16 streams x 4 MiB: the GPU machine's RSS {before / 1024:.1f} MiB, peak "
              f"{peak / 1024:.1f} MiB (+{(peak - before) / 1024:.1f}); answers {statuses}")
        # a body done with gives its room back, so more than four may pass; most can't
        assert set(statuses) <= {404, 503} and statuses.count(503) >= 8, statuses
        gpu.wait_log(r"request bodies held from servers would pass limits.body_bytes_in_flight "
                     r"\(16777216 bytes\): stream \d+ refused with 503")
        assert peak - before < 30 * 1024, (before, peak)  # 16 MiB, frames, ASan shadow
        # what the refused streams held was given back: a whole body is taken again
        sid = srv.request("/v1/chat/completions", body=body)
        srv.wait(lambda: sid in srv.responses, timeout=10, what="the next answer")
        assert srv.responses[sid] != 503, gpu.log()
        assert not srv.closed
    finally:
        srv.close()
        stop_clean(gpu)


# ---- a stream its GPU machine never answers ----

@pytest.fixture
def impatient(tmp_path, ids):
    """A server whose limits.upstream_timeout is 1 s."""
    g = start_server(tmp_path, ids, "limits:\n  upstream_timeout: 1\n")
    try:
        yield g
    finally:
        stop_clean(g)


def test_a_stream_the_gpu_machine_never_answers_ends_in_504_and_a_reset(impatient, peers, ids):
    """The machine answers PINGs (the tunnel stays up) but never this stream: after
    limits.upstream_timeout the end user gets 504 and the machine RST_STREAM (CANCEL).
    Before: the end user waited for ever."""
    server = impatient
    peer = tunnel(server, peers, ids.peer)
    t0 = time.monotonic()
    status, body = one_write_post(server.api, chat())
    took = time.monotonic() - t0
    assert status == 504, body
    assert "limits.upstream_timeout" in json.loads(body)["error"]["message"]
    assert 0.9 < took < 3, took
    req = peer.next_request()
    peer.wait(lambda: req.id in peer.resets, timeout=3, what="RST_STREAM")
    assert peer.resets[req.id][0] == 8  # CANCEL
    server.wait_log(r"POST /v1/chat/completions model=peer-model backend=tunnel status=504")
    # an answer that starts and then goes silent is cut, not held open
    user = raw_exchange(server.api, chat(stream=True))
    req = peer.next_request()
    peer.respond(req.id, 200, [("content-type", "text/event-stream")], b"data: one\n\n",
                 end=False)
    t0 = time.monotonic()
    got = read_all(user)
    assert time.monotonic() - t0 < 3
    assert got.startswith(b"HTTP/1.1 200") and b"data: one" in got, got
    assert not got.endswith(b"0\r\n\r\n"), got  # cut: no last chunk
    peer.wait(lambda: req.id in peer.resets, timeout=3, what="RST_STREAM")
    server.wait_log(r"the GPU machine .* sent nothing more for 1 s \(limits.upstream_timeout\); "
                    r"the answer is cut")
    # an answer that keeps coming, even slowly, is not
    user = raw_exchange(server.api, chat(stream=True))
    req = peer.next_request()
    peer.respond(req.id, 200, [("content-type", "text/event-stream")], b"data: 0\n\n", end=False)
    for i in range(1, 6):
        time.sleep(0.4)
        peer.send(req.id, b"data: %d\n\n" % i, end=i == 5)
    got = read_all(user)
    assert b"data: 5" in got and got.endswith(b"0\r\n\r\n"), got
    assert req.id not in peer.resets and not peer.closed


# ---- TLS 1.3 only on the tunnel ----

def handshake(port, identity, version, alpn):
    """A TLS handshake at most at `version`, offering `alpn`, with the peer's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = version
    ctx.set_alpn_protocols([alpn])
    ctx.load_cert_chain(str(identity[0]), str(identity[1]))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw)


def test_the_tunnel_takes_tls_1_3_only_and_https_still_takes_1_2(server, ids):
    """The README says TLS 1.3 for the tunnel: a goinfer/1 offer over TLS 1.2 fails the
    handshake (before: it was accepted). Plain HTTPS on the same listener still takes 1.2."""
    with pytest.raises((ssl.SSLError, ConnectionError)):  # the alert, or the close after it
        handshake(server.tls_port, ids.peer, ssl.TLSVersion.TLSv1_2, "goinfer/1").close()
    with handshake(server.tls_port, ids.peer, ssl.TLSVersion.TLSv1_3, "goinfer/1") as s:
        assert s.version() == "TLSv1.3" and s.selected_alpn_protocol() == "goinfer/1"
    with handshake(server.tls_port, ids.peer, ssl.TLSVersion.TLSv1_2, "http/1.1") as s:
        assert s.version() == "TLSv1.2"
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert "registered" not in server.log()


def test_a_gpu_machine_dials_tls_1_3_only(tmp_path, ids):
    """The other end: a server that offers no more than TLS 1.2 gets no tunnel."""
    srv = ServerPeer(ids.server, tls=SSL.TLS1_2_VERSION)
    gpu = start_gpu(tmp_path, ids, srv.port)
    try:
        with pytest.raises(SSL.Error):
            srv.accept()
        gpu.wait_log(r"tunnel: connection to https://127\.0\.0\.1:\d+ lost: .*protocol version")
        assert "tunnel: connected to" not in gpu.log()
    finally:
        srv.close()
        stop_clean(gpu)


# ---- the harness: what a program reads exists before it starts ----

def test_the_harness_makes_what_goinfer_reads_before_starting_it(tmp_path, ids, monkeypatch):
    """tunnel_net.Nodes made a server's empty models folder just after starting goinfer, which
    exits when the folder is missing: on a fresh machine the race was lost (issue 9). Every
    path a node's goinfer.yml names must exist when goinfer starts."""
    missing = []

    class Started:  # stands in for conftest.Goinfer: looks at the paths as goinfer would
        def __init__(self, args, env, cwd, prefix=()):
            cfg = Path(args[args.index("-config") + 1])
            paths = [cfg, Path(cwd)] + [Path(p) for p in re.findall(
                r"(?:models_dir|cert|key): (/[^\s,}]+)", cfg.read_text())]
            missing.extend(str(p) for p in paths if not p.exists())

        def wait_ready(self):
            return self

    monkeypatch.setattr(tunnel_net, "Goinfer", Started)
    monkeypatch.setattr(tunnel_net, "llama_exe", lambda: "/bin/true")
    nodes = tunnel_net.Nodes(None, tmp_path)
    nodes.server("ns-s", "10.0.0.1", [ids.peer[2]], identity=ids.server)
    nodes.server("ns-s2", "10.0.0.2", [ids.peer[2]], name="two")
    (tmp_path / "gpu-models").mkdir()
    nodes.client("ns-c", "gpu", tmp_path / "gpu-models", [("10.0.0.1", ids.server[2])], ids.peer)
    assert missing == []


# ---- what a server may ask a GPU machine for: the route table's inference routes ----

def test_a_server_gets_inference_routes_only_from_a_gpu_machine(tmp_path, ids):
    """The GPU machine runs a server's streams as requests with the inference service only
    (ROUTER_SVC_INFER in the route table): its admin, listing and static routes, and dot
    segments past a prefix, are not there for a server, whatever key it could send."""
    srv = ServerPeer(ids.server)
    gpu = start_gpu(tmp_path, ids, srv.port)
    try:
        srv.start(srv.accept())
        gpu.wait_log(r"tunnel: connected to https://127\.0\.0\.1")
        asked = {("GET", "/logs"): 404, ("POST", "/unload"): 404, ("POST", "/reload"): 404,
                 ("GET", "/metrics"): 404, ("GET", "/running"): 404, ("GET", "/models"): 404,
                 ("GET", "/upstream/x/slots"): 404, ("GET", "/"): 404,
                 ("POST", "/v1/../unload"): 400, ("GET", "/v1/models"): 200,
                 ("POST", "/v1/chat/completions"): 404}  # no such model here: still routed
        sids = {srv.request(path, method=m, body=b"{}" if m == "POST" else None): want
                for (m, path), want in asked.items()}
        srv.wait(lambda: all(sid in srv.responses for sid in sids), timeout=10,
                 what="an answer on every stream")
        got = {sid: srv.responses[sid] for sid in sids}
        assert got == sids, [(k, got[s], w) for k, (s, w) in zip(asked, sids.items())]
    finally:
        srv.close()
        stop_clean(gpu)
