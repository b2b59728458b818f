"""Network namespaces for the tunnel tests: each server, each GPU client and the end user get
their own, joined by veth pairs, so a client really has no inbound route (it listens on its
own loopback only) and a path can be blackholed with iptables. Made and removed by the test.
"""
import itertools
import os
import subprocess
from pathlib import Path

from conftest import API_KEY, Goinfer, llama_exe

TOKEN = "tunnel-token-0123456789abcdef"
_subnet = itertools.count(1)


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def make_identity(d, name):
    """A self-signed EC certificate and key, and the key's pin as goinfer writes it."""
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}")
    return cert, key, pin_of(cert)


def pin_of(cert):
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            check=True, capture_output=True).stdout
    import base64
    return "sha256/" + base64.b64encode(digest).decode()


class Net:
    def __init__(self):
        self.tag = f"{os.getpid() % 10000}{next(_subnet)}"
        self.names = []

    def ns(self, role):
        name = f"gi{self.tag}{role}"
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        self.names.append(name)
        return name

    def link(self, a, b):
        """A veth pair between namespaces a and b; returns (address in a, address in b)."""
        n = next(_subnet) % 250 + 1
        va, vb = f"v{self.tag}{n}a", f"v{self.tag}{n}b"
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        sh("ip", "link", "set", va, "netns", a)
        sh("ip", "link", "set", vb, "netns", b)
        ip_a, ip_b = f"10.{77 + n // 250}.{n}.1", f"10.{77 + n // 250}.{n}.2"
        sh("ip", "-n", a, "addr", "add", f"{ip_a}/24", "dev", va)
        sh("ip", "-n", b, "addr", "add", f"{ip_b}/24", "dev", vb)
        sh("ip", "-n", a, "link", "set", va, "up")
        sh("ip", "-n", b, "link", "set", vb, "up")
        return ip_a, ip_b

    def hosts(self, ns, text):
        """/etc/hosts as seen inside ns (ip netns exec mounts /etc/netns/<ns>/hosts over it)."""
        d = Path("/etc/netns") / ns
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts").write_text("127.0.0.1 localhost\n" + text)

    def blackhole(self, ns, peer_ip):
        """Drops every packet to and from peer_ip: a dead path, no RST, no FIN."""
        sh("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", peer_ip, "-j", "DROP")
        sh("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", peer_ip, "-j", "DROP")

    def curl(self, ns, *args, timeout=60):
        return subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", *args],
                              capture_output=True, text=True, timeout=timeout)

    def popen_curl(self, ns, *args):
        return subprocess.Popen(["ip", "netns", "exec", ns, "curl", "-sSN", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def cleanup(self):
        for name in self.names:
            sh("ip", "netns", "del", name, check=False)
            etc = Path("/etc/netns") / name
            if etc.exists():
                (etc / "hosts").unlink(missing_ok=True)
                etc.rmdir()


class Nodes:
    """Starts goinfer servers and clients inside namespaces; stops them at the end."""

    def __init__(self, net, tmp):
        self.net, self.tmp, self.procs = net, tmp, []
        self.certs = tmp / "certs"
        self.certs.mkdir(exist_ok=True)

    def _run(self, ns, name, yml, env=None):
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        cfg = d / "goinfer.yml"
        cfg.write_text(yml)
        e = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
        e["GI_LLAMA_EXE"] = llama_exe()
        e.update(env or {})
        g = Goinfer(["-config", str(cfg)], e, d, prefix=["ip", "netns", "exec", ns])
        self.procs.append(g)
        return g

    def server(self, ns, ip, clients, name="server", identity=None, extra=""):
        """A server listening on every address of its namespace; ip is the one users call."""
        cert, key, pin = identity or make_identity(self.certs, name)
        pins = ", ".join(f'"{p}"' for p in clients)
        (self.tmp / "empty").mkdir(exist_ok=True)  # before goinfer starts: it reads it at once
        g = self._run(ns, name,
                      f"api_key: {API_KEY}\nmodels_dir: {self.tmp / 'empty'}\n"
                      f"listen:\n  \"0.0.0.0:8443\": goinfer, tls\n  \"0.0.0.0:8080\": goinfer\n"
                      f"tls: {{cert: {cert}, key: {key}}}\n"
                      f"server:\n  token: {TOKEN}\n  clients: [{pins}]\n"
                      f"  ping_interval: 1\n  ping_timeout: 1\n" + extra)
        g.pin, g.api, g.identity = pin, f"http://{ip}:8080", (cert, key, pin)
        return g.wait_ready()

    def client(self, ns, name, models, servers, identity, env=None, token=TOKEN, slots=64,
               extra=""):
        """servers: (address or name, pin) pairs, each dialled on port 8443."""
        cert, key, _ = identity
        srv = "".join(f"    - {{url: \"https://{ip}:8443\", pin: \"{pin}\", token: {token}}}\n"
                      for ip, pin in servers)
        return self._run(ns, name,
                         f"api_key: local-{API_KEY}\nmodels_dir: {models}\n"
                         f"listen:\n  \"127.0.0.1:0\": goinfer\n"
                         f"llama:\n  args:\n    common: -c 512 -np 2 --no-warmup\n"
                         f"client:\n  cert: {cert}\n  key: {key}\n  ping_interval: 1\n"
                         f"  slots: {slots}\n"
                         f"  ping_timeout: 1\n  servers:\n{srv}" + extra, env).wait_ready()

    def identity(self, name):
        return make_identity(self.certs, name)

    def stop_all(self):
        problems = []
        for g in self.procs:
            if g.proc.poll() is not None:
                continue
            rc = g.stop()
            if rc != 0 or "Sanitizer" in g.log() or "runtime error" in g.log():
                problems.append(f"goinfer exited with {rc}:\n{g.log()}")
        return problems
