"""The admin API's settings (issue 12): goinfer.yml and llama-swap.yml read, validated by the
process's own loader, saved (backup, atomic write, reload) with optimistic concurrency, each
model's llama-server arguments edited where they are defined, and the graceful restart that
hands the listening sockets to a new process (no connection refused, streams finish)."""
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, auth, llama_exe, mkmodel


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):
    """Models of this module only: an args edit writes a .sh beside a model file."""
    d = tmp_path_factory.mktemp("settings-models")
    mkmodel(d / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
    mkmodel(d / "tiny-b.gguf", "-n", "tiny-b", "-s", "2")
    # long: a context for thousands of tokens and enough layers for them to take seconds
    mkmodel(d / "long.gguf", "-n", "long", "-s", "3", "-c", "4096", "-l", "8", "-e", "256")
    return d


def goinfer_yml(models, common="-c 512 -np 2 --no-warmup"):
    return (f"models_dir: {models}\n"
            f"api_key: {API_KEY}\n"
            "listen:\n"
            "  \"127.0.0.1:0\": goinfer\n"
            "  \"127.0.0.2:0\": openai\n"
            "llama:\n"
            "  args:\n"
            f"    common: {common}\n")


def swap_yml(models, extra=""):
    return ("# llama-swap's file: comments stay where they are\n"
            "models:\n"
            "  swapped:\n"
            f"    cmd: {llama_exe()} --host 127.0.0.1 --port ${{PORT}} -m {models}/tiny-b.gguf"
            " -c 512 --no-warmup\n" + extra)


def start(tmp_path, own_models, start_goinfer, common="-c 512 -np 2 --no-warmup", **kw):
    (tmp_path / "goinfer.yml").write_text(goinfer_yml(own_models, common))
    (tmp_path / "llama-swap.yml").write_text(swap_yml(own_models))
    return start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False,
                         **kw)


def files(client, g):
    r = client.get(g.url() + "/api/config", headers=auth())
    assert r.status_code == 200, r.text
    return {f["name"]: f for f in r.json()["files"]}


def ids(client, g):
    r = client.get(g.url() + "/v1/models", headers=auth())
    return sorted(m["id"] for m in r.json()["data"])


def chat(client, url, model, **kw):
    return client.post(url + "/v1/chat/completions", headers=auth(),
                       json={"model": model, "max_tokens": 2,
                             "messages": [{"role": "user", "content": "hi"}], **kw})


