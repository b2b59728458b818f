"""Virtual keys (issue 13, items 2-4): created, listed, updated and revoked through /api/keys and
`goinfer keys`; admitted, reserved and settled on every request against the real llama-server
and tiny models; budgets that concurrency cannot overrun; rates; browser tokens bound to an
origin (Chromium); settled spend that survives kill -9."""
import concurrent.futures
import http.server
import json
import os
import shutil
import signal
import sqlite3
import tempfile
import subprocess
import threading
import time
from pathlib import Path

import httpx

from conftest import API_KEY, GOINFER, ROOT, auth, stop_clean
from test_tunnel import chat as tunnel_chat, gpu_models, net, nodes, one_client  # noqa: F401

CHAT = "/v1/chat/completions"


def create(client, g, **spec):
    r = client.post(g.url() + "/api/keys", headers=auth(), json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def bearer(secret, **more):
    return {"Authorization": f"Bearer {secret}", **more}


def chat_body(model="tiny-a", max_tokens=2, **more):
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}], **more}


def body_bytes(body):
    return len(json.dumps(body).encode())


def post_chat(client, g, secret, body, **headers):
    # the bytes sent are the bytes reserved for: serialise once, here
    return client.post(g.url() + CHAT, headers={**bearer(secret), **headers,
                                                "Content-Type": "application/json"},
                       content=json.dumps(body).encode())


def key_state(client, g, which):
    r = client.get(g.url() + f"/api/keys/{which}", headers=auth())
    assert r.status_code == 200, r.text
    return r.json()


def wait_settled(client, g, which, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        k = key_state(client, g, which)
        if k["ledger"]["pending"] == 0 and k["tokens"]["reserved"] == 0:
            return k
        time.sleep(0.05)
    raise AssertionError(f"key {which} never settled: {k}")


def cli(state, *args):
    return subprocess.run([str(GOINFER), "keys", "-state-dir", str(state), *args],
                          capture_output=True, text=True, timeout=30)


def test_api_create_list_update_revoke(models_dir, start_goinfer, client, tmp_path):
    g = start_goinfer(models_dir)
    k = create(client, g, name="app-one", models=["tiny-*"], budget_usd=5,
               budget_usd_period="monthly", rpm=100, price_prompt=0.000001,
               price_completion=0.000002)
    secret = k["secret"]
    assert secret.startswith(f"gk-{k['id']}-") and k["state"] == "active"
    assert k["usd"]["limit"] == 5 and k["usd"]["resets"] > time.time()
    # a second key of the same name is refused
    r = client.post(g.url() + "/api/keys", headers=auth(), json={"name": "app-one"})
    assert r.status_code == 409
    r = client.post(g.url() + "/api/keys", headers=auth(), json={"name": "x", "rpm": "many"})
    assert r.status_code == 400 and "rpm" in r.json()["error"]["message"]
    # the key works on the inference routes, and nowhere else
    r = post_chat(client, g, secret, chat_body())
    assert r.status_code == 200, r.text
    assert client.get(g.url() + "/v1/models", headers=bearer(secret)).status_code == 200
    r = client.get(g.url() + "/api/keys", headers=bearer(secret))
    assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]
    assert client.get(g.url() + "/running", headers=bearer(secret)).status_code == 403
    assert client.get(g.url() + "/upstream/tiny-a/slots", headers=bearer(secret)).status_code == 403
    # listed with its spend, never with its secret
    listing = client.get(g.url() + "/api/keys", headers=auth())
    assert listing.status_code == 200 and secret not in listing.text
    assert secret.split("-")[2] not in listing.text
    one = wait_settled(client, g, "app-one")
    assert one["ledger"]["requests"] == 1 and one["usd"]["spent"] > 0
    assert one["usd"]["spent"] == one["ledger"]["usd"]
    # updated: only the fields given change
    r = client.patch(g.url() + f"/api/keys/{k['id']}", headers=auth(), json={"rpm": 7})
    assert r.status_code == 200 and r.json()["rpm"] == 7 and r.json()["models"] == ["tiny-*"]
    r = client.patch(g.url() + "/api/keys/app-one", headers=auth(), json={"budget_usd_period": "hourly"})
    assert r.status_code == 400
    assert key_state(client, g, "app-one")["budget_usd_period"] == "monthly"
    # revoked: 401 with a clear message
    r = client.delete(g.url() + "/api/keys/app-one", headers=auth())
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    r = post_chat(client, g, secret, chat_body())
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert client.delete(g.url() + "/api/keys/nope", headers=auth()).status_code == 404
    # a wrong secret for a real id is just an invalid key
    r = post_chat(client, g, f"gk-{k['id']}-" + "0" * 64, chat_body())
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key"
    # the static key still works, unlimited
    assert client.post(g.url() + CHAT, headers=auth(), json=chat_body()).status_code == 200
    # the secret is in no log line, and the audit trail names the actions
    assert secret not in g.log() and secret.split("-")[2] not in g.log()
    audit = client.get(g.url() + "/api/audit", headers=auth()).text
    assert "key.create" in audit and "key.revoke" in audit and secret not in audit
    # the activity says which key a request came with
    act = client.get(g.url() + "/api/activity", headers=auth()).json()["data"]
    assert any(a.get("key") == "app-one" for a in act)


