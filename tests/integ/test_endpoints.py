"""Endpoints beyond chat: llama.cpp's native routes, /upstream/<model>/, /running, /unload,
and how the model is chosen (JSON body, multipart field, ?model=)."""
import time

import httpx

from conftest import API_KEY, auth


def test_native_routes_pick_the_model(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url() + "/tokenize", headers=auth(), json={"model": "tiny-b", "content": "Hello"})
    assert r.status_code == 200 and isinstance(r.json()["tokens"], list)
    r = client.get(g.url() + "/props?model=tiny-a", headers=auth())
    assert r.status_code == 200
    assert "tiny-a.gguf" in r.json()["model_path"]
    r = client.post(g.url() + "/infill", headers=auth(),
                    json={"model": "tiny-a", "input_prefix": "def f(", "input_suffix": ")", "n_predict": 2})
    assert r.status_code in (200, 400, 501), r.text  # reached llama-server, which answers for itself
    assert g.wait_log(r"POST /infill model=tiny-a backend=local")


def test_upstream_prefix_reaches_that_model(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.get(g.url() + "/upstream/tiny-b/props", headers=auth())
    assert r.status_code == 200 and "tiny-b.gguf" in r.json()["model_path"]
    r = client.get(g.url() + "/upstream/tiny-b/health", headers=auth())
    assert r.status_code == 200
    r = client.get(g.url() + "/upstream/nope/props", headers=auth())
    assert r.status_code == 404 and "tiny-a" in r.json()["error"]["message"]


def raw_request(g, text):
    """Sends bytes exactly as written (clients normalise paths) and returns the response."""
    import socket
    host, port = g.ports["goinfer"]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(text.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def test_upstream_refuses_path_traversal(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    for path in ["/upstream/tiny-a/../../etc/passwd", "/upstream/tiny-a/%2e%2e/x",
                 "/upstream/tiny-a/a/.."]:
        resp = raw_request(g, f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: "
                              f"Bearer {API_KEY}\r\nConnection: close\r\n\r\n")
        assert resp.startswith("HTTP/1.1 400 "), (path, resp)
        assert "not allowed" in resp


def test_multipart_model_field_selects_the_model(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url("openai") + "/v1/audio/transcriptions", headers=auth(),
                    data={"model": "tiny-b"}, files={"file": ("a.wav", b"RIFF....WAVE", "audio/wav")})
    assert r.status_code != 404, r.text  # the model was found; llama-server answers the rest
    g.wait_log(r"POST /v1/audio/transcriptions model=tiny-b backend=local")


def test_running_and_unload(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert client.get(g.url() + "/running", headers=auth()).json() == {"running": []}
    client.post(g.url() + "/v1/chat/completions", headers=auth(),
                json={"model": "tiny-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    running = client.get(g.url() + "/running", headers=auth()).json()["running"]
    assert [(x["model"], x["state"]) for x in running] == [("tiny-a", "ready")]
    r = client.post(g.url() + "/unload", headers=auth())
    assert r.status_code == 200 and r.json()["stopping"] == 1
    # GET too, as the seed and llama-swap write it (issue 11); it needs the admin key as POST
    assert client.get(g.url() + "/unload").status_code == 401
    g.wait_log(r"model tiny-a: stopped")
    assert client.get(g.url() + "/running", headers=auth()).json() == {"running": []}
    assert client.get(g.url() + "/running").status_code == 401


def test_logs_and_logs_stream(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    client.post(g.url() + "/completions", headers=auth(), json={"model": "tiny-a", "prompt": "hi", "n_predict": 2})
    text = client.get(g.url() + "/logs", headers=auth()).text
    assert "listening on" in text
    assert "[model tiny-a]" in text  # the child's own output, captured without -debug
    assert "POST /completions model=tiny-a" in text
    import threading
    got = []
    with httpx.Client(timeout=30) as c2:
        with c2.stream("GET", g.url() + "/logs/stream?no-history", headers=auth()) as r:
            assert r.status_code == 200
            threading.Timer(0.3, lambda: httpx.get(g.url() + "/health")).start()
            for line in r.iter_lines():
                got.append(line)
                if "GET /health" in line:
                    break
    assert any("GET /health" in line for line in got)
    assert not any("listening on" in line for line in got)  # no history asked


def test_sigterm_ends_log_streams(models_dir, start_goinfer):
    g = start_goinfer(models_dir)
    with httpx.Client(timeout=30) as c:
        with c.stream("GET", g.url() + "/logs/stream", headers=auth()) as r:
            lines = r.iter_lines()
            next(lines)
            t0 = time.monotonic()
            g.proc.terminate()
            for _ in lines:
                pass
    assert g.proc.wait(10) == 0
    assert time.monotonic() - t0 < 3


def test_per_model_flags_from_name_and_companion_script(tmp_path, start_goinfer, client):
    from conftest import mkmodel
    d = tmp_path / "flagged"
    d.mkdir()
    mkmodel(d / "small&c=1024&np=1.gguf", "-n", "small", "-c", "4096")
    mkmodel(d / "scripted.gguf", "-n", "scripted", "-c", "4096")
    (d / "scripted.sh").write_text("#!/bin/sh\n# my tuning\nllama-server -m scripted.gguf \\\n  -c 2048 -np 1\n")
    g = start_goinfer(d)
    ids = [m["id"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"]]
    assert ids == ["scripted", "small"]
    for model, ctx in (("small", 1024), ("scripted", 2048)):
        props = client.get(g.url() + f"/props?model={model}", headers=auth()).json()
        assert props["default_generation_settings"]["n_ctx"] == ctx, g.log()


def test_models_lists_gguf_metadata(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.get(g.url() + "/models", headers=auth())
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()["data"]}
    a = models["tiny-a"]
    assert a["gguf"]["architecture"] == "llama" and a["context_length"] == 512
    assert a["gguf"]["quantization"] == "F32" and a["gguf"]["chat_template"] is True
    assert a["vision"] is False and a["architecture"]["input_modalities"] == ["text"]
    assert a["status"] == {"value": "unloaded"} and a["path"].endswith("tiny-a.gguf")
    assert models["split"]["shards"] == 3
    assert "error" in models["broken"]["gguf"] and "architecture" not in models["broken"]["gguf"]
    assert "GI_tiny-a" not in models
    assert client.get(g.url("openai") + "/models", headers=auth()).status_code == 404


def test_mmproj_is_attached_not_listed(tmp_path, start_goinfer, client):
    from conftest import mkmodel
    d = tmp_path / "vision"
    d.mkdir()
    mkmodel(d / "seer.gguf", "-n", "seer", "--mmproj")
    g = start_goinfer(d)
    models = client.get(g.url() + "/models", headers=auth()).json()["data"]
    assert [m["id"] for m in models] == ["seer"]
    assert models[0]["vision"] is True and models[0]["mmproj"].endswith("mmproj-seer.gguf")
    g.wait_log(r"model GI_seer: .*seer.gguf")
