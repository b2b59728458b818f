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
