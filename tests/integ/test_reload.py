"""Reload on SIGHUP and on a changed file: a valid new configuration replaces the old, models
whose definition did not change keep running, and a broken file changes nothing."""
import signal
import time
from pathlib import Path

from conftest import API_KEY, auth, children_of

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"


def model(name, extra=""):
    return f"  {name}:\n    cmd: {FAKE} -m /tmp/echo-{name}.gguf --port ${{PORT}} {extra}\n"


def write(d, models):
    (d / "goinfer.yml").write_text(
        f"api_key: {API_KEY}\nlisten:\n  \"127.0.0.1:0\": goinfer\n  \"127.0.0.2:0\": openai\n"
        "models:\n" + "".join(models))


def ids(client, g):
    return sorted(m["id"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"])


def chat(client, g, m):
    return client.post(g.url() + "/v1/chat/completions", headers=auth(), json={"model": m})


def test_sighup_reload_keeps_unchanged_models_running(tmp_path, start_goinfer, client):
    write(tmp_path, [model("keep"), model("change")])
    g = start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False)
    assert chat(client, g, "keep").status_code == 200
    pid_keep = children_of(g.proc.pid)
    write(tmp_path, [model("keep"), model("change", "--ctx 2"), model("added")])
    g.proc.send_signal(signal.SIGHUP)
    g.wait_log(r"reloaded \((SIGHUP|configuration file changed)\): 3 models")
    assert ids(client, g) == ["added", "change", "keep"]
    assert children_of(g.proc.pid) == pid_keep, g.log()  # the unchanged model was not restarted
    r = chat(client, g, "added")
    assert r.status_code == 200, r.text + g.log()


def test_broken_file_is_refused_and_old_config_serves(tmp_path, start_goinfer, client):
    write(tmp_path, [model("one")])
    g = start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False)
    assert chat(client, g, "one").status_code == 200
    n = len(g.lines)
    (tmp_path / "goinfer.yml").write_text((tmp_path / "goinfer.yml").read_text() + "  bad:\n    tll: 3\n")
    g.proc.send_signal(signal.SIGHUP)
    m = g.wait_log(r"reload \(.*\) refused, the running configuration stays: (.*)", start=n)
    assert "goinfer.yml:9: unknown key 'tll'" in m.group(1)
    assert ids(client, g) == ["one"]
    assert chat(client, g, "one").status_code == 200


def test_file_change_reloads_without_a_signal(tmp_path, start_goinfer, client):
    write(tmp_path, [model("first")])
    g = start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False)
    write(tmp_path, [model("first"), model("second")])
    g.wait_log(r"reloaded \(configuration file changed\): 2 models", timeout=10)
    assert ids(client, g) == ["first", "second"]


def test_removed_model_stops_after_its_request(tmp_path, start_goinfer, client):
    write(tmp_path, [model("gone"), model("stay")])
    g = start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False)
    assert chat(client, g, "gone").status_code == 200
    write(tmp_path, [model("stay")])
    g.proc.send_signal(signal.SIGHUP)
    g.wait_log(r"model gone: stopping \(its definition changed or was removed\)")
    g.wait_log(r"model gone: stopped")
    r = chat(client, g, "gone")
    assert r.status_code == 404 and "stay" in r.json()["error"]["message"]
