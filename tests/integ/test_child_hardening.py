"""Issue 9, the children's side: what a file name, a wrapper cmd, Goinfer's environment or a
projector beside a model can do to the processes Goinfer starts."""
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import API_KEY, alive, auth, children_of, mkmodel

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}


def chat(client, g, model):
    return client.post(g.url() + "/v1/chat/completions", headers=auth(), json=dict(CHAT, model=model))


def running(client, g):
    return {x["model"]: x for x in client.get(g.url() + "/running", headers=auth()).json()["running"]}


def listeners(port):
    """The local addresses (hex, as /proc/net/tcp{,6} write them) listening on port."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                out.append(addr)
    return out


def cmdline(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]


def environ(pid):
    return dict(kv.split(b"=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in kv)


def swap_config(tmp_path, swap_yaml, models_dir):
    d = tmp_path / "cfg"
    d.mkdir(exist_ok=True)
    (d / "goinfer.yml").write_text(
        f"models_dir: {models_dir}\napi_key: {API_KEY}\n"
        "listen:\n  \"127.0.0.1:0\": goinfer\n")
    (d / "llama-swap.yml").write_text(swap_yaml)
    return d / "goinfer.yml"


# ---- item 3: file names become llama-server arguments ----

HOSTILE = {  # file name -> the model name requests use
    "sp ace.gguf": "sp ace",
    "m --host 0.0.0.0.gguf": "m --host 0.0.0.0",
    "x&-host=0.0.0.0.gguf": "x",
    "${PORT}.gguf": "${PORT}",
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    for i, f in enumerate(HOSTILE):
        mkmodel(d / f, "-n", "tiny", "-s", str(10 + i))
    return d


@pytest.mark.parametrize("file", list(HOSTILE))
def test_a_file_name_stays_one_argument_and_never_moves_the_listener(hostile_dir, start_goinfer, client, file):
    g = start_goinfer(hostile_dir)
    name = HOSTILE[file]
    r = chat(client, g, name)
    assert r.status_code == 200, r.text + "\n" + g.log()
    child = running(client, g)[name]
    port = int(child["proxy"].rsplit(":", 1)[1])
    assert listeners(port) == ["0100007F"], "llama-server listens beyond 127.0.0.1"
    argv = cmdline(child["pid"])
    assert argv.count(b"--host") == 1 and argv[argv.index(b"--host") + 1] == b"127.0.0.1"
    assert argv[argv.index(b"-m") + 1] == str(hostile_dir / file).encode()
    assert argv[argv.index(b"--alias") + 1] == name.encode()


# ---- item 7: orphans under a wrapper cmd ----

def wrapped(tmp_path, models_dir):
    """A llama-swap model whose real server is a grandchild: sh waits on python, no exec."""
    swap = ("models:\n  wrapped:\n"
            f"    cmd: /bin/sh -c \"python3 {FAKE} -m /tmp/echo-wrapped.gguf --port ${{PORT}}; true\"\n")
    return swap_config(tmp_path, swap, models_dir)


def server_under(pid):
    """The fake llama-server somewhere under pid (a depth-first walk of its descendants)."""
    unvisited = [pid]
    while unvisited:
        p = unvisited.pop()
        if any(a.endswith(b"fake_llama_server.py") for a in cmdline(p)):
            return p
        unvisited += children_of(p)
    raise AssertionError(f"no fake llama-server under {pid}")


def port_is_free(port):
    """A server could listen there again (connections left in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM],
                         ids=["kill -9", "crash", "SIGTERM"])
def test_the_whole_group_goes_however_goinfer_ends(models_dir, tmp_path, start_goinfer, client, how):
    cfg = wrapped(tmp_path, models_dir)
    g = start_goinfer(models_dir, args=["-config", str(cfg)], config=False)
    assert chat(client, g, "wrapped").status_code == 200, g.log()
    child = running(client, g)["wrapped"]
    server = server_under(child["pid"])
    assert server != child["pid"]  # the real server is the wrapper's child, not ours
    port = int(child["proxy"].rsplit(":", 1)[1])
    g.proc.send_signal(how)
    g.proc.wait(30)
    deadline = time.monotonic() + 2
    while (alive(server) or not port_is_free(port)) and time.monotonic() < deadline:
        time.sleep(0.02)
    orphan = alive(server)
    if orphan:
        os.kill(server, signal.SIGKILL)  # not left behind for the next test
    assert not orphan, f"the server under `sh -c` outlived goinfer ({how!r})"
    assert port_is_free(port)


