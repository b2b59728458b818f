"""The admin store and its JSON API, against the real llama-server and tiny models: activity
rows (tokens, time to first token, key name), their bound, enable/disable across a restart,
the audit trail, the series for charts."""
import time

from conftest import API_KEY, auth

ADMIN = "admin-key-for-the-store-tests-0123456789"
SWAP_KEY = "second-user-key-from-apikeys-0123456789"
KEYS = f"admin_api_key: {ADMIN}\napiKeys: [\"{SWAP_KEY}\"]\n"
CHAT = {"messages": [{"role": "user", "content": "Hello world"}], "max_tokens": 8}


def admin():
    return {"Authorization": f"Bearer {ADMIN}"}


def chat(client, g, model, key=API_KEY, stream=False, **extra):
    return client.post(g.url() + "/v1/chat/completions", json=dict(CHAT, model=model, stream=stream,
                       **extra), headers={"Authorization": f"Bearer {key}"})


def activity(client, g, **params):
    r = client.get(g.url() + "/api/activity", params=params, headers=admin())
    assert r.status_code == 200, r.text
    return r.json()["data"]


def listed(client, g, path):
    r = client.get(g.url() + path, headers=auth())
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["data"]]


def test_activity_rows_with_tokens_and_key_names(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, extra=KEYS)
    r = chat(client, g, "tiny-a")
    assert r.status_code == 200, r.text
    r = chat(client, g, "tiny-a", key=SWAP_KEY, stream=True)
    assert r.status_code == 200 and "[DONE]" in r.text, r.text
    # the admin app's own requests are not activity
    for path in ("/ui", "/health", "/api/models", "/api/audit", "/running", "/v1/models"):
        assert client.get(g.url() + path, headers=admin()).status_code == 200, path
    rows = activity(client, g)
    assert [row["path"] for row in rows] == ["/v1/chat/completions"] * 2, rows
    streamed, whole = rows  # newest first
    assert streamed["key"] == "apiKeys[0]" and whole["key"] == "api_key", rows
    for row in rows:
        assert row["model"] == "tiny-a" and row["backend"] == "local" and row["status"] == 200
        assert row["method"] == "POST" and row["client"].startswith("127.0.0.1:")
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0, row
        assert row["tokens_per_s"] > 0 and row["duration_ms"] > 0, row
        assert row["ttft_ms"] is not None and 0 <= row["ttft_ms"] <= row["duration_ms"], row
        assert abs(row["t_ms"] / 1000 - time.time()) < 120
    assert ADMIN not in str(rows) and API_KEY not in str(rows) and SWAP_KEY not in str(rows)
    # filtered by model, paged by id
    assert activity(client, g, model="tiny-b") == []
    one = client.get(g.url() + "/api/activity", params={"limit": 1}, headers=admin()).json()
    assert len(one["data"]) == 1 and one["next_before"] == streamed["id"]
    older = activity(client, g, before=one["next_before"])
    assert [row["id"] for row in older] == [whole["id"]]
    # what a wrong query gets told
    r = client.get(g.url() + "/api/activity", params={"limit": "lots"}, headers=admin())
    assert r.status_code == 400 and "limit must be a whole number from 1 to 1000" in r.text
    r = client.get(g.url() + "/api/activity", headers=auth())  # a user key: not the admin's
    assert r.status_code == 403 and "admin key" in r.text


def test_activity_is_bounded(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, extra=KEYS + "admin:\n  activity_keep: 3\n")
    for i in range(5):
        r = client.post(g.url() + "/tokenize", json={"model": "tiny-a", "content": f"word {i}"},
                        headers=auth())
        assert r.status_code == 200, r.text
    rows = activity(client, g)
    assert len(rows) == 3 and all(row["path"] == "/tokenize" for row in rows), rows
    assert rows[0]["id"] > rows[1]["id"] > rows[2]["id"]


def test_disable_hides_refuses_and_survives_a_restart(models_dir, start_goinfer, client, tmp_path):
    state = tmp_path / "kept-state"
    preload = "hooks:\n  on_startup:\n    preload: [tiny-b]\n"
    g = start_goinfer(models_dir, extra=KEYS, env={"GI_STATE_DIR": str(state)})
    r = client.post(g.url() + "/api/models/tiny-b/disable", headers=admin())
    assert r.status_code == 200 and r.json()["enabled"] is False, r.text
    for path in ("/v1/models", "/models"):
        assert "tiny-b" not in listed(client, g, path) and "tiny-a" in listed(client, g, path)
    r = chat(client, g, "tiny-b")
    assert r.status_code == 404, r.text
    msg = r.json()["error"]["message"]
    assert "model tiny-b is disabled" in msg and "POST /api/models/tiny-b/enable" in msg, msg
    assert client.get(g.url() + "/v1/models/tiny-b", headers=auth()).status_code == 404
    r = chat(client, g, "GI_tiny-b")  # its GI_ variant runs the same file: off with it
    assert r.status_code == 404 and "POST /api/models/tiny-b/enable" in r.text, r.text
    r = client.post(g.url() + "/models/load", json={"model": "tiny-b"}, headers=admin())
    assert r.status_code == 404 and "disabled" in r.text, r.text
    models = {m["id"]: m for m in client.get(g.url() + "/api/models", headers=admin()).json()["data"]}
    assert models["tiny-b"]["enabled"] is False and models["tiny-a"]["enabled"] is True
    n = len(g.lines)  # a reload keeps it
    assert client.post(g.url() + "/reload", headers=admin()).status_code == 200
    g.wait_log(r"reloaded \(POST /reload\)", start=n)
    assert "tiny-b" not in listed(client, g, "/v1/models")
    assert chat(client, g, "tiny-b").status_code == 404
    assert g.stop() == 0

    # the same state folder: still disabled, and not preloaded
    g = start_goinfer(models_dir, extra=KEYS + preload, env={"GI_STATE_DIR": str(state)})
    g.wait_log(r"preload: tiny-b is disabled, not started")
    assert "tiny-b" not in listed(client, g, "/v1/models")
    assert chat(client, g, "tiny-b").status_code == 404
    r = client.post(g.url() + "/api/models/tiny-b/enable", headers=admin())
    assert r.status_code == 200 and r.json()["enabled"] is True, r.text
    assert "tiny-b" in listed(client, g, "/v1/models")
    r = chat(client, g, "tiny-b")
    assert r.status_code == 200, r.text


