#!/usr/bin/python3
"""Reverse tunnel overhead, side by side in one run. One Goinfer client (the GPU machine) is
reached three ways, all on loopback:
  direct  the client's own Goinfer port;
  tunnel  a Goinfer server's plain port, down the reverse tunnel the client dialled (TLS 1.3,
          HTTP/2);
  ssh -R  a private sshd's forwarded port, down an `ssh -R` session the client side opened.
Rows:
  1. small requests/s (wrk, keep-alive) on POST /v1/chat/completions;
  2. latency p50/p99 of one request at a time, and what each path adds to direct;
  3. bulk MB/s of one large response through one stream;
  4. delay per SSE event with 100 concurrent streams while 64 MiB uploads share the path;
  5. the server's RSS with N idle tunnels (N client processes), and measured with 1,000 idle
     tunnels from python3-h2 peers; sshd (summed PSS of its processes) with N `ssh -R`
     sessions, extrapolated to 1,000;
  6. reconnect time after the server restarts (SIGTERM, start again).
Every upstream is FAKE: model "fake" is an nginx block answering 200 at once (rows 1, 2);
model "fake-stream" is an asyncio server run by this script in a child process (rows 3, 4):
it streams a large body, stamps SSE events with time.perf_counter_ns() (CLOCK_MONOTONIC, one
clock for every process on the machine) so the reader measures each event's delay, or swallows
an upload. No llama-server runs. Ratios are what count: the machine is shared and noisy.

Usage: bench/tunnel_bench.py [scale, default 1; 0.2 is a quick smoke run]
Needs `make build`, wrk, nginx, curl, ssh, sshd, ssh-keygen, and python3-h2 and
python3-openssl for the peers of row 5 (`make setup` installs them all). Run as root (sshd
logs in as root over loopback with a throwaway key).
"""
import asyncio
import base64
import datetime
import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import resource
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fake_sse import write_stamped_events
from nginx_conf import nginx_conf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integ"))
from tunnel_peer import Peer  # noqa: E402  (the frame-level tests' independent peer)

ROOT = Path(__file__).resolve().parents[1]
GOINFER = ROOT / "build" / "goinfer"
USER_KEY = "bench-user-key-0123456789"
CLIENT_KEY = "client-local-key-0123456789"
TOKEN = "0123456789abcdef0123456789abcdef"
SSE_STREAMS, SSE_GAP_MS = 100, 50


class BenchError(Exception):
    pass


def fail(msg):
    raise BenchError(msg)


def progress(what):
    """A line on stderr, so a long run shows where it is; the table goes to stdout."""
    print(f"tunnel_bench: {what}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The FAKE upstream (model "fake-stream"), run as `tunnel_bench.py --fake-upstream`.


async def body_pieces(reader, head):
    """The body of an HTTP/1.1 message whose head was read: Content-Length, chunked, or (for a
    response without either) up to EOF."""
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    if m:
        left = int(m.group(1))
        while left:
            piece = await reader.read(min(left, 1 << 20))
            if not piece:
                raise ConnectionError("body cut short")
            left -= len(piece)
            yield piece
    elif re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I):
        while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
            yield await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
    elif head.startswith(b"HTTP/"):
        while piece := await reader.read(1 << 16):
            yield piece


class FakeUpstream:
    """Answers by the "mode" in the first bytes of a request body: bulk, sse or upload."""

    def __init__(self):
        self.bulk = memoryview(b"x" * (1 << 20))
        self.sse_live = self.sse_peak = 0

    async def serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, size = b"", 0
                async for piece in body_pieces(reader, head):
                    first = first or piece[:512]
                    size += len(piece)
                await self.answer(writer, head, first, size)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def answer(self, writer, head, body, size):
        mode = re.search(rb'"mode": *"(\w+)"', body)
        mode = mode.group(1) if mode else b""
        if head.startswith(b"GET /stats"):
            await self.small(writer, b'{"sse_peak":%d}' % self.sse_peak)
            self.sse_peak = 0
        elif mode == b"bulk":
            await self.send_bulk(writer, int(re.search(rb'"bytes": *(\d+)', body).group(1)))
        elif mode == b"sse":
            await self.send_sse(writer, int(re.search(rb'"events": *(\d+)', body).group(1)))
        else:
            await self.small(writer, b'{"ok":true,"received":%d}' % size)

    async def small(self, writer, data):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        await writer.drain()

    async def send_bulk(self, writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % n)
        while n > 0:
            writer.write(self.bulk[:min(n, len(self.bulk))])
            n -= len(self.bulk)
            await writer.drain()

    async def send_sse(self, writer, events):
        self.sse_live += 1
        self.sse_peak = max(self.sse_peak, self.sse_live)
        try:
            await write_stamped_events(writer, events, SSE_GAP_MS / 1000)
        finally:
            self.sse_live -= 1


