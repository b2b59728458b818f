"""An independent GPU machine's end of the tunnel, written with python3-h2 and pyOpenSSL:
the frame-level tests (test_tunnel_h2.py) and the 1,000-tunnel memory row of
bench/tunnel_bench.py both dial a real goinfer server with it."""
import base64
import hashlib
import hmac
import json
import select
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

import os

from conftest import API_KEY, Goinfer
from tunnel_net import TOKEN, pin_of

MODEL = "peer-model"  # what a Peer registers
MODE_ACCEPT_MOVING_WRITE_BUFFER = 0x2


def spki_pin(x509):
    der = x509.to_cryptography().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()


class Request:
    """One stream the server opened on us."""

    def __init__(self, sid, headers):
        self.id, self.headers, self.body, self.ended = sid, dict(headers), b"", False

    def __getitem__(self, name):
        return self.headers.get(name.encode())


class Peer:
    """A GPU machine's end of the tunnel: TLS 1.3 out to the server, the upgrade, then the
    HTTP/2 *server* side. After start(), one thread owns the socket: it feeds what comes in to
    h2, answers registration, queues the other requests for the test, and sends what the
    windows allow of the bodies the test queued with respond()/send()."""

    def __init__(self, port, identity, server_pin, alpn=b"goinfer/1", models=None):
        cert, key, self.pin = identity
        # what it registers: [{"id", "hot", "vision"}]
        self.models = models or [{"id": MODEL, "hot": True, "vision": False}]
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.use_certificate_file(str(cert))
        ctx.use_privatekey_file(str(key))
        ctx.set_alpn_protos([alpn])
        ctx.set_mode(MODE_ACCEPT_MOVING_WRITE_BUFFER)
        ctx.set_verify(SSL.VERIFY_NONE)  # the server is checked by its pin, below
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.tls = SSL.Connection(ctx, self.sock)
        self.tls.set_connect_state()
        self._retry(self.tls.do_handshake)
        assert self.tls.get_protocol_version_name() == "TLSv1.3"
        assert spki_pin(self.tls.get_peer_certificate()) == server_pin
        self._state()

    def _state(self):
        self.cond = threading.Condition()
        self.own, self.incoming = {}, {}          # registration streams; end users' streams
        self.requests = []                        # end users' requests, complete, for the test
        self.out, self.sent = {}, {}              # sid -> [pending bytearray, end]; bytes sent
        self.resets, self.updates = {}, []        # sid -> (code, when); (sid, delta, when)
        self.pings, self.control_in = 0, []       # PINGs received; NDJSON lines from the server
        self.frozen = self.closed = self.stopping = False
        self.idle_poll_s = 0.005  # how often an idle peer looks at its queued bodies
        self.thread = None

    # ---- before HTTP/2: blocking-style helpers over the non-blocking socket ----

    def _retry(self, fn, *args, timeout=5):
        end = time.monotonic() + timeout
        while True:
            try:
                return fn(*args)
            except SSL.WantReadError:
                events = select.POLLIN
            except SSL.WantWriteError:
                events = select.POLLOUT
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{fn.__name__} did not complete in {timeout} s")
            self._wait(events, left)

    def _wait(self, events, seconds):
        """poll, not select: a bench holds 1,000 peers, past select's 1,024 descriptors."""
        p = select.poll()
        p.register(self.sock, events)
        p.poll(seconds * 1000)

    def _sendall(self, data):
        for i in range(0, len(data), 16384):
            chunk = data[i:i + 16384]
            while chunk:
                chunk = chunk[self._retry(self.tls.send, chunk):]

    def proof(self, token=TOKEN):
        ekm = self.tls.export_keying_material(b"EXPORTER-goinfer-tunnel", 32)
        return base64.b64encode(hmac.new(token.encode(), ekm, hashlib.sha256).digest()).decode()

    def upgrade(self, token=TOKEN):
        """Sends the upgrade request; returns (status, head, bytes after the head)."""
        self._sendall(("GET /.well-known/goinfer-tunnel HTTP/1.1\r\nHost: x\r\n"
                       "Connection: Upgrade\r\nUpgrade: ptth\r\n"
                       f"Authorization: Goinfer proof={self.proof(token)}\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._retry(self.tls.recv, 65536)
        head, rest = buf.split(b"\r\n\r\n", 1)
        return int(head.split()[1]), head.decode(), rest

    # ---- HTTP/2 ----

    def start(self, rest=b""):
        """Roles swap: we are the HTTP/2 server on the connection we dialled."""
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.h2.initiate_connection()
        with self.cond:
            self._input(rest)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self):
        while not self.stopping and not self.closed:
            if self.frozen:  # reads nothing, so acknowledges nothing
                time.sleep(0.01)
                continue
            data = None
            try:
                data = self.tls.recv(65536)
            except SSL.WantReadError:
                pass
            except (SSL.ZeroReturnError, SSL.SysCallError, SSL.Error):
                data = b""
            with self.cond:
                if data == b"":
                    self.closed = True
                elif data:
                    self._input(data)
                self._push()
                out = self.h2.data_to_send()
                self.cond.notify_all()
            try:
                if out:
                    self._sendall(out)
            except (SSL.Error, OSError, TimeoutError):
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
            if data is None:
                self._wait(select.POLLIN, self.idle_poll_s)

    def _input(self, data):
        if data:
            for ev in self.h2.receive_data(data):
                self._event(ev)
        self._push()

    def _event(self, ev):
        now = time.monotonic()
        if isinstance(ev, h2.events.RequestReceived):
            req = Request(ev.stream_id, ev.headers)
            path = req[":path"]
            if path == b"/.goinfer/control":  # the control stream: never ended by us
                self.own[req.id] = req
                self.respond(req.id, 200, [("content-type", "application/x-ndjson")],
                             self.control_line(type="register", version="test-peer", slots=8,
                                               models=self.models),
                             end=False)
            else:  # an end user's: the test gets it once its body is complete
                self.incoming[req.id] = req
        elif isinstance(ev, h2.events.DataReceived):
            req = self.own.get(ev.stream_id) or self.incoming[ev.stream_id]
            req.body += ev.data
            if req[":path"] == b"/.goinfer/control":
                *lines, _ = req.body.split(b"\n")
                self.control_in = [json.loads(x) for x in lines if x.strip()]
            try:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
        elif isinstance(ev, h2.events.StreamEnded):
            req = self.incoming.get(ev.stream_id)
            if req is not None:
                req.ended = True
                self.requests.append(req)
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = (ev.error_code, now)
            self.out.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.WindowUpdated):
            self.updates.append((ev.stream_id, ev.delta, now))
        elif isinstance(ev, h2.events.PingReceived):
            self.pings += 1  # h2 has queued the ACK already
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = True

    @staticmethod
    def control_line(**msg):
        return json.dumps(msg).encode() + b"\n"

    def _push(self):
        """Sends what the flow-control windows allow of the queued bodies."""
        for sid in list(self.out):
            pending, end = self.out[sid]
            try:
                while pending:
                    n = min(len(pending), self.h2.local_flow_control_window(sid),
                            self.h2.max_outbound_frame_size)
                    if n <= 0:
                        break
                    self.h2.send_data(sid, bytes(pending[:n]))
                    del pending[:n]
                    self.sent[sid] = self.sent.get(sid, 0) + n
                if not pending and end:
                    self.h2.end_stream(sid)
                if not pending:
                    del self.out[sid]
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                del self.out[sid]

    # ---- for the tests (any thread) ----

    def respond(self, sid, status, headers=(), body=b"", end=True):
        with self.cond:
            self.h2.send_headers(sid, [(":status", str(status)), *headers])
            self.sent.setdefault(sid, 0)
            self.out[sid] = [bytearray(body), end]
            self._push()

    def send(self, sid, data, end=False):
        with self.cond:
            if sid in self.out:
                self.out[sid][0] += data
                self.out[sid][1] = end
            else:
                self.out[sid] = [bytearray(data), end]
            self._push()

    def wait(self, predicate, timeout=5, what="a condition"):
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), f"peer: timed out waiting for {what}"

    def next_request(self, timeout=5):
        self.wait(lambda: self.requests, timeout, "a request from the server")
        with self.cond:
            return self.requests.pop(0)

    def window(self, sid):
        with self.cond:
            return self.h2.local_flow_control_window(sid)

    def close(self):
        self.stopping = True
        if self.thread:
            self.thread.join(5)
        self.sock.close()


