"""Per-model control (issue 11, item 3, in part): one model loaded and unloaded through
llama.cpp's router API and llama-swap's, GET /unload as the seed writes it, and the openai
SDK's models.retrieve (GET /v1/models/<id>)."""
from conftest import auth

CHAT = {"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}


def running(client, g):
    return sorted(x["model"] for x in
                  client.get(g.url() + "/running", headers=auth()).json()["running"])


def test_load_then_unload_one_model(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url() + "/models/load", headers=auth(), json={"model": "tiny-a"})
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    assert running(client, g) == ["tiny-a"]
    r = client.post(g.url() + "/models/unload", headers=auth(), json={"model": "tiny-a"})
    assert r.status_code == 200 and r.json()["stopping"] == 1, r.text
    g.wait_log(r"model tiny-a: stopped")
    assert running(client, g) == []


def test_llama_swap_paths_and_get_unload(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert client.post(g.url() + "/v1/chat/completions", headers=auth(),
                       json=dict(CHAT, model="tiny-b")).status_code == 200
    r = client.post(g.url() + "/api/models/unload/tiny-b", headers=auth())
    assert r.status_code == 200 and r.json()["model"] == "tiny-b", r.text
    g.wait_log(r"model tiny-b: stopped")
    assert client.post(g.url() + "/v1/chat/completions", headers=auth(),
                       json=dict(CHAT, model="tiny-a")).status_code == 200
    assert client.get(g.url() + "/unload", headers=auth()).status_code == 200
    g.wait_log(r"model tiny-a: stopped")


def test_control_errors_say_what_to_send(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url() + "/models/unload", headers=auth(), json={})
    assert r.status_code == 400 and "name the model" in r.json()["error"]["message"]
    r = client.post(g.url() + "/models/load", headers=auth(), json={"model": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    assert client.post(g.url() + "/models/load", json={"model": "tiny-a"}).status_code == 401


def test_models_retrieve(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.get(g.url() + "/v1/models/tiny-a", headers=auth())
    assert r.status_code == 200 and r.json()["id"] == "tiny-a" and r.json()["object"] == "model"
    assert client.get(g.url() + "/v1/models/nope", headers=auth()).status_code == 404


def status_of(client, g, path, model):
    data = client.get(g.url() + path, headers=auth()).json()
    rows = data["data"]
    return next(m["status"] for m in rows if m["id"] == model)


def test_listings_say_each_models_state(models_dir, start_goinfer, client, tmp_path):
    """llama.cpp's router shape in /v1/models and GET /models: unloaded, loaded, and a start
    that failed (with how it exited)."""
    g = start_goinfer(models_dir)
    assert status_of(client, g, "/v1/models", "tiny-a") == {"value": "unloaded"}
    assert client.post(g.url() + "/models/load", headers=auth(),
                       json={"model": "tiny-a"}).status_code == 200
    assert status_of(client, g, "/v1/models", "tiny-a") == {"value": "loaded"}
    assert status_of(client, g, "/models", "tiny-a") == {"value": "loaded"}
    r = client.post(g.url() + "/models/load", headers=auth(), json={"model": "broken"})
    assert r.status_code == 502
    st = status_of(client, g, "/models", "broken")
    assert st["value"] == "unloaded" and st["failed"] is True and st["exit_code"] != 0, st