def test_cli_with_goinfer_stopped_and_running(models_dir, start_goinfer, client, tmp_path):
    state = tmp_path / "state"
    p = cli(state, "create", "offline", "--models", "tiny-a", "--budget-tokens", "100000",
            "--budget-tokens-period", "daily", "--max-tokens", "16")
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    secret = made["secret"]
    assert "shown once" in p.stderr and made["models"] == ["tiny-a"]
    assert made["tokens"]["limit"] == 100000 and made["max_tokens"] == 16
    p = cli(state, "list")
    assert p.returncode == 0 and secret not in p.stdout and "offline" in p.stdout
    g = start_goinfer(models_dir)  # the same GI_STATE_DIR
    assert post_chat(client, g, secret, chat_body()).status_code == 200
    # created while Goinfer runs: usable within a second or so
    p = cli(state, "create", "online", "--rpm", "50")
    assert p.returncode == 0, p.stderr
    online = json.loads(p.stdout)["secret"]
    deadline = time.monotonic() + 5
    while post_chat(client, g, online, chat_body()).status_code != 200:
        assert time.monotonic() < deadline, "the running Goinfer never saw the new key"
        time.sleep(0.2)
    p = cli(state, "update", "online", "--models", "tiny-b")
    assert p.returncode == 0 and json.loads(p.stdout)["models"] == ["tiny-b"]
    deadline = time.monotonic() + 5
    while post_chat(client, g, online, chat_body()).status_code != 403:
        assert time.monotonic() < deadline, "the running Goinfer never saw the update"
        time.sleep(0.2)
    p = cli(state, "revoke", "online")
    assert p.returncode == 0 and json.loads(p.stdout)["state"] == "revoked"
    deadline = time.monotonic() + 5
    while (r := post_chat(client, g, online, chat_body())).status_code != 401:
        assert time.monotonic() < deadline, "the running Goinfer never saw the revocation"
        time.sleep(0.2)
    assert "revoked" in r.json()["error"]["message"]
    assert cli(state, "revoke", "nope").returncode == 2
    shown = cli(state, "show", "offline")
    assert shown.returncode == 0 and json.loads(shown.stdout)["ledger"]["requests"] >= 0
    assert secret not in g.log() and online not in g.log()


def test_budget_exhausted_at_the_right_request(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    k = create(client, g, name="small", budget_tokens=400, budget_tokens_period="daily")
    body = chat_body(max_tokens=4)
    worst = body_bytes(body) + 4
    served = 0
    for _ in range(40):
        spent = wait_settled(client, g, "small")["tokens"]["spent"]
        r = post_chat(client, g, k["secret"], body)
        if spent + worst > 400:
            assert r.status_code == 402, (spent, worst, r.text)
            err = r.json()["error"]
            assert err["type"] == "insufficient_quota" and "resets" in err["message"]
            day = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() + 86400))
            assert day in err["message"], err["message"]
            break
        assert r.status_code == 200, (spent, worst, r.text)
        served += 1
    else:
        raise AssertionError("the budget never ran out")
    assert served >= 1
    final = wait_settled(client, g, "small")
    assert final["tokens"]["spent"] <= 400 and final["ledger"]["requests"] == served