async def fake_upstream_main():
    fake = FakeUpstream()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# ---------------------------------------------------------------------------------------------
# Processes, ports, files.


class Procs:
    """Every process the bench starts, each in its own process group so that cleanup also
    reaches what it started."""

    def __init__(self):
        self.live = []

    def start(self, argv, log_path, env=None, stdout=None):
        with open(log_path, "ab") as log:
            p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                 stdout=stdout or log, stderr=log, env=env,
                                 start_new_session=True)
        p.log_path = log_path
        self.live.append(p)
        return p

    def stop(self, p, timeout=15):
        """SIGTERM to the process (Goinfer stops its own children), then SIGKILL its group."""
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p, timeout=5)


def log_tail(p, n=1500):
    try:
        return Path(p.log_path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_until(check, what, timeout=30, proc=None):
    """Polls check() every 10 ms until it is true; fails naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            fail(f"{what}: process exited with {proc.returncode}:\n{log_tail(proc)}")
        if time.monotonic() > deadline:
            tail = f":\n{log_tail(proc)}" if proc is not None else ""
            fail(f"timed out after {timeout} s waiting for {what}{tail}")
        time.sleep(0.01)


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, **kw)


def check_tools():
    if not GOINFER.exists():
        fail(f"{GOINFER} is missing: run `make build` first")
    for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx"), ("curl", "curl"),
                      ("ssh", "openssh-client"),
                      ("ssh-keygen", "openssh-client"), ("/usr/sbin/sshd", "openssh-server")):
        if shutil.which(tool) is None:
            fail(f"{tool} is missing: install the Debian package {pkg}")
    if os.geteuid() != 0:
        fail("run as root: the private sshd logs in as root with a throwaway key")


def identity(d, name):
    """A P-256 key and self-signed certificate, made in this process (an openssl command per
    key would take 20 s for the 1,000 peers); returns (cert, key, pin)."""
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    k = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
         .public_key(k.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=2)).sign(k, hashes.SHA256()))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    spki = k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert, key, "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


# ---------------------------------------------------------------------------------------------
# The pieces: nginx, fake upstream, Goinfer server and clients, sshd and ssh -R.


def start_nginx(procs, tmp):
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(
        tmp, f"""  server {{ listen 127.0.0.1:{port}; location / {{ return 200 '{{"ok":true}}'; }} }}"""))
    p = procs.start(["nginx", "-c", conf, "-p", tmp], tmp / "nginx.log")
    wait_until(lambda: port_open(port), "nginx (the FAKE instant upstream)", proc=p)
    return port


def start_fake_upstream(procs, tmp):
    p = procs.start([sys.executable, __file__, "--fake-upstream"], tmp / "fake.log",
                    stdout=subprocess.PIPE)
    line = p.stdout.readline()
    if not line.strip().isdigit():
        fail(f"the FAKE asyncio upstream did not start:\n{log_tail(p)}")
    return int(line)


def goinfer_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GI_") and k.lower() not in ("http_proxy", "https_proxy")}
    llama = Path.home() / ".cache/goinfer/llama-current/bin/llama-server"
    if llama.exists():
        env["GI_LLAMA_EXE"] = str(llama)  # unused here (every model is FAKE), but expected
    return env


def start_goinfer(procs, d, yml):
    d.mkdir(exist_ok=True)
    (d / "goinfer.yml").write_text(yml)
    return procs.start([GOINFER, "-q", "-config", d / "goinfer.yml"], d / "goinfer.log",
                       env=goinfer_env())


LIMITS = "limits:\n  max_connections_per_ip: 5000\n"


def server_yml(ctx):
    pins = ", ".join(f'"{pin}"' for _, _, pin in ctx["client_ids"] + ctx["peer_ids"])
    cert, key, _ = ctx["server_id"]
    return (f"api_key: {USER_KEY}\nmodels_dir: {ctx['empty']}\n"
            f"listen:\n  \"127.0.0.1:{ctx['tls_port']}\": goinfer, tls\n"
            f"  \"127.0.0.1:{ctx['srv_port']}\": goinfer\n"
            f"tls: {{cert: {cert}, key: {key}}}\n{LIMITS}"
            f"server:\n  token: \"{TOKEN}\"\n  clients: [{pins}]\n")


def client_yml(ctx, ident, port, with_models):
    cert, key, _ = ident
    yml = (f"api_key: {CLIENT_KEY}\nmodels_dir: {ctx['empty']}\n"
           f"listen:\n  \"127.0.0.1:{port}\": goinfer\n{LIMITS}"
           f"client:\n  cert: {cert}\n  key: {key}\n  servers:\n"
           f"    - url: https://127.0.0.1:{ctx['tls_port']}\n"
           f"      pin: \"{ctx['server_id'][2]}\"\n      token: \"{TOKEN}\"\n")
    if with_models:
        yml += (f"models:\n  fake:\n    cmd: sleep 100000\n"
                f"    proxy: http://127.0.0.1:{ctx['nginx_port']}\n    checkEndpoint: none\n"
                f"  fake-stream:\n    cmd: sleep 100000\n"
                f"    proxy: http://127.0.0.1:{ctx['fake_port']}\n    checkEndpoint: none\n"
                f"groups:\n  fakes: {{swap: false, exclusive: false, "
                f"members: [fake, fake-stream]}}\n")
    return yml


def http_get(port, path, key):
    with httpx.Client(trust_env=False, timeout=5) as c:
        return c.get(f"http://127.0.0.1:{port}{path}",
                     headers={"Authorization": f"Bearer {key}"})


def registered_tunnels(ctx):
    try:
        r = http_get(ctx["srv_port"], "/running", USER_KEY)
        return sum(1 for t in r.json().get("tunnels", []) if t.get("registered"))
    except (httpx.HTTPError, ValueError, AttributeError):
        return 0  # not listening yet, or no tunnels listed yet


def start_server(procs, ctx):
    p = start_goinfer(procs, ctx["tmp"] / "server", server_yml(ctx))
    wait_until(lambda: port_open(ctx["srv_port"]), "the Goinfer server's plain port", proc=p)
    return p


def start_client(procs, ctx, ident, name, port=0, with_models=False):
    return start_goinfer(procs, ctx["tmp"] / name, client_yml(ctx, ident, port, with_models))


def start_sshd(procs, ctx):
    d = ctx["tmp"] / "ssh"
    d.mkdir()
    for name in ("host_key", "user_key"):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / name])
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin yes\nStrictModes no\n"
        f"UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"AllowTcpForwarding yes\nMaxStartups 500\nLogLevel ERROR\n")
    if not Path("/run/sshd").exists():  # sshd's privilege separation directory
        os.makedirs("/run/sshd", mode=0o755)
        ctx["made_run_sshd"] = True
    p = procs.start(["/usr/sbin/sshd", "-D", "-e", "-f", d / "sshd_config"], d / "sshd.log")
    wait_until(lambda: port_open(port), "the private sshd", proc=p)
    return p, port


def start_ssh_r(procs, ctx, rport, target_port, name):
    """`ssh -R 127.0.0.1:rport:127.0.0.1:target_port` into the private sshd."""
    d = ctx["tmp"] / "ssh"
    return procs.start(["ssh", "-N", "-F", "/dev/null", "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
                        "-i", d / "user_key", "-p", ctx["ssh_port"],
                        "-R", f"127.0.0.1:{rport}:127.0.0.1:{target_port}", "root@127.0.0.1"],
                       d / f"{name}.log")


# ---------------------------------------------------------------------------------------------
# Row 1: requests/s with wrk.


def wrk_script(tmp, key):
    path = tmp / f"wrk-{key[:6]}.lua"
    path.write_text('wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    f'wrk.headers["Authorization"] = "Bearer {key}"\n'
                    'wrk.body = \'{"model":"fake","messages":[{"role":"user","content":"Hi"}]}\'\n')
    return path


def rps(tmp, port, key, secs):
    out = run(["wrk", "-t1", "-c16", f"-d{secs}s", "-s", wrk_script(tmp, key),
               f"http://127.0.0.1:{port}/v1/chat/completions"], text=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if bad:
        fail(f"wrk saw errors through port {port}:\n{out}")
    return float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))


# ---------------------------------------------------------------------------------------------
# Row 2: one request at a time.


class Http1:
    """A minimal keep-alive HTTP/1.1 client that sends each request in one write with
    TCP_NODELAY. (httpx writes headers and body apart, and Nagle with delayed ACKs then adds
    40 ms to every POST, to nginx as much as to Goinfer: it would measure nothing else.)"""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, path, key, body):
        """Returns (status, response body)."""
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (path.encode(), key.encode(), len(body), body))
        head = self.until(b"\r\n\r\n")
        m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
        if m:
            data = self.exactly(int(m.group(1)))
        elif re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I):
            data = b""
            while (size := int(self.until(b"\r\n").split(b";")[0], 16)) > 0:
                data += self.exactly(size + 2)[:-2]
            self.until(b"\r\n")
        else:
            fail(f"a response without a length: {head[:300]!r}")
        return int(head.split(b" ", 2)[1]), data

    def fill(self):
        piece = self.sock.recv(1 << 16)
        if not piece:
            fail("the connection closed mid-response")
        self.buf += piece

    def until(self, sep):
        while sep not in self.buf:
            self.fill()
        out, self.buf = self.buf.split(sep, 1)
        return out + sep

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self):
        self.sock.close()


def latencies_ms(port, key, n):
    """p50 and p99 of n sequential POSTs on one keep-alive connection, after 20 to warm up."""
    body = b'{"model":"fake","messages":[{"role":"user","content":"Hi"}]}'
    c, times = Http1(port), []
    try:
        for i in range(n + 20):
            t0 = time.perf_counter()
            status, data = c.post("/v1/chat/completions", key, body)
            dt = (time.perf_counter() - t0) * 1000
            if status != 200:
                fail(f"POST through port {port} answered {status}: {data[:300]!r}")
            if i >= 20:
                times.append(dt)
    finally:
        c.close()
    return percentile(times, 50), percentile(times, 99)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


# ---------------------------------------------------------------------------------------------
# Row 3: one large response.


BULK_LIMIT_S = 20


def bulk_once(port, key, nbytes):
    """curl reads a FAKE bulk answer of nbytes as fast as it can; returns (bytes, seconds)."""
    p = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(BULK_LIMIT_S),
                        "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
                        "-H", f"Authorization: Bearer {key}",
                        "-H", "Content-Type: application/json",
                        "-d", f'{{"model":"fake-stream","mode":"bulk","bytes":{nbytes}}}',
                        f"http://127.0.0.1:{port}/v1/chat/completions"],
                       capture_output=True, text=True)
    code, size, secs = p.stdout.split()
    if code != "200":
        fail(f"bulk through port {port}: status {code} {p.stderr.strip()}")
    return int(size), float(secs)


def bulk_mb_s(port, key, nbytes):
    """Best of two reads, in MB/s (10^6 bytes), and a note when a read stalled (timed out)."""
    best = 0.0
    for _ in range(2):
        size, secs = bulk_once(port, key, nbytes)
        best = max(best, size / secs / 1e6)
        if size != nbytes:
            return best, (f"STALLED: {size / 2**20:.1f} of {nbytes / 2**20:.0f} MiB in "
                          f"{secs:.0f} s (curl --max-time)")
    return best, ""


# ---------------------------------------------------------------------------------------------
# Row 4: SSE event delay with an upload sharing the path.


async def sse_stream(port, key, events, delays):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"model":"fake-stream","mode":"sse","stream":true,"events":%d}' % events
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                 b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                 % (key.encode(), len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        fail(f"SSE through port {port}: {head[:200]!r}")
    partial = b""
    async for piece in body_pieces(reader, head):
        now = time.perf_counter_ns()
        lines = (partial + piece).split(b"\n")
        partial = lines.pop()
        delays.extend((now - int(x[6:])) / 1e6 for x in lines if x.startswith(b"data: "))
    writer.close()


class UploadLoop:
    """Back-to-back curl uploads of one file, in a thread, until stop(); counts those done."""

    def __init__(self, port, key, path):
        # "Expect:": no 100-continue wait (curl would pause up to 1 s for one)
        self.argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "60", "-o", "/dev/null",
                     "-w", "%{http_code}", "-H", f"Authorization: Bearer {key}",
                     "-H", "Expect:", "-H", "Content-Type: application/json",
                     "--data-binary", f"@{path}",
                     f"http://127.0.0.1:{port}/v1/chat/completions"]
        self.lock, self.proc, self.stopping = threading.Lock(), None, False
        self.done, self.error = 0, None
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()

    def loop(self):
        while True:
            with self.lock:
                if self.stopping:
                    return
                self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE)
            out, err = self.proc.communicate()
            with self.lock:
                if self.stopping:
                    return
            if out != b"200":
                self.error = f"upload: {out.decode()} {err.decode()[:300]}"
                return
            self.done += 1

    def stop(self):
        with self.lock:
            self.stopping = True
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
        self.thread.join()
        if self.error:
            fail(self.error)
        return self.done


async def sse_delays(port, key, events):
    delays = []
    await asyncio.gather(*(sse_stream(port, key, events, delays) for _ in range(SSE_STREAMS)))
    if len(delays) != SSE_STREAMS * events:
        fail(f"SSE through port {port}: {len(delays)} of {SSE_STREAMS * events} events arrived")
    return percentile(delays, 50), percentile(delays, 99)


def make_upload(tmp, mib):
    """A JSON body of exactly mib MiB (64 MiB is Goinfer's default body limit)."""
    head, tail = b'{"model":"fake-stream","mode":"upload","pad":"', b'"}'
    path = tmp / "upload.json"
    path.write_bytes(head + b"u" * ((mib << 20) - len(head) - len(tail)) + tail)
    return path


# ---------------------------------------------------------------------------------------------
# Row 5: memory.


def status_kb(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid):
    """pid and every process below it."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, pending = [], [pid]
    while pending:
        p = pending.pop()
        out.append(p)
        pending.extend(children.get(p, []))
    return out


def tree_pss_mb(pid):
    return sum(pss_kb(p) for p in descendants(pid)) / 1024


def goinfer_idle_tunnels(procs, ctx, n):
    """The server's RSS before and after n client processes (own identities) registered."""
    ctx["server"] = restart_server(procs, ctx)
    time.sleep(0.5)
    before = status_kb(ctx["server"].pid, "VmRSS") / 1024
    clients = []
    for i in range(n):
        clients.append(start_client(procs, ctx, ctx["client_ids"][1 + i], f"idle{i}"))
    wait_until(lambda: registered_tunnels(ctx) >= n, f"{n} idle tunnels registered", 60,
               ctx["server"])
    time.sleep(1)
    after = status_kb(ctx["server"].pid, "VmRSS") / 1024
    for c in clients:
        procs.stop(c)
    return before, after


def peer_idle_tunnels(procs, ctx):
    """The server's RSS before and after one tunnel from each of ctx["peer_ids"]: python3-h2
    peers in this process (tests/integ/tunnel_peer.py), one thread each, which register one
    model and answer PINGs. A real count, where 1,000 Goinfer processes would not fit here."""
    ctx["server"] = restart_server(procs, ctx)
    time.sleep(0.5)
    before = status_kb(ctx["server"].pid, "VmRSS") / 1024
    peers = []
    try:
        for ident in ctx["peer_ids"]:
            p = Peer(ctx["tls_port"], ident, ctx["server_id"][2])
            p.idle_poll_s = 0.5  # a thousand threads, mostly asleep
            peers.append(p)
            status, head, rest = p.upgrade(TOKEN)
            if status != 101:
                fail(f"peer {len(peers)}: the server answered {head[:300]}")
            p.start(rest)
        n = len(peers)
        wait_until(lambda: registered_tunnels(ctx) >= n, f"{n} peer tunnels registered", 120,
                   ctx["server"])
        time.sleep(1)
        return before, status_kb(ctx["server"].pid, "VmRSS") / 1024
    finally:
        for p in peers:  # every thread told first, so the joins take one poll in all
            p.stopping = True
        for p in peers:
            p.close()


def sshd_idle_sessions(procs, ctx, n):
    """sshd's summed PSS before and after n idle `ssh -R` sessions."""
    before = tree_pss_mb(ctx["sshd"].pid)
    sessions, ports = [], []
    for i in range(n):
        ports.append(free_port())
        sessions.append(start_ssh_r(procs, ctx, ports[-1], ctx["nginx_port"], f"idle{i}"))
    wait_until(lambda: all(port_open(p) for p in ports), f"{n} ssh -R forwards", 60)
    time.sleep(1)
    after = tree_pss_mb(ctx["sshd"].pid)
    for s in sessions:
        procs.stop(s)
    return before, after


# ---------------------------------------------------------------------------------------------
# Row 6: reconnect.


def restart_server(procs, ctx):
    procs.stop(ctx["server"])
    return start_server(procs, ctx)


def reconnect_trial(procs, ctx, ident, name, crash):
    """A fresh client (its backoff at attempt 0, as after 60 s stable), registered; then the
    server gets SIGTERM (or SIGKILL: crash) and starts again.
    Returns (server start -> registered, signal -> registered), in seconds."""
    c = start_client(procs, ctx, ident, name)
    wait_until(lambda: registered_tunnels(ctx) >= 1, "a tunnel registered", 30, c)
    t_kill = time.perf_counter()
    if crash:
        ctx["server"].kill()
    procs.stop(ctx["server"])
    t_start = time.perf_counter()
    ctx["server"] = start_server(procs, ctx)
    wait_until(lambda: registered_tunnels(ctx) >= 1, "the client registered again", 120, c)
    t_done = time.perf_counter()
    procs.stop(c)
    return t_done - t_start, t_done - t_kill


# ---------------------------------------------------------------------------------------------
# The run.


def setup(procs, ctx, n_idle, n_trials, n_peers):
    """Fills ctx with everything rows 1-4 need; ctx["tmp"] is the temporary folder."""
    tmp = ctx["tmp"]
    ctx.update(empty=tmp / "empty", tls_port=free_port(), srv_port=free_port())
    ctx["empty"].mkdir()
    certs = tmp / "certs"
    certs.mkdir()
    ctx["server_id"] = identity(certs, "server")
    ctx["client_ids"] = [identity(certs, f"client{i}") for i in range(1 + n_idle + 2 * n_trials)]
    ctx["peer_ids"] = [identity(certs, f"peer{i}") for i in range(n_peers)]
    ctx["nginx_port"] = start_nginx(procs, tmp)
    ctx["fake_port"] = start_fake_upstream(procs, tmp)
    ctx["server"] = start_server(procs, ctx)
    ctx["cli_port"] = free_port()
    ctx["client"] = start_client(procs, ctx, ctx["client_ids"][0], "client", ctx["cli_port"],
                                 with_models=True)
    wait_until(lambda: "fake-stream" in models(ctx["srv_port"], USER_KEY),
               "the client to register its models through the tunnel", 30, ctx["client"])
    ctx["sshd"], ctx["ssh_port"] = start_sshd(procs, ctx)
    ctx["ssh_rport"] = free_port()
    ctx["ssh"] = start_ssh_r(procs, ctx, ctx["ssh_rport"], ctx["cli_port"], "main")
    wait_until(lambda: "fake-stream" in models(ctx["ssh_rport"], CLIENT_KEY),
               "the ssh -R forward to reach the client", 30, ctx["ssh"])


def models(port, key):
    try:
        r = http_get(port, "/v1/models", key)
        return [m["id"] for m in r.json()["data"]] if r.status_code == 200 else []
    except (httpx.HTTPError, ValueError, KeyError):
        return []


def paths(ctx):
    """(port, key) of direct, tunnel, ssh -R, in the table's column order."""
    return [(ctx["cli_port"], CLIENT_KEY), (ctx["srv_port"], USER_KEY),
            (ctx["ssh_rport"], CLIENT_KEY)]


def each_path(ctx, what, fn, *args):
    """fn(port, key, *args) for direct, tunnel and ssh -R, in that order."""
    out = []
    for name, (port, key) in zip(("direct", "tunnel", "ssh -R"), paths(ctx)):
        progress(f"{what}: {name}")
        out.append(fn(port, key, *args))
    return out


def measure(ctx, scale):
    """Rows 1 to 4: the same requests down each path."""
    secs = max(1, round(5 * scale))
    n_lat = max(50, int(300 * scale))
    bulk_mib = max(16, int(256 * scale))
    events = max(5, int(20 * scale))
    upload_mib = max(8, int(64 * scale))
    rows = []
    r = each_path(ctx, "1 req/s", lambda port, key: rps(ctx["tmp"], port, key, secs))
    rows.append((f"1 small req/s (wrk, 16 conns, {secs} s)", *r, "{:.0f}"))
    add_latency_rows(rows, each_path(ctx, "2 latency", latencies_ms, n_lat), n_lat)
    r = each_path(ctx, "3 bulk", bulk_mb_s, bulk_mib << 20)
    rows.append((f"3 bulk MB/s, 1 stream of {bulk_mib} MiB, best of 2", *(x[0] for x in r),
                 "{:.0f}"))
    rows += [(f"    {name}: {note}", "", "", "", "{}")
             for name, (_, note) in zip(("direct", "tunnel", "ssh -R"), r) if note]
    upload = make_upload(ctx["tmp"], upload_mib)
    sse = each_path(ctx, "4 SSE + upload",
                    lambda port, key: sse_row(ctx, port, key, events, upload))
    add_sse_rows(rows, sse, events, upload_mib)
    return rows


def sse_row(ctx, port, key, events, upload):
    """(p50, p99, uploads done, peak streams live at the upstream) down one path."""
    up = UploadLoop(port, key, upload)
    time.sleep(0.05)  # the upload is under way when the streams start
    try:
        p50, p99 = asyncio.run(sse_delays(port, key, events))
    finally:
        uploads = up.stop()
    peak = http_get(ctx["fake_port"], "/stats", "none").json()["sse_peak"]
    return p50, p99, uploads, peak


def add_latency_rows(rows, lat, n):
    for i, p in ((0, "p50"), (1, "p99")):
        d, t, s = (x[i] for x in lat)
        rows.append((f"2 latency {p}, 1 at a time, {n} reqs (ms)", d, t, s, "{:.3f}"))
        rows.append((f"    added {p} vs direct (ms)", "-", t - d, s - d, "{:+.3f}"))


def add_sse_rows(rows, sse, events, upload_mib):
    label = f"4 SSE delay {{}}, {SSE_STREAMS} streams x {events} ev (ms)"
    for i, p in ((0, "p50"), (1, "p99")):
        d, t, s = (x[i] for x in sse)
        rows.append((label.format(p), d, t, s, "{:.2f}"))
        rows.append((f"    added {p} vs direct (ms)", "-", t - d, s - d, "{:+.2f}"))
    rows.append((f"    {upload_mib} MiB uploads done meanwhile", *(x[2] for x in sse), "{:d}"))
    rows.append(("    SSE streams live at once at upstream", *(x[3] for x in sse), "{:d}"))


def memory_rows(procs, ctx, n):
    procs.stop(ctx["ssh"])
    procs.stop(ctx["client"])
    progress(f"5 memory: {n} Goinfer tunnels")
    g0, g1 = goinfer_idle_tunnels(procs, ctx, n)
    progress(f"5 memory: {n} ssh -R sessions")
    s0, s1 = sshd_idle_sessions(procs, ctx, n)
    n_peers = len(ctx["peer_ids"])
    progress(f"5 memory: {n_peers} python3-h2 peer tunnels")
    p0, p1 = peer_idle_tunnels(procs, ctx)
    gper, sper = (g1 - g0) / n, (s1 - s0) / n
    return [("5 server memory, 0 tunnels (MB)", "-", g0, s0, "{:.1f}"),
            (f"5 server memory, {n} idle tunnels (MB)", "-", g1, s1, "{:.1f}"),
            ("    per tunnel (KB)", "-", gper * 1024, sper * 1024, "{:.0f}"),
            (f"5 server memory, {n_peers:,} idle tunnels, measured (MB)", "-", p1, None,
             "{:.1f}"),
            ("    per tunnel (KB)", "-", (p1 - p0) / n_peers * 1024, None, "{:.0f}"),
            (f"    sshd extrapolated from {n} to {n_peers:,} sessions (MB)", "-", None,
             s0 + n_peers * sper, "{:.0f}")]


def reconnect_rows(procs, ctx, n_trials, first_id):
    rows = []
    for crash, sig in ((False, "SIGTERM"), (True, "SIGKILL")):
        progress(f"6 reconnect: {n_trials} trials with {sig}")
        ids = ctx["client_ids"][first_id + crash * n_trials:]
        trials = [reconnect_trial(procs, ctx, ids[i], f"rc-{sig}-{i}", crash)
                  for i in range(n_trials)]
        rows += reconnect_rows_for(sig, trials)
    return rows


def reconnect_rows_for(sig, trials):
    na = "n/a (ssh -R does not reconnect)"
    starts = [a for a, _ in trials]
    each = ", ".join(f"{a:.2f}" for a in starts)
    rows = [(f"6 reconnect after {sig}: start -> registered (s)", "-",
             statistics.median(starts), na, "{:.2f}"),
            (f"    {sig} -> registered again (s)", "-",
             statistics.median(b for _, b in trials), na, "{:.2f}"),
            (f"    {len(trials)} trials, start -> registered: {each}", "", "", "", "{}")]
    if sig == "SIGKILL" and max(starts) - min(starts) < 0.1:
        rows.append(("    (all within 100 ms: every fresh client waited the same, so the "
                     "backoff jitter is not random across clients)", "", "", "", "{}"))
    return rows


def cell(v, fmt):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return fmt.format(round(v) if fmt == "{:d}" else v)


def ratio(a, b):
    if isinstance(a, str) or isinstance(b, str) or a is None or not b:
        return ""
    return f"{a / b:.2f}x"


def print_table(rows, n_idle):
    print(f"{'row':<52} {'direct':>9} {'tunnel':>9} {'ssh -R':>9} "
          f"{'tun/dir':>8} {'ssh/dir':>8} {'tun/ssh':>8}")
    for label, d, t, s, fmt in rows:
        ratios = ("", "", "") if label.startswith(" ") else (ratio(t, d), ratio(s, d),
                                                            ratio(t, s))
        if isinstance(s, str) and len(s) > 9:  # a note, not a number: the rest of the line
            print(f"{label:<52} {cell(d, fmt):>9} {cell(t, fmt):>9} {s}")
            continue
        print(f"{label:<52} {cell(d, fmt):>9} {cell(t, fmt):>9} {cell(s, fmt):>9} "
              f"{ratios[0]:>8} {ratios[1]:>8} {ratios[2]:>8}")
    print(f"""
Notes:
- All upstreams are FAKE: rows 1-2 an nginx block answering 200 at once, rows 3-4 an asyncio
  server streaming a large body or stamped SSE events and swallowing the uploads.
- direct = the client Goinfer's own port; tunnel = the Goinfer server's plain port, down the
  TLS 1.3 + HTTP/2 reverse tunnel; ssh -R = a private sshd's forwarded port (ssh encrypts too).
  Everything runs on loopback on this machine, all at once, so ratios matter, not absolutes.
- Row 4: the uploads are JSON bodies (the model is in them), so each Goinfer on the path
  parses them; the upload loop runs back to back while the streams last. "live at once"
  under 100 means the path queued streams (a cap on concurrent streams).
- Row 5: first {n_idle} real Goinfer client processes (each its own key, allowed by the
  server); then, MEASURED, 1,000 tunnels (at scale 1) from python3-h2 peers in this process
  (tests/integ/tunnel_peer.py: TLS 1.3 with its own certificate, the upgrade, HTTP/2, a
  register line, PINGs answered), as many Goinfer processes would not fit on this machine.
  The sshd figure for that count is EXTRAPOLATED from {n_idle} sessions.
  Goinfer is one process: VmRSS. sshd forks per session: the sum of PSS over its processes.
- Row 6: medians; each trial starts a fresh client (backoff at attempt 0, as after 60 s of
  stable connection), then stops the server and starts it again. On SIGTERM the server tells
  its clients "reconnect-after 1000 ms"; after SIGKILL (a crash) the client's full-jitter
  backoff decides.
Published targets (DESIGN.md section 6): rathole ~450 MB/s (plaintext) and 7-8 MB RSS;
frp ~99 MB/s and 61-67 MB RSS; 1.7-2.1 ms added latency on loopback.""")


def parse_scale():
    try:
        scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    except ValueError:
        scale = 0
    if not 0 < scale <= 4:
        fail("the scale must be a number in (0, 4]: 1 is the full run, 0.2 a quick one")
    return scale


def run_all(procs, ctx, scale):
    n_idle, n_trials = max(5, int(50 * scale)), max(3, int(5 * scale))
    t0 = time.monotonic()
    progress("setting up")
    setup(procs, ctx, n_idle, n_trials, max(50, int(1000 * scale)))
    rows = measure(ctx, scale)
    rows += memory_rows(procs, ctx, n_idle)
    rows += reconnect_rows(procs, ctx, n_trials, 1 + n_idle)
    print_table(rows, n_idle)
    print(f"({time.monotonic() - t0:.0f} s, scale {scale})")


def on_signal(num, _frame):
    """SIGTERM and SIGINT end the run through the finally blocks, which stop everything."""
    raise SystemExit(128 + num)


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        scale = parse_scale()
        check_tools()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 1,000 peer sockets, here
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # and in the server
        procs, ctx = Procs(), {"tmp": Path(tempfile.mkdtemp(prefix="tunnel_bench."))}
        try:
            run_all(procs, ctx, scale)
        finally:
            procs.stop_all()
            shutil.rmtree(ctx["tmp"], ignore_errors=True)
            if ctx.get("made_run_sshd"):
                shutil.rmtree("/run/sshd", ignore_errors=True)
    except BenchError as e:
        sys.exit(f"tunnel_bench: {e}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--fake-upstream"]:
        asyncio.run(fake_upstream_main())
    else:
        main()
