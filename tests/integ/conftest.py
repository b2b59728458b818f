"""Harness: starts the real goinfer binary in front of the real llama-server and tiny models.

Everything runs on 127.0.0.1 with ports chosen by the kernel (goinfer logs the ports it got).
A missing prerequisite fails the test with a message; nothing is skipped.
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Goinfers started by hand (their GI_ variables stripped) keep their admin store here, never in
# the real home's ~/.local/state.
os.environ["XDG_STATE_HOME"] = (tempfile.mkdtemp(prefix="goinfer-state-"))
BUILD = (ROOT / os.environ.get("GOINFER_BUILD", "build")).resolve()
GOINFER = BUILD / "goinfer"
MKMODEL = BUILD / "mkmodel"
CACHE = Path(os.environ.get("GOINFER_CACHE", Path.home() / ".cache" / "goinfer"))
API_KEY = "test-key-0123456789abcdef"


def llama_exe():
    exe = os.environ.get("GI_LLAMA_EXE") or str(CACHE / "llama-current" / "bin" / "llama-server")
    if not os.access(exe, os.X_OK):
        pytest.fail(f"llama-server not found at {exe}: run `make setup` (or set GI_LLAMA_EXE)")
    return exe


def need(path):
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: run `make build`")
    return str(path)


def mkmodel(out, *args):
    subprocess.run([need(MKMODEL), *args, "-o", str(out)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """tiny-a and tiny-b (different seeds), a 3-shard model, and a corrupt one."""
    d = tmp_path_factory.mktemp("models")
    mkmodel(d / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
    (d / "sub").mkdir()
    mkmodel(d / "sub" / "tiny-b.gguf", "-n", "tiny-b", "-s", "2")
    mkmodel(d / "split.gguf", "-n", "split", "-s", "3", "--split", "3")
    (d / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    return d


class Goinfer:
    """One goinfer process; log lines are collected as they come."""

    def __init__(self, args, env, cwd, prefix=()):
        self.lines = []
        self.cond = threading.Condition()
        env = dict(env)
        env.setdefault("GI_STATE_DIR", str(Path(cwd) / "state"))  # never the real home's store
        self.proc = subprocess.Popen(
            [*prefix, need(GOINFER), *args], env=env, cwd=cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.ports = {}

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_log(self, pattern, timeout=30, start=0):
        """Returns the first match of pattern in the log lines from index start."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(f"no log line /{pattern}/ in:\n" + self.log())
                self.cond.wait(min(left, 0.2))

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_ready(self):
        self.wait_log(r"goinfer ready")
        for m in re.finditer(r"listening on ([^ ]+):(\d+) \(([^)]*)\)", self.log()):
            for service in m.group(3).split():  # the last listener of each service
                self.ports[service] = (m.group(1), int(m.group(2)))
        return self

    def url(self, service="goinfer"):
        host, port = self.ports[service]
        return f"http://{host}:{port}"

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("goinfer did not stop within %ds:\n%s" % (timeout, self.log()))


def stop_clean(g):
    """Stops g and asserts it exited 0 with no sanitizer report."""
    rc = g.stop()
    log = g.log()
    assert rc == 0 and "Sanitizer" not in log and "runtime error" not in log, \
        f"goinfer exited with {rc}:\n{log}"


def write_config(path, models_dir, extra=""):
    path.write_text(
        f"models_dir: {models_dir}\n"
        f"api_key: {API_KEY}\n"
        "listen:\n"
        "  \"127.0.0.1:0\": goinfer\n"
        "  \"127.0.0.2:0\": openai\n"
        "llama:\n"
        "  args:\n"
        "    common: -c 512 -np 2 --no-warmup\n" + extra)


@pytest.fixture
def start_goinfer(tmp_path):
    """Factory: start_goinfer(models_dir, args=[], env={}) -> running Goinfer."""
    started = []

    def start(models, args=(), env=None, ready=True, config=True, extra="", prefix=()):
        e = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
        e["GI_LLAMA_EXE"] = llama_exe()
        e["GI_STATE_DIR"] = str(tmp_path / "state")  # the admin store, per test
        e.update(env or {})
        argv = list(args)
        if config:
            cfg = tmp_path / f"goinfer-{len(started)}.yml"
            write_config(cfg, models, extra)
            argv = ["-config", str(cfg), *argv]
        g = Goinfer(argv, e, tmp_path, prefix)
        started.append(g)
        return g.wait_ready() if ready else g

    yield start
    problems = []
    for g in started:
        if g.proc.poll() is not None:
            continue  # the test ended it on purpose and checked what it wanted
        rc = g.stop()
        if rc != 0 or "Sanitizer" in g.log() or "runtime error" in g.log():
            problems.append(f"goinfer exited with {rc} on SIGTERM:\n{g.log()}")
    assert not problems, "\n".join(problems)


def seconds_until_gone(gone, left):
    """How long after `left` (time.time()) the FAKE llama-server noticed its client had gone:
    it writes that moment to the file `gone`."""
    deadline = time.monotonic() + 5
    while not gone.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert gone.exists(), "the fake llama-server never saw its request end"
    return float(gone.read_text()) - left


def auth():
    return {"Authorization": f"Bearer {API_KEY}"}


def children_of(pid):
    """Process ids whose parent is pid (llama-server runs under a launcher that execs it)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(p.name))
    return out


def alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def client():
    with httpx.Client(timeout=60) as c:
        yield c