def test_a_stopped_model_leaves_no_guard_behind(models_dir, tmp_path, start_goinfer, client):
    cfg = wrapped(tmp_path, models_dir)
    g = start_goinfer(models_dir, args=["-config", str(cfg)], config=False)
    assert chat(client, g, "wrapped").status_code == 200
    assert len(guards(g.proc.pid)) == 1
    server = server_under(running(client, g)["wrapped"]["pid"])
    assert client.post(g.url() + "/unload", headers=auth()).status_code == 200
    g.wait_log(r"model wrapped: stopped")
    deadline = time.monotonic() + 2  # killed with the group; gone a moment later
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(server)
    assert children_of(g.proc.pid) == []  # the guard was told to go, and reaped


def guards(pid):
    """The guards among pid's children."""
    out = []
    for k in children_of(pid):
        try:
            if Path(f"/proc/{k}/comm").read_text().strip() == "goinfer-guard":
                out.append(k)
        except OSError:
            pass
    return out


# ---- item 9: secrets in the children's environment ----

SECRETS = {"GI_API_KEY": API_KEY, "GI_ADMIN_API_KEY": "admin-secret-0123456789abcdef",
           "GI_TUNNEL_TOKEN": "tunnel-secret-0123456789abcdef"}


def test_children_get_no_secret_of_ours_but_their_env(models_dir, tmp_path, start_goinfer, client):
    swap = (f"models:\n  echo_env:\n    cmd: {FAKE} -m /tmp/echo-env.gguf --port ${{PORT}}\n"
            "    env: [\"MODEL_VAR=kept\", \"GI_ADMIN_API_KEY=the model's own\"]\n")
    cfg = swap_config(tmp_path, swap, models_dir)
    g = start_goinfer(models_dir, args=["-config", str(cfg)], config=False,
                      env=dict(SECRETS, KEEP_ME="yes"))
    for model in ("tiny-a", "echo_env"):
        assert chat(client, g, model).status_code == 200, g.log()
        env = environ(running(client, g)[model]["pid"])
        assert env.get(b"KEEP_ME") == b"yes" and b"PATH" in env
        for k, v in SECRETS.items():
            if model == "echo_env" and k == "GI_ADMIN_API_KEY":
                assert env[k.encode()] == b"the model's own"  # env: from the config still applies
                continue
            assert k.encode() not in env, f"{k} reached {model}"
            assert v.encode() not in b"".join(env.values())
    assert environ(running(client, g)["echo_env"]["pid"])[b"MODEL_VAR"] == b"kept"


# ---- item 10: a projector goes to its own model only ----

def test_a_text_model_beside_a_vision_model_gets_no_projector(tmp_path, start_goinfer, client):
    d = tmp_path / "mixed"
    d.mkdir()
    mkmodel(d / "tiny-v.gguf", "-n", "tiny-v", "-s", "21", "--mmproj")
    mkmodel(d / "tiny-t.gguf", "-n", "tiny-t", "-s", "22")
    assert (d / "mmproj-tiny-v.gguf").exists()
    g = start_goinfer(d)
    models = {m["id"]: m for m in client.get(g.url() + "/models", headers=auth()).json()["data"]}
    assert set(models) == {"tiny-t", "tiny-v"}
    assert models["tiny-v"]["vision"] is True and models["tiny-t"]["vision"] is False
    r = chat(client, g, "tiny-t")
    assert r.status_code == 200, r.text + "\n" + g.log()
    assert b"--mmproj" not in cmdline(running(client, g)["tiny-t"]["pid"])
