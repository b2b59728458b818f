"""The tunnel at the frame level: the real goinfer server on 127.0.0.1, and in this process an
independent GPU machine written with python3-h2 and pyOpenSSL (class Peer) that dials it,
upgrades, and then serves HTTP/2 on the socket it dialled, answering each stream by hand.

Registration is the NDJSON control stream `POST /.goinfer/control` that the server opens: a
register line on a response that never ends.
"""
import hashlib
import http.client
import json
import os
import queue
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest
from OpenSSL import SSL

from conftest import API_KEY, Goinfer, stop_clean
from tunnel_net import TOKEN, make_identity, pin_of
from tunnel_peer import MODEL, Peer, start_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MiB = 1 << 20
STREAM_WINDOW = MiB         # SETTINGS_INITIAL_WINDOW_SIZE the server advertises
CONN_WINDOW = 16 * MiB      # what it raises its connection window to
CANCEL = 8                  # HTTP/2 error code CANCEL


# ---- fixtures ----

@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    d = tmp_path_factory.mktemp("h2-ids")
    names = ("server", "peer", "peer2", "stranger")  # stranger: not in server.clients
    return SimpleNamespace(**{n: make_identity(d, n) for n in names})


@pytest.fixture
def server(tmp_path, ids):
    """A goinfer server with no local models: loopback ports chosen by the kernel."""
    g = start_server(tmp_path, ids)
    try:
        yield g
    finally:
        stop_clean(g)


@pytest.fixture
def dial(server, ids):
    """dial(identity=peer, alpn=goinfer/1) -> a TLS-connected Peer; tunnel() -> registered."""
    peers = []

    def dial_(identity=None, alpn=b"goinfer/1"):
        p = Peer(server.tls_port, identity or ids.peer, server.pin, alpn)
        peers.append(p)
        return p

    def tunnel(identity=None):
        mark = len(server.lines)
        p = dial_(identity)
        status, head, rest = p.upgrade()
        assert status == 101, head
        p.start(rest)
        server.wait_log(rf"tunnel: client {re.escape(p.addr)} .*registered: .*{MODEL}",
                        timeout=5, start=mark)
        return p

    dial_.tunnel = tunnel
    yield dial_
    for p in peers:
        p.close()


def chat(**extra):
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **extra}


def raw_user(server, body, rcvbuf=None):
    """An end user on a plain socket (http.client), optionally with a tiny receive buffer."""
    host, port = server.api[7:].split(":")
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((host, int(port)))
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.sock = s
    c.request("POST", "/v1/chat/completions", body=json.dumps(body),
              headers={**AUTH, "Content-Type": "application/json"})
    return c


def tcp_queued(sock):
    """Bytes the kernel holds on both ends of this loopback TCP connection: unsent or unacked
    on the sending side, unread on the receiving side (tx_queue and rx_queue, /proc/net/tcp)."""
    def key(addr):
        ip, port = addr
        return "%08X:%04X" % (int.from_bytes(socket.inet_aton(ip), "little"), port)

    ends = {key(sock.getsockname()), key(sock.getpeername())}
    total = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if {fields[1], fields[2]} == ends:
                tx, rx = fields[4].split(":")
                total += int(tx, 16) + int(rx, 16)
    return total


def payload(n, seed=b"goinfer"):
    """n reproducible pseudo-random bytes."""
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest() * 64
        i += 1
    return bytes(out[:n])


# ---- tests ----

