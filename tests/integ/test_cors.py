"""CORS: exact origin whitelist, preflight without a key, Vary: Origin, headers on streamed
and error responses too, and a clear 403 for other origins."""
import json

from conftest import API_KEY, auth

ALLOWED = "http://app.example.com"


def start(start_goinfer, models_dir):
    return start_goinfer(models_dir, env={"GI_ORIGINS": f"{ALLOWED}, http://localhost"})


def test_preflight(models_dir, start_goinfer, client):
    g = start(start_goinfer, models_dir)
    r = client.options(g.url() + "/v1/chat/completions", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "Authorization" in r.headers["access-control-allow-headers"]
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["vary"] == "Origin"
    r = client.options(g.url() + "/v1/chat/completions", headers={
        "Origin": "http://app.example.com.evil.net", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    assert "not allowed" in r.json()["error"]["message"]


def test_streamed_and_error_responses_carry_cors(models_dir, start_goinfer, client):
    g = start(start_goinfer, models_dir)
    h = dict(auth(), Origin=ALLOWED)
    with client.stream("POST", g.url() + "/v1/chat/completions", headers=h,
                       json={"model": "tiny-a", "stream": True, "max_tokens": 4,
                             "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert r.headers["vary"] == "Origin"
        assert b"[DONE]" in b"".join(r.iter_raw())
    r = client.get(g.url() + "/v1/models", headers={"Origin": ALLOWED})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ALLOWED
    r = client.get(g.url() + "/v1/models", headers=dict(auth(), Origin="http://evil.example"))
    assert r.status_code == 403


def test_no_origin_no_cors_headers(models_dir, start_goinfer, client):
    g = start(start_goinfer, models_dir)
    r = client.get(g.url() + "/v1/models", headers=auth())
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