def test_audit_trail_of_admin_actions(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, extra=KEYS)
    assert client.post(g.url() + "/models/load", json={"model": "tiny-a"},
                       headers=admin()).status_code == 200
    assert client.post(g.url() + "/models/unload", json={"model": "tiny-a"},
                       headers=admin()).status_code == 200
    assert client.post(g.url() + "/api/models/tiny-a/disable", headers=admin()).status_code == 200
    assert client.post(g.url() + "/api/models/tiny-a/enable", headers=admin()).status_code == 200
    assert client.post(g.url() + "/unload", headers=admin()).status_code == 200
    r = client.get(g.url() + "/api/audit", headers=admin())
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [(row["action"], row["target"]) for row in rows] == [
        ("models.unload", None), ("model.enable", "tiny-a"), ("model.disable", "tiny-a"),
        ("model.unload", "tiny-a"), ("model.load", "tiny-a")], rows
    for row in rows:
        assert row["key"] == "admin_api_key" and row["status"] == 200
        assert row["client"].startswith("127.0.0.1:") and row["t_ms"] > 0
    g.wait_log(r"audit: model.enable tiny-a by admin_api_key from 127\.0\.0\.1:")
    assert client.get(g.url() + "/api/audit", params={"limit": 2},
                      headers=admin()).json()["data"] == rows[:2]


def test_api_models_and_its_errors(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, extra=KEYS)
    assert client.post(g.url() + "/models/load", json={"model": "tiny-a"},
                       headers=admin()).status_code == 200
    assert chat(client, g, "tiny-a").status_code == 200
    r = client.get(g.url() + "/api/models", headers=admin())
    assert r.status_code == 200, r.text
    models = {m["id"]: m for m in r.json()["data"]}
    a = models["tiny-a"]
    assert a["enabled"] is True and a["status"]["value"] == "loaded"
    assert a["path"].endswith("tiny-a.gguf") and a["size"] > 0 and "gguf" in a
    assert "-m" in a["argv"] and a["argv"][a["argv"].index("--port") + 1] == "${PORT}"
    assert a["last_load_ms"] >= 0 and a["requests_last_hour"] == 1 and a["tokens_per_s"] > 0
    assert models["tiny-b"]["last_load_ms"] is None and models["tiny-b"]["requests_last_hour"] == 0
    assert models["GI_tiny-a"]["unlisted"] is True  # every model, unlisted ones too
    assert API_KEY not in r.text and ADMIN not in r.text
    r = client.post(g.url() + "/api/models/nope/enable", headers=admin())
    assert r.status_code == 404 and "model 'nope' is not a model of this machine" in r.text
    r = client.post(g.url() + "/api/models/tiny-a/frob", headers=admin())
    assert r.status_code == 404 and "/api/models/<id>/enable" in r.text
    r = client.post(g.url() + "/api/models/tiny-a/disable", headers=auth())
    assert r.status_code == 403
    r = client.post(g.url() + "/api/models/tiny-a/disable", headers=admin())  # it runs: it stops
    assert r.status_code == 200 and r.json()["stopping"] == 1, r.text
    g.wait_log(r"audit: model.disable tiny-a by admin_api_key")


def test_series_shape(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert chat(client, g, "tiny-a").status_code == 200
    r = client.get(g.url() + "/api/activity/series", params={"minutes": 10, "step": 60},
                   headers=auth())
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["step"] == 60 and s["minutes"] == 10 and len(s["t"]) == 10
    assert s["t"][1] - s["t"][0] == 60000 and s["from"] == s["t"][0]
    (m,) = s["models"]
    assert m["model"] == "tiny-a" and sum(m["requests"]) == 1 and sum(m["completion_tokens"]) > 0
    assert len(m["requests"]) == len(m["completion_tokens"]) == len(m["tokens_per_s"]) == 10
    assert [v for v in m["tokens_per_s"] if v is not None][0] > 0
    r = client.get(g.url() + "/api/activity/series", params={"minutes": 10080, "step": 1},
                   headers=auth())
    assert r.status_code == 400 and "raise step" in r.text, r.text
    r = client.get(g.url() + "/api/activity/series", params={"step": 0}, headers=auth())
    assert r.status_code == 400 and "step must be a whole number" in r.text, r.text