class ServerPeer(Peer):
    """A Goinfer server's end, for what a hostile server can do to a GPU machine: it listens
    (TLS 1.3, ALPN goinfer/1, any client certificate), answers the upgrade with 101 whatever
    the proof, opens the control stream, and is the HTTP/2 client: request() opens a stream,
    send() pushes its body as the windows allow. responses: sid -> status."""

    def __init__(self, identity, tls=SSL.TLS1_3_VERSION):
        cert, key, self.pin = identity
        self.ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.ctx.set_min_proto_version(tls)
        self.ctx.set_max_proto_version(tls)
        self.ctx.use_certificate_file(str(cert))
        self.ctx.use_privatekey_file(str(key))
        self.ctx.set_alpn_select_callback(lambda conn, offered: b"goinfer/1")
        self.ctx.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        self.ctx.set_mode(MODE_ACCEPT_MOVING_WRITE_BUFFER)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sock = None
        self._state()
        self.responses = {}

    def accept(self, timeout=15):
        """Takes the GPU machine's connection and its upgrade; returns the bytes after it."""
        self.listener.settimeout(timeout)
        self.sock, _ = self.listener.accept()
        self.sock.setblocking(False)
        self.tls = SSL.Connection(self.ctx, self.sock)
        self.tls.set_accept_state()
        self._retry(self.tls.do_handshake)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._retry(self.tls.recv, 65536)
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"GET /.well-known/goinfer-tunnel "), head
        self._sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      b"Upgrade: ptth\r\n\r\n")
        return rest

    def start(self, rest=b""):
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.control = self.h2.get_next_available_stream_id()
        self.h2.send_headers(self.control, [
            (":method", "POST"), (":scheme", "https"), (":authority", "goinfer"),
            (":path", "/.goinfer/control"), ("content-type", "application/x-ndjson")])
        with self.cond:
            self._input(rest)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def request(self, path, method="POST", body=None, ctype="application/json"):
        """Opens a stream; with body, queues it whole (END_STREAM after it)."""
        with self.cond:
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, [(":method", method), (":scheme", "https"),
                                       (":authority", "goinfer"), (":path", path),
                                       ("content-type", ctype)], end_stream=body is None)
            if body is not None:
                self.out[sid] = [bytearray(body), True]
                self._push()
        return sid

    def _event(self, ev):
        now = time.monotonic()
        if isinstance(ev, h2.events.ResponseReceived):
            self.responses[ev.stream_id] = int(dict(ev.headers)[b":status"])
        elif isinstance(ev, h2.events.DataReceived):
            if ev.stream_id == self.control:
                self.control_in.append(ev.data)
            try:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = (ev.error_code, now)
            self.out.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = True

    def close(self):
        if self.sock is not None:
            super().close()
        self.listener.close()


