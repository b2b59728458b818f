"""User and admin keys: admin routes need the admin key, which also works for the API; keys
can come from files; keys never appear in the logs."""
import re
import signal

from conftest import API_KEY, auth

ADMIN = "admin-key-fedcba9876543210"


def test_admin_routes_need_the_admin_key(models_dir, start_goinfer, client, tmp_path):
    key_file = tmp_path / "admin.key"
    key_file.write_text(ADMIN + "\n")
    cfg = tmp_path / "keys.yml"
    cfg.write_text(f"models_dir: {models_dir}\napi_key: {API_KEY}\nadmin_api_key_file: {key_file}\n"
                   "listen:\n  \"127.0.0.1:0\": goinfer\n")
    g = start_goinfer(None, args=["-config", str(cfg)], config=False)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = client.get(g.url() + "/logs", headers=auth())
    assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]
    assert client.post(g.url() + "/unload", headers=auth()).status_code == 403
    assert client.get(g.url() + "/logs", headers=admin).status_code == 200
    assert client.get(g.url() + "/v1/models", headers=admin).status_code == 200  # admin can use the API
    assert client.get(g.url() + "/v1/models", headers=auth()).status_code == 200
    r = client.post(g.url() + "/reload", headers=admin)
    assert r.status_code == 200
    g.wait_log(r"reloaded \(POST /reload\)")
    text = client.get(g.url() + "/logs", headers=admin).text
    assert API_KEY not in text and ADMIN not in text and API_KEY not in g.log()


def test_without_admin_key_the_user_key_administers(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert client.get(g.url() + "/logs", headers=auth()).status_code == 200
    assert client.get(g.url() + "/logs", headers={"x-api-key": "wrong"}).status_code == 401


def generated_tokens(client, g):
    m = re.search(r'goinfer_generated_tokens_total\{model="tiny-a"\} (\S+)',
                  client.get(g.url() + "/metrics", headers=auth()).text)
    return float(m.group(1)) if m else 0.0


def test_metrics(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    for stream in (False, True):
        before = generated_tokens(client, g)
        r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                        json={"model": "tiny-a", "max_tokens": 4, "stream": stream,
                              "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        # llama-server's timings were read from the answer, streamed or not
        assert generated_tokens(client, g) > before, f"no timings read (stream={stream})"
    client.post(g.url() + "/v1/chat/completions", headers=auth(), json={"model": "nope"})
    r = client.get(g.url() + "/metrics", headers=auth())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = r.text
    assert 'goinfer_requests_total{model="tiny-a",code="200"} 2' in m
    assert re.search(r'goinfer_requests_total\{model="-",code="4\d\d"\} 1\n', m)  # names pooled
    assert "goinfer_request_duration_seconds_count" in m and 'le="+Inf"' in m
    assert 'goinfer_generation_tokens_per_second{model="tiny-a"}' in m
    assert "goinfer_models_running 1" in m


def test_no_api_key_keeps_the_admin_key_and_localhost_only(models_dir, tmp_path, start_goinfer, client):
    cfg = tmp_path / "open.yml"
    cfg.write_text(f"models_dir: {models_dir}\nadmin_api_key: {ADMIN}\nlisten:\n  \"127.0.0.1:0\": goinfer\n")
    g = start_goinfer(None, args=["-config", str(cfg), "-no-api-key"], config=False)
    assert client.get(g.url() + "/v1/models").status_code == 200  # the API is open
    assert client.get(g.url() + "/logs").status_code == 401  # admin routes are not
    assert client.get(g.url() + "/logs", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    # a web page whose name resolves to 127.0.0.1 (DNS rebinding) is refused without a key
    r = client.get(g.url() + "/v1/models", headers={"Host": "attacker.example"})
    assert r.status_code == 403 and "only localhost" in r.json()["error"]["message"]
    assert client.get(g.url() + "/v1/models", headers={"Host": "localhost:4444"}).status_code == 200


def warnings_for(g, start=0):
    return [line for line in g.lines[start:] if "-no-api-key on " in line]


def test_no_api_key_on_a_public_address_is_said_at_start_and_reload(models_dir, start_goinfer,
                                                                     tmp_path):
    """-no-api-key is the explicit word that lets Goinfer serve keyless on an address other
    machines reach; it must say so, naming the address, at start and at each reload."""
    cfg = tmp_path / "open.yml"
    cfg.write_text(f"models_dir: {models_dir}\nlisten:\n  \"127.0.0.1:0\": goinfer\n"
                   "  \"0.0.0.0:0\": openai, admin\n")
    g = start_goinfer(None, args=["-config", str(cfg), "-no-api-key"], config=False)
    port = g.ports["openai"][1]
    (line,) = warnings_for(g)
    assert f" warn -no-api-key on 0.0.0.0:{port}, an address other machines may reach: anyone " \
           "who reaches it can use the models and the admin routes" in line, line
    n = len(g.lines)
    g.proc.send_signal(signal.SIGHUP)
    g.wait_log(r"reloaded \(SIGHUP\)", start=n)
    g.wait_log(r"-no-api-key on 0\.0\.0\.0:\d+", start=n)
    n = len(g.lines)
    cfg.write_text(cfg.read_text() + f"admin_api_key: {ADMIN}\n")
    g.proc.send_signal(signal.SIGHUP)
    m = g.wait_log(r"-no-api-key on 0\.0\.0\.0:\d+, .* the models \(the admin routes still need "
                   r"admin_api_key\)", start=n)
    assert len(warnings_for(g, n)) == 1, m


def test_no_warning_on_loopback_or_with_a_key(models_dir, start_goinfer, tmp_path):
    cfg = tmp_path / "local.yml"
    cfg.write_text(f"models_dir: {models_dir}\nlisten:\n  \"127.0.0.1:0\": goinfer\n"
                   "  \"[::1]:0\": openai\n")
    g = start_goinfer(None, args=["-config", str(cfg), "-no-api-key"], config=False)
    keyed_cfg = tmp_path / "keyed.yml"
    keyed_cfg.write_text(f"models_dir: {models_dir}\napi_key: {API_KEY}\n"
                         "listen:\n  \"0.0.0.0:0\": goinfer\n")
    keyed = start_goinfer(None, args=["-config", str(keyed_cfg)], config=False)
    assert not warnings_for(g) and not warnings_for(keyed), g.log() + keyed.log()
