"""Reload on SIGHUP and on a changed file: a valid new configuration replaces the old, models
whose definition did not change keep running, and a broken file changes nothing."""
import os
import signal
import time
from pathlib import Path

import httpx

from conftest import API_KEY, auth, children_of

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"


def model(name, extra=""):
    return f"  {name}:\n    cmd: {FAKE} -m /tmp/echo-{name}.gguf --port ${{PORT}} {extra}\n"


def config(models):
    return (f"api_key: {API_KEY}\nlisten:\n  \"127.0.0.1:0\": goinfer\n  \"127.0.0.2:0\": openai\n"
            "models:\n" + "".join(models))


def write(d, models):
    (d / "goinfer.yml").write_text(config(models))


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


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def reload_and_wait(g, how, n, client=None):
    """n reloads, each waited for (signals sent faster would be merged into one)."""
    for _ in range(n):
        start = len(g.lines)
        if how == "post":
            assert client.post(g.url() + "/reload", headers=auth()).status_code == 200
        else:
            g.proc.send_signal(signal.SIGHUP)
        g.wait_log(r"reloaded \((SIGHUP|POST /reload)\)", start=start)


def test_reloads_free_the_configuration_they_replace(tmp_path, start_goinfer, client):
    """Issue 9, item 6: every reload used to keep the configuration it replaced until exit
    (about 1 MB per reload with 500 models). 300 reloads of 300 models must not grow RSS."""
    write(tmp_path, [model(f"m{i:03d}", "--ctx 512 --threads 2 --no-warmup") for i in range(300)])
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0"}
    g = start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False,
                      env=env)
    reload_and_wait(g, "sighup", 30)  # the allocator's arenas reach their working size
    before = rss_kib(g.proc.pid)
    reload_and_wait(g, "sighup", 200)
    reload_and_wait(g, "post", 100, client)
    grown = rss_kib(g.proc.pid) - before
    print(f"RSS {before} KiB after 30 reloads, grew by {grown} KiB over 300 more")
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB over 300 reloads"


def drip(extra=""):
    """A FAKE llama-server streaming 5 events 200 ms apart (fakes/fake_llama_server.py)."""
    return f"  drip:\n    cmd: {FAKE} -m /tmp/drip-reload.gguf --port ${{PORT}} {extra}\n"


def test_reloads_during_a_stream_leave_it_whole(tmp_path, start_goinfer):
    """Two reloads while a stream runs, the second changing the stream's own model: the stream
    ends whole on the definition it started with, the retired model stops after it, and the
    replaced configurations are freed only then (the ASan build sees any use after free)."""
    write(tmp_path, [drip(), model("other")])
    g = start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False)
    chat_req = {"model": "drip", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                      json=chat_req) as r:
            assert r.status_code == 200
            chunks = r.iter_raw()
            body = next(chunks)
            for models in ([drip(), model("added")], [drip("--ctx 2")]):
                n = len(g.lines)
                write(tmp_path, models)
                g.proc.send_signal(signal.SIGHUP)
                g.wait_log(rf"reloaded \(SIGHUP\): {len(models)} models", start=n)
            body += b"".join(chunks)
        g.wait_log(r"model drip: stopped")
        text = body.decode()
        assert text.count("chat.completion.chunk") == 5 and text.endswith("data: [DONE]\n\n"), text
        r = c.post(g.url() + "/v1/chat/completions", headers=auth(), json=chat_req)
        assert r.status_code == 200 and r.text.count("chat.completion.chunk") == 5, r.text


def reload_lines(g, start):
    return [line for line in g.lines[start:] if "reload" in line]


def test_a_config_written_in_two_halves_is_read_once_whole(tmp_path, start_goinfer):
    """A writer that pauses mid-file (350 ms: past the 200 ms the watcher used to wait) must not
    get the half file read: one reload, of the whole file, and no error about the half."""
    write(tmp_path, [model("first")])
    g = start_goinfer(None, args=["-config", str(tmp_path / "goinfer.yml")], config=False)
    text = config([model(f"m{i:02d}") for i in range(40)])
    cut = text.index("  m20:") + len("  m20:\n    cmd: ")
    n = len(g.lines)
    with open(tmp_path / "goinfer.yml", "w") as f:
        f.write(text[:cut])
        f.flush()
        time.sleep(0.35)
        f.write(text[cut:])
    g.wait_log(r"reloaded \(configuration file changed\): 40 models", start=n, timeout=10)
    time.sleep(1.5)  # what a second look would have found
    lines = reload_lines(g, n)
    assert len(lines) == 1 and lines[0].endswith(" info reloaded (configuration file changed): "
                                                 "40 models"), "\n".join(g.lines[n:])
    assert not [line for line in g.lines[n:] if " warn " in line], "\n".join(g.lines[n:])


def test_renames_over_the_file_are_followed_whatever_its_name(tmp_path, start_goinfer):
    """Editors save by writing a temporary file and renaming it over the old one: a new inode
    each time, which the watch must follow, for the file -config names (not only goinfer.yml).
    Events that change neither file (another file in the folder) reload nothing."""
    cfg = tmp_path / "site.yml"
    cfg.write_text(config([model("a")]))
    g = start_goinfer(None, args=["-config", str(cfg)], config=False)
    for models in ([model("a"), model("b")], [model("a"), model("b"), model("c")]):
        n = len(g.lines)
        tmp = tmp_path / ".site.yml.swp"
        tmp.write_text(config(models))
        os.replace(tmp, cfg)
        g.wait_log(rf"reloaded \(configuration file changed\): {len(models)} models", start=n,
                   timeout=10)
    n = len(g.lines)
    (tmp_path / "notes.txt").write_text("not a configuration")
    os.replace(tmp_path / "notes.txt", tmp_path / "notes.yml")
    g.proc.send_signal(signal.SIGHUP)  # read now: the watcher has nothing left to do after it
    g.wait_log(r"reloaded \(SIGHUP\): 3 models", start=n)
    time.sleep(1.5)
    assert len(reload_lines(g, n)) == 1, "\n".join(g.lines[n:])