def test_200_concurrent_requests_overspend_at_most_one_reservation(models_dir, start_goinfer,
                                                                   client):
    g = start_goinfer(models_dir)
    k = create(client, g, name="burst", budget_tokens=1000, budget_usd=0.002,
               price_prompt=0.000001, price_completion=0.000002)
    body = chat_body(max_tokens=3)
    worst = body_bytes(body) + 3
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)

    with httpx.Client(timeout=120, limits=limits) as c:
        def one(_):
            return post_chat(c, g, k["secret"], body).status_code

        with concurrent.futures.ThreadPoolExecutor(200) as pool:
            codes = list(pool.map(one, range(200)))
    assert set(codes) <= {200, 402}, codes
    assert codes.count(200) >= 1 and codes.count(402) >= 1
    final = wait_settled(client, g, "burst")
    assert final["tokens"]["spent"] <= 1000 + worst, final
    assert final["usd"]["spent"] <= 0.002 + worst * 0.000002, final
    assert final["ledger"]["requests"] == codes.count(200)


def test_requests_per_minute(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    k = create(client, g, name="slow", rpm=3)
    for _ in range(3):
        assert client.get(g.url() + "/v1/models", headers=bearer(k["secret"])).status_code == 200
    r = post_chat(client, g, k["secret"], chat_body())
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "3 requests per minute" in r.json()["error"]["message"]
    # tokens per minute: the first request's settled tokens use the minute up
    k = create(client, g, name="thin", tpm=1)
    assert post_chat(client, g, k["secret"], chat_body()).status_code == 200
    wait_settled(client, g, "thin")
    r = post_chat(client, g, k["secret"], chat_body())
    assert r.status_code == 429 and "1 tokens per minute" in r.json()["error"]["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_expired_key_model_patterns_and_max_tokens_cap(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    short = create(client, g, name="short", expires="1s")
    time.sleep(1.2)
    r = post_chat(client, g, short["secret"], chat_body())
    assert r.status_code == 401 and "expired at" in r.json()["error"]["message"]
    only_b = create(client, g, name="only-b", models=["tiny-b"], max_tokens=5)
    r = post_chat(client, g, only_b["secret"], chat_body("tiny-a"))
    assert r.status_code == 403 and "may not use model 'tiny-a'" in r.json()["error"]["message"]
    r = post_chat(client, g, only_b["secret"], chat_body("tiny-b", max_tokens=6))
    assert r.status_code == 400 and "cap" in r.json()["error"]["message"]
    # no max_tokens: the cap is written in, so llama-server stops there
    body = {"model": "tiny-b", "messages": [{"role": "user", "content": "hi"}]}
    r = post_chat(client, g, only_b["secret"], body)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 5


def test_browser_token_in_chromium(models_dir, start_goinfer, client, tmp_path):
    page_dir = tmp_path / "site"
    page_dir.mkdir()
    g = start_goinfer(models_dir)
    # two sites: the app's, and another that got hold of the token
    sites = [subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "0", "--bind", "127.0.0.1"],
                              cwd=page_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    try:
        ports = [int(s.stdout.readline().split("port ")[1].split()[0]) for s in sites]
        app, other = (f"http://127.0.0.1:{p}" for p in ports)
        k = create(client, g, name="web", origins=[app], models=["tiny-*"], budget_tokens=100000)
        # the app's server mints a token for its page (the key stays on the server)
        r = client.post(g.url() + "/v1/tokens", headers=bearer(k["secret"]),
                        json={"origin": app, "models": ["tiny-a"], "ttl": 300, "budget_tokens": 2000})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert token.startswith("gt-") and r.json()["expires"] > time.time() + 250
        # both sites serve the documented example page, and the token its server hands out
        page = (ROOT / "docs" / "browser-token.html").read_text()
        (page_dir / "browser-token.html").write_text(page.replace("https://goinfer.example.com", g.url()))
        (page_dir / "goinfer-token").write_text(json.dumps({"token": token}))
        r = client.post(g.url() + "/v1/tokens", headers=bearer(k["secret"]),
                        json={"origin": other})
        assert r.status_code == 403  # not an origin of the key's
        r = client.post(g.url() + "/v1/tokens", headers={"Authorization": f"Bearer {token}",
                                                         "Origin": app}, json={"origin": app})
        assert r.status_code == 403  # a token mints no token
        env = {**os.environ, "GOINFER": g.url(), "TOKEN": token, "APP": app, "OTHER": other}
        p = subprocess.run(["node", "browser_token.mjs"], cwd=ROOT / "tests" / "client", env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["app"]["status"] == 200 and out["app"]["content"] is not None, out
        assert out["other"]["error"], out  # the browser refuses: no CORS grant for that origin
        assert out["model_b"]["status"] == 403, out  # outside the token's models
        # from elsewhere (not a browser) it is refused too: CORS knows no such origin, and
        # without an Origin the token is not bound to anything it could check
        r = post_chat(client, g, token, chat_body(), Origin=other)
        assert r.status_code == 403 and "not allowed" in r.json()["error"]["message"]
        r = post_chat(client, g, token, chat_body())
        assert r.status_code == 403 and "bound to the origin" in r.json()["error"]["message"]
        assert post_chat(client, g, token, chat_body(), Origin=app).status_code == 200
        # revoking the key revokes its tokens
        assert client.delete(g.url() + "/api/keys/web", headers=auth()).status_code == 200
        r = post_chat(client, g, token, chat_body(), Origin=app)
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
        assert token not in g.log()
    finally:
        for s in sites:
            s.kill()
            s.wait()


def test_kill_9_loses_no_settled_spend(models_dir, start_goinfer, client, tmp_path):
    g = start_goinfer(models_dir)
    k = create(client, g, name="durable", budget_tokens=10_000_000)
    done = []  # (time the answer was whole, tokens)
    stop = threading.Event()

    def loop():
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    r = post_chat(c, g, k["secret"], chat_body(max_tokens=2))
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    u = r.json()["usage"]
                    done.append((time.monotonic(), u["prompt_tokens"] + u["completion_tokens"]))

    threads = [threading.Thread(target=loop) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(3)
    killed_at = time.monotonic()
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    # every answer whole 200 ms before the kill had been settled and committed (the worker
    # commits within a few ms of the end of a request)
    before = [n for t, n in done if t < killed_at - 0.2]
    assert len(before) > 10
    db = sqlite3.connect(tmp_path / "state" / "keys.db")
    rows, tokens = db.execute("SELECT count(*), total(tokens) FROM spend").fetchone()
    spent = db.execute("SELECT tok_spent FROM keys WHERE name='durable'").fetchone()[0]
    db.close()
    assert rows >= len(before) and tokens >= sum(before)
    assert rows <= len(done) + 6  # nothing counted twice
    assert abs(spent - tokens) < 1e-6  # the key's total is the sum of its rows
    # and a restarted Goinfer starts from it
    g2 = start_goinfer(models_dir)
    assert abs(key_state(client, g2, "durable")["tokens"]["spent"] - tokens) < 1e-6


def test_openai_sdk_with_a_virtual_key(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    k = create(client, g, name="sdk", models=["tiny-a"], budget_tokens=100000)
    env = {**os.environ, "GOINFER_URL": g.url() + "/v1", "GOINFER_KEY": k["secret"],
           "GOINFER_MODEL": "tiny-a"}
    p = subprocess.run(["node", "--test", "vkey_sdk.test.mjs"], cwd=ROOT / "tests" / "client",
                       env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    final = wait_settled(client, g, "sdk")
    assert final["ledger"]["requests"] >= 2 and final["tokens"]["spent"] > 0


class FakeCloud(http.server.BaseHTTPRequestHandler):
    """FAKE cloud provider (OpenRouter's shape): every answer's usage carries its cost, in USD;
    streamed, in the last chunk. It records the key it was given."""
    keys = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeCloud.keys.append(self.headers.get("Authorization"))
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.0125}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for chunk in ({"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
                          {"choices": [], "usage": usage}):
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            return
        out = json.dumps({"id": "c1", "object": "chat.completion", "model": body["model"],
                          "choices": [{"index": 0, "message": {"role": "assistant",
                                                               "content": "Hi"}}],
                          "usage": usage}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def test_cloud_road_settles_the_reported_cost(start_goinfer, client, tmp_path):
    from test_swapconf import config
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        swap = f"peers:\n  cloud:\n    proxy: http://127.0.0.1:{srv.server_port}\n" \
               "    apiKey: sk-provider-secret\n    models: [fake-gpt]\n"
        empty = tmp_path / "no-models"
        empty.mkdir()
        g = start_goinfer(None, args=["-config", str(config(tmp_path, swap, empty))], config=False)
        # the price per token only sizes the reservation: the provider's cost is what settles
        k = create(client, g, name="cloud", models=["cloud/*"], budget_usd=0.03,
                   price_prompt=0.00001, price_completion=0.0001)
        for stream in (False, True):
            r = post_chat(client, g, k["secret"], chat_body("cloud/fake-gpt", max_tokens=10,
                                                            stream=stream))
            assert r.status_code == 200, r.text
        assert FakeCloud.keys[-1] == "Bearer sk-provider-secret"  # never the virtual key
        final = wait_settled(client, g, "cloud")
        assert abs(final["usd"]["spent"] - 0.025) < 1e-9, final
        # 0.005 left, and the next request may cost up to ~0.0019: served; then refused
        r = post_chat(client, g, k["secret"], chat_body("cloud/fake-gpt", max_tokens=10))
        assert r.status_code == 200
        r = post_chat(client, g, k["secret"], chat_body("cloud/fake-gpt", max_tokens=10))
        assert r.status_code == 402 and "USD" in r.json()["error"]["message"]
        assert "sk-provider-secret" not in r.text and "sk-provider-secret" not in g.log()
    finally:
        srv.shutdown()


def test_tunnel_road_settles_the_gpu_machines_usage(net, nodes, gpu_models):
    """A virtual key on a server whose model runs on a GPU machine behind a tunnel: admitted and
    reserved on the server, and settled to the usage llama-server reported through the tunnel
    (not to the worst case)."""
    t = one_client(net, nodes, gpu_models / "tiny-a", "tiny-a")
    admin = ["-H", f"Authorization: Bearer {API_KEY}", "-H", "Content-Type: application/json"]
    r = net.curl(t.u, *admin, f"{t.srv.api}/api/keys", "-d",
                 json.dumps({"name": "far", "models": ["tiny-*"], "budget_tokens": 100000}))
    secret = json.loads(r.stdout)["secret"]
    used = 0
    for stream in (False, True):
        r = net.curl(t.u, "-H", f"Authorization: Bearer {secret}", f"{t.srv.api}{CHAT}", "-d",
                     tunnel_chat("tiny-a", stream=stream, tokens=3))
        assert r.returncode == 0, r.stdout
        last = json.loads([line for line in r.stdout.splitlines()
                           if '"usage"' in line or '"timings"' in line][-1].removeprefix("data: "))
        if "usage" in last:
            used += last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
        else:  # a stream: llama-server's timings (the prompt it read, its cache, generated)
            tm = last["timings"]
            used += tm["prompt_n"] + tm.get("cache_n", 0) + tm["predicted_n"]
    t.srv.wait_log(r"model=tiny-a backend=tunnel status=200")
    deadline = time.monotonic() + 10
    while True:
        k = json.loads(net.curl(t.u, *admin, f"{t.srv.api}/api/keys/far").stdout)
        if k["tokens"]["reserved"] == 0 and k["ledger"]["pending"] == 0:
            break
        assert time.monotonic() < deadline, k
        time.sleep(0.1)
    assert k["tokens"]["spent"] == used and k["ledger"]["requests"] == 2, (k, used)
    r = net.curl(t.u, "-H", f"Authorization: Bearer {secret}", f"{t.srv.api}{CHAT}", "-d",
                 tunnel_chat("other", stream=False))
    assert '"code":403' in r.stdout.replace(" ", ""), r.stdout
    assert secret not in t.cli.log()  # the GPU machine never sees the virtual key


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def start_postgres():
    """A real PostgreSQL of our own: a folder owned by postgres, a Unix socket in it, no TCP."""
    d = Path(tempfile.mkdtemp(prefix="goinfer-pg-"))
    d.chmod(0o755)
    subprocess.run(["chown", "postgres:postgres", str(d)], check=True)
    data = d / "data"
    port = 20000 + os.getpid() % 20000
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data),
                    "-A", "trust"], check=True, capture_output=True)
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data),
                    "-o", f"-k {d} -p {port} -c listen_addresses=''", "-l", str(d / "log"),
                    "-w", "start"], check=True, capture_output=True)
    return d, data, f"postgresql:///postgres?host={d}&port={port}&user=postgres"


def stop_postgres(d, data):
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data),
                    "-m", "fast", "-w", "stop"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def test_two_servers_share_keys_and_spend_through_postgresql(models_dir, start_goinfer, client,
                                                            tmp_path):
    d, data, url = start_postgres()
    try:
        g1 = start_goinfer(models_dir, env={"GI_LEDGER": url, "GI_STATE_DIR": str(tmp_path / "s1")})
        g2 = start_goinfer(models_dir, env={"GI_LEDGER": url, "GI_STATE_DIR": str(tmp_path / "s2")})
        assert url not in g1.log() and "ledger in PostgreSQL" in g1.log()
        body = chat_body(max_tokens=2)
        worst = body_bytes(body) + 2
        k = create(client, g1, name="shared", budget_tokens=worst * 6)
        # made on one server, usable on the other within a second or so
        deadline = time.monotonic() + 5
        while post_chat(client, g2, k["secret"], body).status_code != 200:
            assert time.monotonic() < deadline, "the second server never saw the key"
            time.sleep(0.2)
        assert post_chat(client, g1, k["secret"], body).status_code == 200
        # both settled into one total, which each server reads back
        wait_settled(client, g1, "shared")
        wait_settled(client, g2, "shared")
        time.sleep(1.5)
        s1, s2 = (key_state(client, g, "shared") for g in (g1, g2))
        assert s1["ledger"]["requests"] == 2 and s1["tokens"]["spent"] == s2["tokens"]["spent"]
        assert s1["tokens"]["spent"] == s1["ledger"]["tokens"] > 0
        # spent on both until one refuses; the other then refuses too
        codes = []
        for i in range(20):
            g = (g1, g2)[i % 2]
            codes.append(post_chat(client, g, k["secret"], body).status_code)
            wait_settled(client, g, "shared")
            time.sleep(1.2)  # the other server reads the shared total every second
            if codes[-1] == 402:
                break
        assert codes[-1] == 402 and set(codes[:-1]) == {200}, codes
        other = (g1, g2)[len(codes) % 2]
        assert post_chat(client, other, k["secret"], body).status_code == 402
        final = key_state(client, g1, "shared")
        assert final["tokens"]["spent"] <= worst * 6, final
        # the command line on the same ledger: listed, revoked for both servers
        p = subprocess.run([str(GOINFER), "keys", "-ledger", url, "list"], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0 and "shared" in p.stdout and k["secret"] not in p.stdout
        p = subprocess.run([str(GOINFER), "keys", "-ledger", url, "revoke", "shared"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        for g in (g1, g2):
            deadline = time.monotonic() + 5
            while (r := post_chat(client, g, k["secret"], body)).status_code != 401:
                assert time.monotonic() < deadline, "a server never saw the revocation"
                time.sleep(0.2)
            assert "revoked" in r.json()["error"]["message"]
        for g in (g1, g2):  # queued settlements committed at exit, cleanly (ASan builds too)
            stop_clean(g)
    finally:
        stop_postgres(d, data)