def test_a_request_goes_through_the_peer_and_comes_back_unchanged(server, dial):
    peer = dial.tunnel()
    assert len(peer.own) == 1  # registered on one stream the server opened
    sent = chat(stream=False, note="é" * 100_000)  # ~200 KB: the request body spans frames
    answer = payload(300_000)
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server.api + "/v1/chat/completions", json=sent,
                        headers=AUTH, timeout=10)
        req = peer.next_request()
        assert req[":method"] == b"POST"
        assert req[":path"] == b"/v1/chat/completions"
        assert req[":scheme"] and req[":authority"]
        assert req["content-type"] == b"application/json"
        assert json.loads(req.body) == sent
        peer.respond(req.id, 200, [("content-type", "application/octet-stream"),
                                   ("content-length", str(len(answer)))], answer)
        r = fut.result()
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == answer
    server.wait_log(r"POST /v1/chat/completions model=peer-model backend=tunnel status=200")
    # the peer's status reaches the end user as it is, with its body
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server.api + "/v1/chat/completions", json=chat(),
                        headers=AUTH, timeout=10)
        req = peer.next_request()
        err = b'{"error":{"message":"context too long","type":"invalid_request_error"}}'
        peer.respond(req.id, 400, [("content-type", "application/json")], err)
        r = fut.result()
    assert r.status_code == 400 and r.content == err


def test_a_response_streams_frame_by_frame_not_lumped(server, dial):
    peer = dial.tunnel()
    chunks = [b"data: {\"n\": %d}\n\n" % i for i in range(5)]
    arrived = queue.Queue()  # what the end user reads, as it reads it

    def end_user():
        with httpx.Client(timeout=5) as c, c.stream(
                "POST", server.api + "/v1/chat/completions", json=chat(stream=True),
                headers=AUTH) as r:
            arrived.put((r.status_code, r.headers["content-type"]))
            for data in r.iter_raw():
                arrived.put(data)
            arrived.put(None)  # the end

    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(end_user)
        req = peer.next_request()
        assert json.loads(req.body)["stream"] is True
        for i, chunk in enumerate(chunks):
            t0 = time.monotonic()
            if i == 0:
                peer.respond(req.id, 200, [("content-type", "text/event-stream")], chunk,
                             end=False)
                status, ctype = arrived.get(timeout=2)
                assert status == 200 and ctype.startswith("text/event-stream")
            else:
                peer.send(req.id, chunk, end=i == len(chunks) - 1)
            got = b""
            while len(got) < len(chunk):  # chunk i reaches the end user before i+1 exists
                got += arrived.get(timeout=1)
            assert got == chunk, f"chunk {i}: {got!r}"
            assert time.monotonic() - t0 < 0.5, f"chunk {i} took {time.monotonic() - t0:.2f} s"
            time.sleep(0.2)  # a pause before the next one
        assert arrived.get(timeout=2) is None  # and then the stream ends
        fut.result()


def test_a_slow_end_user_holds_back_only_its_own_stream(server, dial):
    peer = dial.tunnel()
    assert peer.h2.remote_settings.initial_window_size == STREAM_WINDOW
    assert peer.h2.outbound_flow_control_window > CONN_WINDOW - 64 * 1024
    big = payload(12 * MiB, b"slow")
    slow = raw_user(server, chat(), rcvbuf=16 * 1024)  # and it reads nothing for now
    a = peer.next_request()
    peer.respond(a.id, 200, [("content-type", "application/octet-stream"),
                             ("content-length", str(len(big)))], big)

    def stalled(quiet=0.5, timeout=10):
        end, last, since = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < end:
            with peer.cond:
                n, w = peer.sent[a.id], peer.h2.local_flow_control_window(a.id)
            if n != last:
                last, since = n, time.monotonic()
            elif w == 0 and time.monotonic() - since >= quiet:
                return n
            time.sleep(0.02)
        raise AssertionError(f"stream {a.id} never stalled: {last} bytes sent")

    held = stalled()
    in_kernel = tcp_queued(slow.sock)
    # the peer could send the stream window (1 MiB), plus what the kernel holds between the
    # server and the slow user (it grows the send buffer up to tcp_wmem's max, 4 MiB by
    # default), plus the server's own bounded queue (write_high, 256 KiB, and a frame)
    assert held < len(big)
    assert held >= STREAM_WINDOW and held - in_kernel <= STREAM_WINDOW + 384 * 1024, \
        (held, in_kernel)
    with peer.cond:  # the stream's window is shut, not the connection's
        assert peer.h2.outbound_flow_control_window > 4 * MiB
        updates_before = len(peer.updates)
    # meanwhile another end user on the same tunnel is served in full
    other = payload(2 * MiB, b"other")
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server.api + "/v1/chat/completions", json=chat(),
                        headers=AUTH, timeout=10)
        b = peer.next_request()
        assert b.id != a.id
        peer.respond(b.id, 200, [("content-type", "application/octet-stream")], other)
        r = fut.result()
    assert r.status_code == 200 and r.content == other
    assert peer.sent[a.id] == held and peer.window(a.id) == 0
    # the slow user reads at last: the server credits stream A and the rest flows
    resp = slow.getresponse()
    assert resp.status == 200
    got = resp.read()
    slow.close()
    assert len(got) == len(big) and got == big
    with peer.cond:
        credits = [d for sid, d, _ in peer.updates[updates_before:] if sid == a.id]
    assert credits and sum(credits) >= len(big) - held - STREAM_WINDOW, credits[:5]
    assert peer.sent[a.id] == len(big)


