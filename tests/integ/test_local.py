"""Local mode end to end: the real goinfer, the real llama-server, tiny real models."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, ROOT, alive, auth, children_of

CHAT = {"messages": [{"role": "user", "content": "Hello world"}], "max_tokens": 8}


def chat(client, g, model, stream=False, service="goinfer", **extra):
    body = dict(CHAT, model=model, stream=stream, **extra)
    return client.post(g.url(service) + "/v1/chat/completions", json=body, headers=auth())


def servers_of(pid):
    """The llama-servers goinfer started: its children less their guards (a fork of goinfer
    that kills a child's process group if goinfer dies)."""
    def comm(k):
        try:
            return Path(f"/proc/{k}/comm").read_text().strip()
        except OSError:
            return ""
    return [k for k in children_of(pid) if comm(k) != "goinfer-guard"]


def sse_events(text):
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def test_health_is_public_and_models_need_a_key(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.get(g.url() + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = client.get(g.url("openai") + "/v1/models")
    assert r.status_code == 401
    assert "missing API key" in r.json()["error"]["message"]
    r = client.get(g.url("openai") + "/v1/models", headers={"Authorization": "Bearer " + "x" * len(API_KEY)})
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key"
    r = client.get(g.url("openai") + "/v1/models", headers={"x-api-key": API_KEY})
    assert r.status_code == 200
    ids = [m["id"] for m in r.json()["data"]]
    # the split model is listed once, by its base name; every file is a model of its own
    assert ids == ["broken", "split", "tiny-a", "tiny-b"]


def test_chat_completion_from_real_llama_server(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = chat(client, g, "tiny-a")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["completion_tokens"] > 0
    assert r.headers["x-accel-buffering"] == "no"
    g.wait_log(r"req=\d+ POST /v1/chat/completions model=tiny-a backend=local status=200")


def test_chat_stream_is_forwarded_as_sse(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    with client.stream("POST", g.url("openai") + "/v1/chat/completions", headers=auth(),
                       json=dict(CHAT, model="tiny-a", stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["transfer-encoding"] == "chunked"
        chunks = list(r.iter_raw())
    events = sse_events(b"".join(chunks).decode())
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e) for e in events[:-1]]
    assert all(d["object"] == "chat.completion.chunk" for d in deltas)
    assert len(deltas) >= 3


def test_llama_native_completions_on_goinfer_port(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url() + "/completions", headers=auth(),
                    json={"model": "tiny-b", "prompt": "Hello", "n_predict": 4})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["content"], str)
    # /completions is Goinfer's own endpoint: not on the OpenAI-only listener
    r = client.post(g.url("openai") + "/completions", headers=auth(), json={"prompt": "x"})
    assert r.status_code == 404


def test_swap_between_models_and_back(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    for model in ["tiny-a", "tiny-b", "tiny-a", "split"]:
        r = chat(client, g, model)
        assert r.status_code == 200, r.text
        running = client.get(g.url() + "/health", headers=auth()).json()["running"]
        assert [x["model"] for x in running] == [model]
    assert len(servers_of(g.proc.pid)) == 1  # one llama-server at a time
    g.wait_log(r"model tiny-a: stopping \(to make room for tiny-b\)")


def test_default_model_when_none_named(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, env={"GI_DEFAULT_MODEL": "tiny-b"})
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(), json=CHAT)
    assert r.status_code == 200, r.text
    g.wait_log(r"model=tiny-b backend=local status=200")


def test_bad_requests_get_openai_shaped_errors(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = chat(client, g, "no-such-model")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "model_not_found" and err["code"] == 404
    assert "no-such-model" in err["message"] and "tiny-a, tiny-b" in err["message"]
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(), content=b'{"model": ')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(), json={"model": 7})
    assert r.status_code == 400 and "must be a string" in r.json()["error"]["message"]
    r = client.get(g.url() + "/v1/chat/completions", headers=auth())
    assert r.status_code == 405
    r = client.get(g.url() + "/nope", headers=auth())
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def test_corrupt_model_fails_clearly_and_others_keep_working(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = chat(client, g, "broken")
    assert r.status_code == 502
    msg = r.json()["error"]["message"]
    assert "llama-server for model broken exited at start-up" in msg
    assert "gguf" in msg.lower()  # llama-server's own words about the file
    assert chat(client, g, "tiny-a").status_code == 200
    assert chat(client, g, "broken").status_code == 502  # tried again, not cached as running


def test_concurrent_requests_during_a_load_join_it(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    import concurrent.futures as cf

    def one(model):
        with httpx.Client(timeout=60) as c:
            return chat(c, g, model).status_code

    models = ["tiny-a", "tiny-b"] * 4
    with cf.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(one, models))
    assert codes == [200] * 8
    starts = g.log().count("starting on port")
    assert starts <= 8  # requests waiting for a model joined its load


def test_sigterm_finishes_streams_and_stops_children(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert chat(client, g, "tiny-a").status_code == 200
    kids = servers_of(g.proc.pid)
    assert len(kids) == 1
    with client.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                       json=dict(CHAT, model="tiny-a", stream=True, max_tokens=200)) as r:
        g.proc.send_signal(signal.SIGTERM)
        text = b"".join(r.iter_raw()).decode()
    assert sse_events(text)[-1] == "[DONE]"  # the in-flight stream ended normally
    assert g.proc.wait(30) == 0, g.log()
    assert not alive(kids[0])
    g.wait_log(r"all llama-server children stopped")
    assert "goinfer stopped" in g.log()


def test_no_orphan_when_goinfer_is_killed(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert chat(client, g, "tiny-a").status_code == 200
    kids = servers_of(g.proc.pid)
    assert len(kids) == 1
    g.proc.kill()
    g.proc.wait(10)
    deadline = time.monotonic() + 5
    while alive(kids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(kids[0]), "llama-server outlived a SIGKILLed goinfer"


def test_crashed_child_is_restarted_on_next_request(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert chat(client, g, "tiny-a").status_code == 200
    kid = servers_of(g.proc.pid)[0]
    os.kill(kid, signal.SIGKILL)
    g.wait_log(r"model tiny-a: llama-server exited unexpectedly")
    assert chat(client, g, "tiny-a").status_code == 200
    assert servers_of(g.proc.pid) != [kid]


def run_goinfer_expecting_failure(env, args=()):
    e = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    e.update(env)
    from conftest import GOINFER
    p = subprocess.run([str(GOINFER), "-no-api-key", *args], env=e, capture_output=True,
                       text=True, timeout=30, cwd="/")
    assert p.returncode == 1, p.stderr
    return p.stderr


def test_start_up_errors_say_what_to_do(models_dir, tmp_path):
    from conftest import llama_exe
    err = run_goinfer_expecting_failure({"GI_MODELS_DIR": "/no/such/dir", "GI_LLAMA_EXE": llama_exe()})
    assert "/no/such/dir" in err and "GI_MODELS_DIR" in err
    err = run_goinfer_expecting_failure({"GI_MODELS_DIR": str(models_dir), "GI_LLAMA_EXE": "/no/llama"})
    assert "/no/llama" in err and "GI_LLAMA_EXE" in err
    notexec = tmp_path / "llama-server"
    notexec.write_text("#!/bin/sh\n")
    err = run_goinfer_expecting_failure({"GI_MODELS_DIR": str(models_dir), "GI_LLAMA_EXE": str(notexec)})
    assert "not an executable" in err
    err = run_goinfer_expecting_failure({}, ["-config", str(tmp_path / "none.yml")])
    assert "none.yml" in err
    bad = tmp_path / "bad.yml"
    bad.write_text("models_dir: /x\nlisten:\n  \":99999\": goinfer\n")
    err = run_goinfer_expecting_failure({}, ["-config", str(bad)])
    assert "bad.yml:3: listen:" in err and "65535" in err


def test_no_api_key_refused_unless_asked(models_dir):
    from conftest import GOINFER, llama_exe
    e = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    e.update(GI_MODELS_DIR=str(models_dir), GI_LLAMA_EXE=llama_exe())
    p = subprocess.run([str(GOINFER)], env=e, capture_output=True, text=True, timeout=30, cwd="/")
    assert p.returncode == 1 and "-no-api-key" in p.stderr


def test_openai_sdk_client(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    client_dir = ROOT / "tests" / "client"
    if not (client_dir / "node_modules" / "openai").exists():
        raise AssertionError("the openai npm package is missing: run `make setup`")
    for service in ("goinfer", "openai"):
        env = dict(os.environ, GOINFER_URL=g.url(service) + "/v1", GOINFER_KEY=API_KEY,
                   GOINFER_MODEL="tiny-a")
        p = subprocess.run(["node", "--test", "openai_sdk.test.mjs"], cwd=client_dir, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "# pass 6" in p.stdout and "# fail 0" in p.stdout


def test_ui_page_in_chromium(models_dir, start_goinfer, client, tmp_path):
    g = start_goinfer(models_dir)
    assert chat(client, g, "tiny-a").status_code == 200  # so a child is running
    client_dir = ROOT / "tests" / "client"
    if not (client_dir / "node_modules" / "playwright-core").exists() or not os.path.exists("/usr/bin/chromium"):
        raise AssertionError("playwright-core or /usr/bin/chromium is missing: run `make setup`")
    shot = Path(os.environ.get("GOINFER_UI_SHOT", tmp_path / "ui.png"))
    env = dict(os.environ, GOINFER_ORIGIN=g.url(), GOINFER_KEY=API_KEY, GOINFER_MODEL="tiny-a",
               SCREENSHOT=str(shot))
    p = subprocess.run(["node", "--test", "ui.test.mjs"], cwd=client_dir, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "# pass 1" in p.stdout and shot.stat().st_size > 10_000
    g.wait_log(r"model tiny-a: stopping \(unloaded\)")


@pytest.mark.parametrize("exe", ["cached", "own"])
def test_llama_cpp_web_ui_at_root(start_goinfer, client, tmp_path, exe):
    """The cached llama-server's UI files, served from disk; and a user's own llama-server
    (no UI folder near it), whose own page is proxied from the model it runs."""
    from conftest import mkmodel
    from test_first_run import own_llama_server
    d = tmp_path / "one"  # a single good model: the UI may ask any listed model for /props
    d.mkdir()
    mkmodel(d / "tiny-a.gguf", "-n", "tiny-a")
    g = start_goinfer(d, env={"GI_LLAMA_EXE": own_llama_server(tmp_path / "own")}
                      if exe == "own" else None)
    r = client.get(g.url() + "/", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    running = client.get(g.url() + "/running", headers=auth()).json()["running"]
    if exe == "cached":
        assert running == []  # no model started
    else:
        assert [m["model"] for m in running] == ["tiny-a"]
    assert client.get(g.url("openai") + "/").status_code == 404  # only on Goinfer's listener
    shot = Path(os.environ.get("GOINFER_LLAMAUI_SHOT", tmp_path / "llamaui.png"))
    env = dict(os.environ, GOINFER_ORIGIN=g.url(), GOINFER_KEY=API_KEY, SCREENSHOT=str(shot))
    p = subprocess.run(["node", "--test", "llamaui.test.mjs"], cwd=ROOT / "tests" / "client",
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "# pass 1" in p.stdout
    g.wait_log(r"POST /v1/chat/completions model=\S+ backend=local status=200")


def socket_inodes(pid):
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def test_children_inherit_no_descriptor_of_ours(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    for model in ("tiny-a",):
        assert chat(client, g, model).status_code == 200
    kid = servers_of(g.proc.pid)[0]
    ours = socket_inodes(g.proc.pid)
    assert ours and not (socket_inodes(kid) & ours), "llama-server holds goinfer's sockets"
    # stdin: a pipe whose other end goinfer holds (llama.cpp's child protocol: the exit line,
    # and end of file when goinfer dies), nothing else of ours
    stdin = os.readlink(f"/proc/{kid}/fd/0")
    assert stdin.startswith("pipe:"), stdin
    theirs = [os.readlink(fd) for fd in Path(f"/proc/{g.proc.pid}/fd").iterdir()]
    assert theirs.count(stdin) == 1
    assert sum(1 for fd in Path(f"/proc/{kid}/fd").iterdir()
               if os.path.exists(fd) and os.readlink(fd) == "/dev/null") == 0


def test_ignored_sigchld_from_our_parent_does_not_break_stops(models_dir, tmp_path):
    from conftest import GOINFER, write_config, llama_exe
    cfg = tmp_path / "g.yml"
    write_config(cfg, models_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env["GI_LLAMA_EXE"] = llama_exe()
    from conftest import Goinfer
    g = Goinfer.__new__(Goinfer)  # started by hand: SIGCHLD ignored, as some parents leave it
    import threading
    g.lines, g.cond, g.ports = [], threading.Condition(), {}
    g.proc = subprocess.Popen([str(GOINFER), "-config", str(cfg)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    g.reader = threading.Thread(target=g._read, daemon=True)
    g.reader.start()
    g.wait_ready()
    try:
        with httpx.Client(timeout=30) as c:
            assert chat(c, g, "tiny-a").status_code == 200
            assert c.post(g.url() + "/unload", headers=auth()).status_code == 200
            g.wait_log(r"model tiny-a: stopped", timeout=10)
            assert chat(c, g, "tiny-b").status_code == 200
    finally:
        assert g.stop() == 0, g.log()


def test_client_leaving_frees_the_llama_server_slot(models_dir, start_goinfer, client, tmp_path):
    # A context large enough that the generation cannot end by itself during the test (with
    # the usual 256 tokens a slot, it sometimes ended before /slots was asked; and llama-server
    # caps -c at the model's trained context, so the model itself is made with a long one).
    from conftest import mkmodel
    long_dir = tmp_path / "long-models"
    long_dir.mkdir()
    mkmodel(long_dir / "tiny-a.gguf", "-n", "tiny-a", "-s", "1", "-c", "32768")
    cfg = tmp_path / "long.yml"
    cfg.write_text(f"models_dir: {long_dir}\napi_key: {API_KEY}\n"
                   "listen:\n  \"127.0.0.1:0\": goinfer\n"
                   "llama:\n  args:\n    common: -c 32768 -np 1 --no-warmup\n")
    g = start_goinfer(None, args=["-config", str(cfg)], config=False)
    assert chat(client, g, "tiny-a").status_code == 200
    body = dict(CHAT, model="tiny-a", stream=True, max_tokens=20000, ignore_eos=True)
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", g.url() + "/v1/chat/completions", headers=auth(), json=body) as r:
            it = r.iter_raw()
            next(it)
            busy = client.get(g.url() + "/slots?model=tiny-a", headers=auth()).json()
            assert any(s["is_processing"] for s in busy), busy
            assert all(s["n_ctx"] >= 20000 for s in busy), busy  # it cannot end by itself
            left = time.monotonic()
    # the upstream request is cancelled at once, so llama-server stops generating
    while time.monotonic() - left < 2:
        slots = client.get(g.url() + "/slots?model=tiny-a", headers=auth()).json()
        if not any(s["is_processing"] for s in slots):
            break
        time.sleep(0.02)
    assert not any(s["is_processing"] for s in slots), slots
    assert time.monotonic() - left < 1
    g.wait_log(r"POST /v1/chat/completions model=tiny-a backend=local status=200 .*")
