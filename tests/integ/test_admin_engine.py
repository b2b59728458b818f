"""The engine admin API: the llama-server in use, a rebuild from the cached llama.cpp build tree
(incremental: seconds) with its smoke test and switch, a failing build that rolls back, a
cancelled one, and switching back. The engines folder and the state folder are the test's own,
so the shared cache's llama-current link is never touched; the cached build tree is only
rebuilt without change (its own options)."""
import os
import time
from pathlib import Path

from conftest import CACHE, auth, llama_exe, stop_clean

CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}


def engine_env(tmp_path):
    return {"GI_STATE_DIR": str(tmp_path / "state" / "goinfer"),  # made when first written
            "GI_ENGINE_DIR": str(tmp_path / "engines"), "GOINFER_CACHE": str(CACHE)}


def get(client, g):
    r = client.get(g.url() + "/api/engine", headers=auth(), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def build(client, g, **body):
    return client.post(g.url() + "/api/engine/build", headers=auth(), json=body)


def wait_job(client, g, timeout=600):
    """Polls GET /api/engine until the job ends; returns the last view and the progress seen."""
    seen = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = get(client, g)
        job = e["job"]
        seen.add(job["progress"])
        if job["state"] != "running":
            return e, seen
        time.sleep(0.2)
    raise AssertionError(f"engine job still running after {timeout} s: {job}")


def chat(client, g, model="tiny-a"):
    return client.post(g.url() + "/v1/chat/completions", headers=auth(),
                       json=dict(CHAT, model=model), timeout=60)


def test_get_describes_the_cached_llama_server(models_dir, start_goinfer, client, tmp_path):
    g = start_goinfer(models_dir, env=engine_env(tmp_path))
    e = get(client, g)
    cur = e["current"]
    assert cur["path"] == llama_exe()
    assert cur["chosen"] is False
    assert "version" in (cur["version"] or ""), cur
    assert e["engines"] == [] and e["job"] is None
    assert e["engine_dir"] == str(tmp_path / "engines")
    real = Path(os.path.realpath(llama_exe()))
    if real.parent.parent.name.startswith("llama-") and real.parent.parent.name.endswith("-ui"):
        tag = real.parent.parent.name[len("llama-"):-len("-ui")]  # make setup's folder
        assert cur["tag"] == tag
        assert cur["backend"] == "cpu" and cur["tls"] is False
        assert cur["flags"]["CMAKE_BUILD_TYPE"] == "Release"
        assert cur["build_dir"] == str(CACHE / "src" / f"build-{tag}")
    # admin key only
    assert client.get(g.url() + "/api/engine").status_code == 401
    g.wait_log(r"GET /api/engine .*status=200")


def test_build_from_cache_smoke_tests_and_switches(models_dir, start_goinfer, client, tmp_path):
    env = engine_env(tmp_path)
    g = start_goinfer(models_dir, env=env)
    assert chat(client, g).status_code == 200  # a model runs on the old engine
    g.wait_log(r"model tiny-a: starting: " + llama_exe())
    r = build(client, g, source="cached", backend="cpu", tls=False)
    assert r.status_code == 202, r.text
    assert r.json()["job"]["state"] == "running"
    assert build(client, g, source="cached").status_code == 409  # one at a time
    e, seen = wait_job(client, g)
    job = e["job"]
    assert job["state"] == "done", job
    assert job["progress"] == 100
    assert "[100%] Built target llama-server" in job["log_tail"]
    assert "answered a chat" in job["log_tail"]
    assert job["log"] == str(tmp_path / "state" / "goinfer" / "engine-build.log")
    assert "[100%] Built target llama-server" in Path(job["log"]).read_text()
    g.wait_log(r"audit: engine.build cached by .* 202")
    (installed,) = e["engines"]
    new_exe = str(tmp_path / "engines" / installed["name"] / "bin" / "llama-server")
    assert job["engine"] == str(tmp_path / "engines" / installed["name"])
    assert installed["backend"] == "cpu" and installed["source"] == "cached"
    assert Path(new_exe).is_file() and (Path(new_exe).parent.parent / "ui").is_dir()
    g.wait_log(r"reloaded \(engine " + installed["name"])
    e = get(client, g)
    assert e["current"]["path"] == new_exe and e["current"]["chosen"] is True
    assert e["engines"][0]["current"] is True
    # the idle model moved to the new program: the next chat starts it there
    start = len(g.lines)
    assert chat(client, g).status_code == 200
    g.wait_log(r"model tiny-a: starting: " + new_exe, start=start)
    # the choice is kept in the state folder: a restart keeps it
    stop_clean(g)
    g2 = start_goinfer(models_dir, env=env)
    assert get(client, g2)["current"]["path"] == new_exe
    # switching back to the configured llama-server, and to the build again
    r = client.post(g2.url() + "/api/engine/use", headers=auth(), json={"engine": "default"})
    assert r.status_code == 200, r.text
    assert get(client, g2)["current"]["path"] == llama_exe()
    start = len(g2.lines)
    assert chat(client, g2).status_code == 200
    g2.wait_log(r"model tiny-a: starting: " + llama_exe(), start=start)
    r = client.post(g2.url() + "/api/engine/use", headers=auth(),
                    json={"engine": installed["name"]})
    assert r.status_code == 200
    assert get(client, g2)["current"]["path"] == new_exe
    g2.wait_log(r"audit: engine.use " + installed["name"] + " by .* 200")
    for bad in ("../engines", ".hidden", "no-such-engine", ""):
        r = client.post(g2.url() + "/api/engine/use", headers=auth(), json={"engine": bad})
        assert r.status_code == 404, bad
    assert get(client, g2)["current"]["path"] == new_exe


def test_failing_build_rolls_back(models_dir, start_goinfer, client, tmp_path):
    g = start_goinfer(models_dir, env=engine_env(tmp_path))
    not_llama = tmp_path / "not-llama"
    not_llama.mkdir()
    (not_llama / "CMakeLists.txt").write_text("project(other)\n")
    r = build(client, g, source="local", path=str(not_llama), backend="cpu", tls=False)
    assert r.status_code == 202, r.text
    e, _ = wait_job(client, g, timeout=60)
    job = e["job"]
    assert job["state"] == "failed"
    assert "is not a llama.cpp source tree" in job["error"]
    assert "engine: error" in job["log_tail"]
    g.wait_log(r"engine: job \d+ failed: .* the engine in use stays")
    assert e["current"]["path"] == llama_exe() and e["current"]["chosen"] is False
    assert e["engines"] == []
    assert not (tmp_path / "state" / "goinfer" / "engine.json").exists()
    assert chat(client, g).status_code == 200  # the previous engine still serves
    g.wait_log(r"model tiny-a: starting: " + llama_exe())
    # options refused before anything starts
    for body in ({"source": "cached", "backend": "metal"}, {"source": "svn"},
                 {"source": "local"}, {"source": "local", "path": "relative/tree"},
                 {"source": "cached", "tls": "yes"}, {"source": "git", "remote": "ftp://x"}):
        r = build(client, g, **body)
        assert r.status_code == 400, (body, r.text)
    if not os.access("/usr/local/cuda/bin/nvcc", os.X_OK):
        r = build(client, g, source="cached", backend="cuda")
        assert r.status_code == 400 and "nvcc" in r.text
    assert get(client, g)["job"]["id"] == job["id"]  # refused requests start no job


def test_cancel_a_build(models_dir, start_goinfer, client, tmp_path):
    g = start_goinfer(models_dir, env=engine_env(tmp_path))
    r = client.delete(g.url() + "/api/engine/build", headers=auth())
    assert r.status_code == 404  # nothing runs
    assert build(client, g, source="cached", backend="cpu").status_code == 202
    r = client.delete(g.url() + "/api/engine/build", headers=auth())
    assert r.status_code == 200, r.text
    e, _ = wait_job(client, g, timeout=60)
    assert e["job"]["state"] == "cancelled"
    g.wait_log(r"engine: job \d+ cancelled")
    assert e["current"]["path"] == llama_exe() and e["engines"] == []
    engines = tmp_path / "engines"
    assert not engines.exists() or list(engines.iterdir()) == []
    g.wait_log(r"audit: engine.cancel by .* 200")
    # a build running when Goinfer stops is cancelled with it, its whole process group gone
    start = len(g.lines)
    assert build(client, g, source="cached", backend="cpu").status_code == 202
    pid = int(g.wait_log(r"engine: job 2 started: .*\(pid (\d+)\)", start=start).group(1))
    stop_clean(g)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert "engine: job 2 cancelled" in g.log()


def test_switch_never_cuts_a_generation(models_dir, start_goinfer, client, tmp_path):
    """A model busy with a stream when the engine changes finishes it on the old program, then
    stops; the next request starts it on the new one."""
    hand = tmp_path / "engines" / "hand-made" / "bin"
    hand.mkdir(parents=True)
    (hand / "llama-server").symlink_to(os.path.realpath(llama_exe()))
    new_exe = str(hand / "llama-server")
    g = start_goinfer(models_dir, env=engine_env(tmp_path))
    body = dict(CHAT, model="tiny-a", stream=True, max_tokens=200)
    chunks = []
    with client.stream("POST", g.url() + "/v1/chat/completions", headers=auth(), json=body,
                       timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                chunks.append(line.strip())
                break
        start = len(g.lines)
        s = client.post(g.url() + "/api/engine/use", headers=auth(), json={"engine": "hand-made"})
        assert s.status_code == 200, s.text
        g.wait_log(r"reloaded \(engine hand-made\)", start=start)
        chunks += [line.strip() for line in lines if line.startswith("data: ")]
    assert chunks[-1] == "data: [DONE]", chunks[-3:]
    assert any('"finish_reason":"' in c for c in chunks[-3:]), chunks[-3:]
    # "unloaded": it was still streaming at the switch and stopped once the stream ended
    g.wait_log(r"model tiny-a: stopping \((unloaded|its definition changed)", start=start)
    start = len(g.lines)
    assert chat(client, g).status_code == 200
    g.wait_log(r"model tiny-a: starting: " + new_exe, start=start)
    e = get(client, g)
    assert e["current"]["path"] == new_exe and e["current"]["chosen"] is True
    assert [(x["name"], x["current"]) for x in e["engines"]] == [("hand-made", True)]