def test_an_end_user_leaving_resets_the_stream_with_cancel_at_once(server, dial):
    peer = dial.tunnel()
    user = raw_user(server, chat(stream=True))
    req = peer.next_request()
    peer.respond(req.id, 200, [("content-type", "text/event-stream")], b"data: first\n\n",
                 end=False)
    resp = user.getresponse()
    assert resp.status == 200 and resp.read1(64).startswith(b"data: first")
    assert req.id not in peer.resets
    user.sock.shutdown(socket.SHUT_RDWR)
    user.close()
    resp.close()
    t0 = time.monotonic()
    peer.wait(lambda: req.id in peer.resets, timeout=3, what="RST_STREAM")
    code, when = peer.resets[req.id]
    assert code == CANCEL
    assert when - t0 < 1.0, f"RST_STREAM came {when - t0:.2f} s after the end user left"
    # the tunnel itself is fine: the next request goes through
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server.api + "/v1/chat/completions", json=chat(),
                        headers=AUTH, timeout=10)
        nxt = peer.next_request()
        peer.respond(nxt.id, 200, [("content-type", "application/json")], b"{}")
        assert fut.result().status_code == 200


def test_ping_keepalive_drops_a_silent_peer_and_keeps_one_that_answers(server, dial, ids):
    live = dial.tunnel(ids.peer)
    t_live = time.monotonic()
    silent = dial.tunnel(ids.peer2)
    mark = len(server.lines)
    silent.frozen = True  # reads nothing from now on, so answers no PING
    t0 = time.monotonic()
    server.wait_log(rf"tunnel: client {re.escape(silent.addr)} disconnected: no answer to a PING",
                    timeout=6, start=mark)
    took = time.monotonic() - t0
    # 1 s of silence, then 1 s without an ACK (checked 4 times a second)
    assert took < 3.5, f"the silent peer was dropped only after {took:.2f} s"
    silent.frozen = False
    silent.wait(lambda: silent.closed, timeout=3, what="the server to close the silent tunnel")
    # the one that answers was pinged all along and is still there 3.5 s on
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t_live)))
    assert live.pings >= 2, f"only {live.pings} PINGs in 3.5 s of silence"
    assert f"client {live.addr} disconnected" not in server.log()
    assert not live.closed
    tunnels = httpx.get(server.api + "/running", headers=AUTH).json()["tunnels"]
    assert [t["peer"] for t in tunnels] == [live.addr], tunnels


