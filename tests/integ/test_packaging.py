"""Installing and operating it as a product (issue 14): make install's files, systemd's notify
protocol played by the test (systemd is not PID 1 here: DESIGN.md section 8), and make run's
prerequisite check as a user who is not root."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from conftest import BUILD, ROOT, need


def test_make_install_destdir_installs_exactly_the_listed_files(tmp_path):
    dest = tmp_path / "dest"
    # install is build then install-files; the files from the build under test, not rebuilt
    # (make's build would reconfigure an ASan build folder as RelWithDebInfo)
    p = subprocess.run(["make", "-n", "install"], cwd=ROOT, capture_output=True, text=True)
    assert "cmake --build" in p.stdout and "install-files" in p.stdout, p.stdout
    p = subprocess.run(["make", "-s", "install-files", f"BUILD={BUILD}", f"DESTDIR={dest}",
                        "PREFIX=/usr"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    found = sorted(str(f.relative_to(dest)) for f in dest.rglob("*") if not f.is_dir())
    assert found == sorted([
        "usr/bin/goinfer",
        "usr/lib/systemd/system/goinfer.service",
        "usr/lib/sysusers.d/goinfer.conf",
        "usr/share/goinfer/goinfer.example.yml",
        "usr/share/man/man1/goinfer.1",
    ]), found
    assert os.access(dest / "usr/bin/goinfer", os.X_OK)
    unit = (dest / "usr/lib/systemd/system/goinfer.service").read_text()
    for line in ("Type=notify", "NotifyAccess=all", "ExecStart=/usr/bin/goinfer -config ",
                 "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict",
                 "StateDirectory=goinfer", "Environment=GI_STATE_DIR=/var/lib/goinfer",
                 "NoNewPrivileges=yes", "User=goinfer", "WatchdogSec="):
        assert re.search(r"^" + re.escape(line), unit, re.M), line
    assert "@" not in unit.replace("$MAINPID", "")  # every placeholder filled in
    # the man page names every signal and every variable -help lists
    man = (dest / "usr/share/man/man1/goinfer.1").read_text()
    helptext = subprocess.run([need(BUILD / "goinfer"), "-help"], capture_output=True,
                              text=True).stderr
    for var in re.findall(r"^  ((?:GI|GOINFER)_[A-Z_]+)", helptext, re.M):
        assert var.replace("_", "_") in man.replace("\\", ""), var
    for word in ("SIGHUP", "SIGUSR2", "SIGTERM", "EXIT STATUS", "FILES", "-config"):
        assert word in man.replace("\\-", "-"), word
    # the example config loads (a key set, no model needed to check it)
    cfg = tmp_path / "goinfer.yml"
    cfg.write_text((dest / "usr/share/goinfer/goinfer.example.yml").read_text()
                   .replace("PLEASE SET a key: openssl rand -hex 32", "k" * 32)
                   .replace("/srv/models", str(tmp_path)))
    p = subprocess.run([need(BUILD / "goinfer"), "-config", str(cfg), "-write", "-no-api-key"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30,
                       env={**os.environ, "GI_LLAMA_EXE": "/bin/true"})
    assert "goinfer.yml:" not in p.stderr, p.stderr


class NotifySocket:
    """systemd's side of the notify protocol: a datagram socket the test binds."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address if address[0] != "@" else "\0" + address[1:])
        self.sock.settimeout(0.2)
        self.messages = []

    def wait(self, key, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if key in m:
                    return m
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        raise AssertionError(f"no {key} in {self.messages}")

    def collect(self, seconds):
        """Receives for that long; returns the messages that came meanwhile."""
        start = len(self.messages)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return self.messages[start:]


def notify_run(tmp_path, models_dir, start_goinfer, address, watchdog_usec=None):
    ns = NotifySocket(address)
    env = {"NOTIFY_SOCKET": address}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    g = start_goinfer(models_dir, env=env)
    ready = ns.wait("READY=1")
    assert f"MAINPID={g.proc.pid}" in ready, ready
    assert re.search(r"STATUS=\d+ models; running: none", ready), ready
    return ns, g


def test_notify_ready_status_watchdog_stopping(tmp_path, models_dir, start_goinfer):
    ns, g = notify_run(tmp_path, models_dir, start_goinfer, str(tmp_path / "notify.sock"),
                       watchdog_usec=400000)
    # a model started: the status line says so at the next tick
    from conftest import auth
    r = httpx.post(g.url() + "/v1/chat/completions", headers=auth(), timeout=60,
                   json={"model": "tiny-a", "max_tokens": 2,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    ns.wait("running: tiny-a (ready)")
    got = ns.collect(1.2)
    n = sum("WATCHDOG=1" in m for m in got)
    assert 3 <= n <= 9, got  # every 200 ms (half of 400 ms), on a busy machine give or take
    g.proc.send_signal(signal.SIGHUP)
    ns.wait("RELOADING=1")
    assert g.stop() == 0
    stopping = ns.wait("STOPPING=1")
    assert "STOPPING=1" in stopping


def test_notify_abstract_socket_without_watchdog(tmp_path, models_dir, start_goinfer):
    name = f"@goinfer-test-{os.getpid()}-{time.monotonic_ns()}"
    ns, g = notify_run(tmp_path, models_dir, start_goinfer, name)
    ns.collect(0.5)
    assert not any("WATCHDOG=1" in m for m in ns.messages), ns.messages
    assert g.stop() == 0
    ns.wait("STOPPING=1")


def test_graceful_restart_sends_mainpid_from_the_new_process(tmp_path, models_dir,
                                                           start_goinfer):
    ns, g = notify_run(tmp_path, models_dir, start_goinfer, str(tmp_path / "notify.sock"))
    g.proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = {int(m) for m in re.findall(r"MAINPID=(\d+)", "\n".join(ns.messages))}
        if len(pids) == 2:
            break
        try:
            ns.messages.append(ns.sock.recv(4096).decode())
        except socket.timeout:
            pass
    pids = re.findall(r"MAINPID=(\d+)", "\n".join(ns.messages))
    assert len(set(pids)) == 2, ns.messages
    new = int(pids[-1])
    assert g.proc.wait(60) == 0  # the old one hands over and exits, with no STOPPING=1
    assert not any("STOPPING=1" in m for m in ns.messages), ns.messages
    os.kill(new, signal.SIGTERM)
    ns.wait("STOPPING=1")


def run_as_nobody(args, path_dir=None, timeout=60):
    """scripts/setup.sh as the user nobody, with path_dir first in PATH when given."""
    path = (f"{path_dir}:" if path_dir else "") + "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    # the llama-server step is tested by make setup itself; nobody cannot read root's cache
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", "env", "-i", f"PATH={path}", "HOME=/nonexistent",
         "GI_LLAMA_EXE=/bin/true", "bash", str(ROOT / "scripts" / "setup.sh"), *args],
        capture_output=True, text=True, timeout=timeout)


def test_make_run_prerequisites_as_a_user_who_is_not_root(tmp_path):
    if os.geteuid() != 0:
        raise AssertionError("this test needs root to become the user nobody (runuser)")
    p = run_as_nobody(["run"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "debian packages: all" in p.stdout and "apt-get" not in p.stdout + p.stderr
    # the run set-up asks for no test tool (no chromium, nginx, sshd...)
    text = (ROOT / "scripts" / "setup.sh").read_text()
    run_list = re.search(r"RUN_PACKAGES=\(([^)]*)\)", text).group(1).split()
    for tool in ("chromium", "nginx-light", "openssh-server", "wrk", "hyperfine",
                 "python3-pytest", "podman"):
        assert tool not in run_list, tool
    # something missing: the one apt-get line to run, and no attempt to install
    fake = Path(tempfile.mkdtemp(prefix="goinfer-fake-dpkg-"))
    fake.chmod(0o755)
    (fake / "dpkg-query").write_text(
        "#!/bin/sh\nfor a; do last=$a; done\n"
        "case $last in libuv1-dev|libyaml-dev) exit 1;; esac\n"
        "exec /usr/bin/dpkg-query \"$@\"\n")
    (fake / "dpkg-query").chmod(0o755)
    try:
        p = run_as_nobody(["run"], path_dir=fake)
    finally:
        shutil.rmtree(fake)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = [l for l in p.stderr.splitlines() if "apt-get install" in l]
    assert lines == ["  sudo apt-get install -y --no-install-recommends libuv1-dev libyaml-dev"], \
        p.stderr