def start_server(tmp_path, ids, extra=""):
    """A goinfer server with no local models, its ports chosen by the kernel."""
    (tmp_path / "empty").mkdir(exist_ok=True)  # before goinfer starts: it reads it at once
    cert, key, pin = ids.server
    cfg = tmp_path / "goinfer.yml"
    cfg.write_text(
        f"api_key: {API_KEY}\nmodels_dir: {tmp_path / 'empty'}\n"
        "listen:\n  \"127.0.0.1:0\": goinfer, tls\n  \"127.0.0.2:0\": goinfer\n"
        f"tls: {{cert: {cert}, key: {key}}}\n"
        f"server:\n  token: \"{TOKEN}\"\n  clients: [\"{ids.peer[2]}\", \"{ids.peer2[2]}\"]\n"
        "  ping_interval: 1\n  ping_timeout: 1\n" + extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env["GI_LLAMA_EXE"] = "/bin/true"  # never run: the models are behind the tunnel
    g = Goinfer(["-config", str(cfg)], env, tmp_path)
    g.wait_log(r"goinfer ready", timeout=15)
    g.tls_port = int(g.wait_log(r"listening on 127\.0\.0\.1:(\d+) \(goinfer tls\)").group(1))
    g.api = "http://127.0.0.2:%s" % g.wait_log(
        r"listening on 127\.0\.0\.2:(\d+) \(goinfer \)").group(1)
    assert pin_of(cert) == pin
    g.pin = pin
    return g