def test_read_validate_save_diff(tmp_path, own_models, start_goinfer, client):
    g = start(tmp_path, own_models, start_goinfer)
    f = files(client, g)
    assert f["goinfer.yml"]["path"] == str(tmp_path / "goinfer.yml")
    assert f["goinfer.yml"]["text"] == (tmp_path / "goinfer.yml").read_text()
    assert f["llama-swap.yml"]["exists"] and f["llama-swap.yml"]["in_force"]
    assert len(f["goinfer.yml"]["hash"]) == 64
    # the admin key guards it
    assert client.get(g.url() + "/api/config").status_code == 401

    # a syntax error: at its line, in the file it is in; an unknown key in llama-swap.yml is a
    # warning there
    bad = f["goinfer.yml"]["text"] + "llama_bad: [unclosed\n"
    r = client.post(g.url() + "/api/config/validate", headers=auth(),
                    json={"file": "goinfer.yml", "text": bad})
    assert r.status_code == 200, r.text
    v = r.json()
    assert not v["ok"] and v["errors"][0]["file"] == "goinfer.yml", v
    assert v["errors"][0]["line"] in (9, 10), v
    r = client.post(g.url() + "/api/config/validate", headers=auth(),
                    json={"file": "llama-swap.yml", "text": swap_yml(own_models, "shiny: 1\n")})
    v = r.json()
    assert v["ok"] and any(w["line"] == 5 and "shiny" in w["message"] for w in v["warnings"]), v
    r = client.post(g.url() + "/api/config/validate", headers=auth(),
                    json={"file": "goinfer.yml", "text": f["goinfer.yml"]["text"] + "tll: 3\n"})
    v = r.json()
    assert not v["ok"] and v["errors"][0]["line"] == 9 and "unknown key 'tll'" in \
        v["errors"][0]["message"], v
    assert not list(tmp_path.glob(".goinfer-check-*")), "the check folder was left behind"

    # PUT invalid: 422 with the error at its line, nothing written, the old config serves
    r = client.put(g.url() + "/api/config/goinfer.yml", headers=auth(),
                   json={"text": bad, "base_hash": f["goinfer.yml"]["hash"]})
    assert r.status_code == 422 and r.json()["errors"][0]["line"] in (9, 10), r.text
    assert (tmp_path / "goinfer.yml").read_text() == f["goinfer.yml"]["text"]
    assert chat(client, g.url(), "tiny-a").status_code == 200
    g.wait_log(r"audit: config.save goinfer.yml by api_key from 127.0.0.1.*: 422")

    # PUT valid: a backup, the file replaced (mode kept), reloaded, the change visible
    os.chmod(tmp_path / "llama-swap.yml", 0o640)
    new = swap_yml(own_models) + "    aliases: [swift]\n"
    r = client.put(g.url() + "/api/config/llama-swap.yml", headers=auth(),
                   json={"text": new, "base_hash": f["llama-swap.yml"]["hash"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["reload"]["taken"], out
    assert "+    aliases: [swift]" in out["diff"] and out["diff"].startswith("--- a/"), out
    backup = Path(out["backup"])
    assert backup.parent == tmp_path and backup.name.startswith("llama-swap.yml.bak.")
    assert backup.read_text() == f["llama-swap.yml"]["text"]
    assert (tmp_path / "llama-swap.yml").read_text() == new
    assert (tmp_path / "llama-swap.yml").stat().st_mode & 0o777 == 0o640
    r = chat(client, g.url(), "swift")
    assert r.status_code == 200, r.text + g.log()
    assert files(client, g)["llama-swap.yml"]["in_force"]

    # 409: the base_hash is stale (the file changed since it was read)
    r = client.put(g.url() + "/api/config/llama-swap.yml", headers=auth(),
                   json={"text": swap_yml(own_models), "base_hash": f["llama-swap.yml"]["hash"]})
    assert r.status_code == 409 and r.json()["hash"] == out["hash"], r.text
    assert (tmp_path / "llama-swap.yml").read_text() == new

    # the diff: saved by hand but not taken (a reload refused) shows what is not in force
    g.proc.send_signal(signal.SIGSTOP)  # so the watcher cannot try it before we look
    try:
        (tmp_path / "goinfer.yml").write_text(f["goinfer.yml"]["text"] + "tll: 3\n")
    finally:
        g.proc.send_signal(signal.SIGCONT)
    g.wait_log(r"reload \(configuration file changed\) refused", timeout=10)
    r = client.get(g.url() + "/api/config/diff", headers=auth())
    d = r.json()
    assert not d["same"], d
    gi = next(x for x in d["files"] if x["name"] == "goinfer.yml")
    assert "+tll: 3" in gi["diff"] and not gi["same"], d
    assert chat(client, g.url(), "swift").status_code == 200


def test_backups_are_bounded(tmp_path, own_models, start_goinfer, client):
    g = start(tmp_path, own_models, start_goinfer)
    for i in range(12):
        h = files(client, g)["llama-swap.yml"]["hash"]
        r = client.put(g.url() + "/api/config/llama-swap.yml", headers=auth(),
                       json={"text": swap_yml(own_models) + f"# save {i}\n", "base_hash": h})
        assert r.status_code == 200 and r.json()["reload"]["taken"], r.text
    backups = sorted(tmp_path.glob("llama-swap.yml.bak.*"))
    assert len(backups) == 10, backups
    assert backups[-1].read_text().endswith("# save 10\n")


def running_argv(client, g, model):
    r = client.get(g.url() + "/running", headers=auth())
    for m in r.json()["running"]:
        if m["model"] == model:
            return m
    return None


def test_model_args_llama_swap_and_discovered(tmp_path, own_models, start_goinfer, client):
    g = start(tmp_path, own_models, start_goinfer)
    # a llama-swap model: its cmd's words, the program and reserved flags kept
    r = client.get(g.url() + "/api/models/swapped/args", headers=auth())
    a = r.json()
    assert r.status_code == 200 and a["source"] == "llama-swap.yml", r.text
    assert a["args"] == "-c 512 --no-warmup", a
    assert a["keep"].endswith(f"--host 127.0.0.1 --port ${{PORT}} -m {own_models}/tiny-b.gguf")
    assert chat(client, g.url(), "swapped").status_code == 200
    n = len(g.lines)
    r = client.put(g.url() + "/api/models/swapped/args", headers=auth(),
                   json={"args": "-c 256 --no-warmup --temp '0.5'"})
    out = r.json()
    assert r.status_code == 200 and out["reload"]["taken"], r.text
    text = (tmp_path / "llama-swap.yml").read_text()
    assert text.startswith("# llama-swap's file: comments stay where they are\n"), text
    assert f"-m {own_models}/tiny-b.gguf -c 256 --no-warmup --temp 0.5\"" in text, text
    assert chat(client, g.url(), "swapped").status_code == 200
    m = g.wait_log(r"model swapped: starting: (.*)", start=n)
    assert "-c 256" in m.group(1) and "--temp 0.5" in m.group(1), m.group(0)
    # a reserved flag is refused: Goinfer sets the port
    r = client.put(g.url() + "/api/models/swapped/args", headers=auth(),
                   json={"args": "--port 1"})
    assert r.status_code == 422 and "--port" in r.text, r.text

    # a discovered model: its <stem>.sh beside the file, as the seed keeps flags
    assert chat(client, g.url(), "tiny-a").status_code == 200
    r = client.get(g.url() + "/api/models/tiny-a/args", headers=auth())
    assert r.json()["source"] == "script" and r.json()["args"] == "", r.text
    n = len(g.lines)
    r = client.put(g.url() + "/api/models/tiny-a/args", headers=auth(),
                   json={"args": "--temp 0.25 --top-k 7"})
    assert r.status_code == 200 and r.json()["reload"]["taken"], r.text
    sh = own_models / "tiny-a.sh"
    try:
        assert "--temp" in sh.read_text()
        assert r.json()["path"] == str(sh)
        assert chat(client, g.url(), "tiny-a").status_code == 200
        m = g.wait_log(r"model tiny-a: starting: (.*)", start=n)
        assert "--temp 0.25 --top-k 7" in m.group(1), m.group(0)
        assert client.get(g.url() + "/api/models/tiny-a/args",
                          headers=auth()).json()["args"] == "--temp 0.25 --top-k 7"
        assert client.get(g.url() + "/api/models/nope/args", headers=auth()).status_code == 404
    finally:
        sh.unlink()
        for b in own_models.glob("tiny-a.sh.bak.*"):
            b.unlink()


def pid_alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_graceful_restart_under_load(tmp_path, own_models, start_goinfer, client):
    g = start(tmp_path, own_models, start_goinfer, common="-c 2048 -np 1 --no-warmup")
    host, port = g.ports["goinfer"]
    old = g.proc.pid
    assert chat(client, g.url(), "long").status_code == 200

    # a client opening a new connection every few ms for the whole restart
    stop = threading.Event()
    results = {"ok": 0, "refused": 0, "other": []}

    def hammer():
        """A fresh connection each time, a request, the whole answer: ~1 ms a round."""
        req = f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        while not stop.is_set():
            try:
                with socket.create_connection((host, port), timeout=10) as sock:
                    sock.sendall(req)
                    got = b""
                    while True:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        got += chunk
                if got.startswith(b"HTTP/1.1 200"):
                    results["ok"] += 1
                else:
                    results["other"].append(got[:80])
            except ConnectionRefusedError as e:
                results["refused"] += 1
                results["other"].append(repr(e))
            except OSError as e:
                results["other"].append(repr(e))
            time.sleep(0.003)

    # a long streaming chat across the restart
    stream = {"text": "", "done": False, "error": None, "lines": 0}

    def long_chat():
        try:
            with httpx.Client(timeout=60) as c:
                with c.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                              json={"model": "long", "stream": True, "max_tokens": 300,
                                    "ignore_eos": True,
                                    "messages": [{"role": "user", "content": "go"}]}) as r:
                    for line in r.iter_lines():
                        stream["text"] += line + "\n"
                        stream["lines"] += 1
                    stream["done"] = "data: [DONE]" in stream["text"]
        except Exception as e:  # noqa: BLE001 (reported below)
            stream["error"] = repr(e)

    threads = [threading.Thread(target=hammer), threading.Thread(target=long_chat)]
    for t in threads:
        t.start()
    while stream["lines"] < 10 and stream["error"] is None:  # the stream has begun
        time.sleep(0.01)
    n = len(g.lines)
    r = client.post(g.url() + "/api/restart", headers=auth())
    assert r.status_code == 202 and r.json()["pid"] == old, r.text
    m = g.wait_log(r"goinfer ready: \d+ models \(pid (\d+)\)", start=n, timeout=30)
    new = int(m.group(1))
    assert new != old
    g.wait_log(r"restart: pid %d listens" % new, start=n)
    try:
        assert g.proc.wait(70) == 0, g.log()  # the old process finished its streams and left
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(60)
        assert stream["done"] and stream["error"] is None, (stream["text"][-300:], stream["error"])
        # it ran across the hand-off: it ended in the old process after the new one listened
        done_at = next(i for i, l in enumerate(g.lines)
                       if i > n and "POST /v1/chat/completions model=long" in l)
        ready_at = next(i for i, l in enumerate(g.lines) if "restart: pid %d listens" % new in l)
        assert done_at > ready_at, "\n".join(g.lines)
        assert results["refused"] == 0 and not results["other"], (results, g.log())
        assert results["ok"] > 20, results
        # the new process serves: a chat, the admin API, and it holds the same port
        r = chat(client, f"http://{host}:{port}", "tiny-a")
        assert r.status_code == 200, r.text
        r = client.get(f"http://{host}:{port}/health", headers=auth())
        assert r.status_code == 200
        assert f"listening on {host}:{port}" in "\n".join(g.lines[n:])
        # SIGUSR2 does the same from a shell
        n = len(g.lines)
        os.kill(new, signal.SIGUSR2)
        m = g.wait_log(r"goinfer ready: \d+ models \(pid (\d+)\)", start=n, timeout=30)
        newer = int(m.group(1))
        g.wait_log(r"goinfer stopped", start=n, timeout=30)
        assert newer != new
        assert chat(client, f"http://{host}:{port}", "tiny-a").status_code == 200
        new = newer
    finally:
        stop.set()
        if pid_alive(new):
            os.kill(new, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(new) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(new), "the new goinfer did not stop"
    log = g.log()
    assert "Sanitizer" not in log and "runtime error" not in log, log


def test_listeners_not_inherited_by_children(tmp_path, own_models, start_goinfer, client):
    """After a restart, the adopted listening sockets are close-on-exec: llama-server (and the
    guard processes) of the new process hold none of them."""
    g = start(tmp_path, own_models, start_goinfer)
    n = len(g.lines)
    os.kill(g.proc.pid, signal.SIGUSR2)
    m = g.wait_log(r"goinfer ready: \d+ models \(pid (\d+)\)", start=n, timeout=30)
    new = int(m.group(1))
    try:
        assert g.proc.wait(30) == 0
        assert chat(client, g.url(), "tiny-a").status_code == 200
        listeners = set()
        for fd in os.listdir(f"/proc/{new}/fd"):
            try:
                link = os.readlink(f"/proc/{new}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:"):
                listeners.add(link)
        kids = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                _ppid(int(p)) == new]
        assert kids, "no child of the new goinfer"
        for k in kids:
            for fd in os.listdir(f"/proc/{k}/fd"):
                try:
                    link = os.readlink(f"/proc/{k}/fd/{fd}")
                except OSError:
                    continue
                assert not (link.startswith("socket:") and link in listeners and
                            _is_listening(link)), (k, fd, link)
    finally:
        os.kill(new, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(new) and time.monotonic() < deadline:
            time.sleep(0.05)


def _ppid(pid):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _is_listening(link):
    inode = link[len("socket:["):-1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[9] == inode and cols[3] == "0A":  # LISTEN
                return True
    return False


def test_restart_that_cannot_start_keeps_serving(tmp_path, own_models, start_goinfer, client):
    """The file on disk no longer loads (saved by hand; the reload was refused): the new
    process dies at start, the old one says so and keeps serving on the same sockets."""
    g = start(tmp_path, own_models, start_goinfer)
    g.proc.send_signal(signal.SIGSTOP)  # the watcher must not try the file before the restart
    try:
        (tmp_path / "goinfer.yml").write_text(goinfer_yml(own_models) + "tll: 3\n")
    finally:
        g.proc.send_signal(signal.SIGCONT)
    g.wait_log(r"reload \(configuration file changed\) refused", timeout=10)
    n = len(g.lines)
    r = client.post(g.url() + "/api/restart", headers=auth())
    assert r.status_code == 202, r.text
    g.wait_log(r"restart failed: the new process ended before it listened", start=n)
    assert g.proc.poll() is None
    assert chat(client, g.url(), "tiny-a").status_code == 200
    assert client.get(g.url() + "/health").status_code == 200


def wait_gone(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def test_restart_of_a_gpu_client_and_of_a_server_keeps_server_client_mode(tmp_path,
                                                                         tmp_path_factory):
    """Server/client mode in network namespaces (tests/integ/tunnel_net.py): a restarted GPU
    client dials its server again from the new process; a restarted server gets the client
    back on the sockets it handed on; a chat through the server works after each."""
    from tunnel_net import Net, Nodes

    gpu = tmp_path_factory.mktemp("restart-gpu")
    mkmodel(gpu / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
    body = json.dumps({"model": "tiny-a", "stream": True, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "Hi"}]})
    net = Net()
    nodes = Nodes(net, tmp_path)
    extra = []
    try:
        s, u, c = net.ns("s"), net.ns("u"), net.ns("c0")
        s_user, _ = net.link(s, u)
        s_ip, _ = net.link(s, c)
        ident = nodes.identity("gpu1")
        srv = nodes.server(s, s_user, [ident[2]])
        cli = nodes.client(c, "gpu1", gpu, [(s_ip, srv.pin)], ident)
        srv.wait_log(r"registered: tiny-a")
        for g in (cli, srv):  # the GPU client first, then the server
            n_srv, n = len(srv.lines), len(g.lines)
            os.kill(g.proc.pid, signal.SIGUSR2)
            new = int(g.wait_log(r"goinfer ready: \d+ models \(pid (\d+)\)", start=n).group(1))
            extra.append(new)
            assert g.proc.wait(30) == 0, g.log()
            srv.wait_log(r"registered: tiny-a", start=n_srv, timeout=30)
            r = net.curl(u, "-H", f"Authorization: Bearer {API_KEY}",
                         f"{srv.api}/v1/chat/completions", "-d", body)
            assert "data: [DONE]" in r.stdout, (r.stdout, r.stderr, srv.log(), cli.log())
        for g in (srv, cli):
            log = g.log()
            assert "Sanitizer" not in log and "runtime error" not in log, log
    finally:
        for pid in extra:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        gone = [wait_gone(pid) for pid in extra]
        problems = nodes.stop_all()
        net.cleanup()
    assert all(gone), "a restarted goinfer did not stop"
    assert not problems, "\n".join(problems)