@pytest.mark.parametrize("case", ["wrong-token", "unknown-pin", "no-alpn"])
def test_refused_upgrades(server, dial, ids, case):
    mark = len(server.lines)
    if case == "wrong-token":
        peer = dial()
        status, head, _ = peer.upgrade(token="not-the-token-0123456789abcdef")
        assert status == 401, head
        server.wait_log(rf"refused client {re.escape(peer.addr)} .*wrong or missing token proof",
                        start=mark)
    elif case == "unknown-pin":
        peer = dial(ids.stranger)
        status, head, _ = peer.upgrade()
        assert status == 403, head
        server.wait_log(rf"refused client .*{re.escape(ids.stranger[2])} is not in server.clients",
                        start=mark)
    else:
        peer = dial(alpn=b"http/1.1")
        assert peer.tls.get_alpn_proto_negotiated() != b"goinfer/1"
        status, head, _ = peer.upgrade()
        assert status == 400, head
    time.sleep(0.2)
    assert not re.search("registered", "\n".join(server.lines[mark:]))


def test_garbage_after_the_upgrade_drops_that_tunnel_at_once(server, dial, ids):
    mark = len(server.lines)
    peer = dial()
    status, head, _ = peer.upgrade()
    assert status == 101, head
    t0 = time.monotonic()
    peer._sendall(b"\x00" + os.urandom(256))  # no HTTP/2 SETTINGS frame starts like this
    gone = server.wait_log(rf"tunnel: client {re.escape(peer.addr)} disconnected: (.*)",
                           timeout=5, start=mark)
    took = time.monotonic() - t0
    end = time.monotonic() + 2  # and the connection is closed
    while True:
        try:
            if peer._retry(peer.tls.recv, 65536, timeout=end - time.monotonic()) == b"":
                break
        except (SSL.ZeroReturnError, SSL.SysCallError):
            break
    # the server carries on: its health check, and a well-behaved peer gets in and is served
    assert httpx.get(server.api + "/health", timeout=5).status_code == 200
    good = dial.tunnel(ids.peer2)
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server.api + "/v1/chat/completions", json=chat(),
                        headers=AUTH, timeout=10)
        req = good.next_request()
        good.respond(req.id, 200, [("content-type", "application/json")], b'{"ok":1}')
        assert fut.result().content == b'{"ok":1}'
    # dropped for the protocol error itself, not later by the keepalive (1 s + 1 s here)
    assert "PING" not in gone.group(1) and took < 1.0, \
        f"dropped after {took:.2f} s: {gone.group(0)}"


def test_a_reset_control_stream_then_data_in_the_same_read_is_survived(server, dial):
    """Found in review: nghttp2 reports the control stream's close mid-read; the link must
    close from the loop, not under nghttp2's feet (ASan caught a use-after-free here)."""
    peer = dial.tunnel()
    user = raw_user(server, chat(stream=True))
    req = peer.next_request()
    peer.respond(req.id, 200, [("content-type", "text/event-stream")], b"data: first\n\n",
                 end=False)
    assert user.getresponse().status == 200
    with peer.cond:  # one write: RST on the control stream, then DATA on the user's stream
        peer.h2.reset_stream(1)
        peer.h2.send_data(req.id, b"data: second\n\n")
    server.wait_log(r"disconnected: its control stream ended")
    assert httpx.get(server.api + "/health", timeout=5).status_code == 200


def test_slow_users_who_leave_give_back_the_connection_window(server, dial):
    """Found in review: bytes held back for a slow reader were never credited when the reader
    left, so about 16 such users wedged the whole tunnel (16 MiB connection window)."""
    peer = dial.tunnel()
    big = payload(4 * MiB, b"slow")
    for _ in range(18):
        slow = raw_user(server, chat(), rcvbuf=4096)
        a = peer.next_request()
        peer.respond(a.id, 200, [("content-type", "application/octet-stream")], big)
        time.sleep(0.35)
        slow.sock.shutdown(socket.SHUT_RDWR)
        slow.close()
        peer.wait(lambda: a.id in peer.resets, timeout=5, what="RST after the user left")
    other = payload(2 * MiB, b"other")
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server.api + "/v1/chat/completions", json=chat(),
                        headers=AUTH, timeout=15)
        b = peer.next_request()
        peer.respond(b.id, 200, [("content-type", "application/octet-stream")], other)
        assert fut.result().content == other
