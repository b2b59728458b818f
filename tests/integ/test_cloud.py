"""Cloud upstreams (issue 13, item 1): an https:// peer in llama-swap's peers: syntax, reached
through libcurl, in front of a FAKE OpenRouter (tests/integ/fakes/fake_openrouter.py) with the
test's own CA, which Goinfer is told to trust (caFile). Through the official openai SDK: chat and
stream with the provider's usage and cost, its error codes passed on, a retry before the first
byte only, a stream cut mid-way, a slow first byte; and here: the client leaving cancels the
provider's request, a local model that cannot start falls back to the cloud model, the model
list is fetched with an allowlist, attribution headers are sent, and the provider key is in no
response, log line or page."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, ROOT, auth
from test_swapconf import config

PROVIDER_KEY = "sk-or-v1-FAKE-provider-key-0123456789"
FAKE = ROOT / "tests" / "integ" / "fakes" / "fake_openrouter.py"


def make_ca(d):
    """A CA and a server certificate for 127.0.0.1 signed by it, made with openssl."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key", "-out",
        d / "ca.pem", "-days", "2", "-subj", "/CN=FAKE OpenRouter test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "srv.key", "-out", d / "srv.csr",
        "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", d / "srv.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
        "-CAcreateserial", "-out", d / "srv.pem", "-days", "2", "-extfile", d / "ext.cnf")
    return d / "ca.pem", d / "srv.pem", d / "srv.key"


class Fake:
    def __init__(self, d):
        self.dir = d
        self.ca, cert, key = make_ca(d)
        self.log = d / "requests.jsonl"
        self.proc = subprocess.Popen([sys.executable, str(FAKE), "0", str(cert), str(key),
                                      PROVIDER_KEY, str(self.log), str(d)],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])
        self.url = f"https://127.0.0.1:{self.port}/api"

    def requests(self, model=None):
        if not self.log.exists():
            return []
        rows = [json.loads(x) for x in self.log.read_text().splitlines()]
        return [r for r in rows if model is None or r["model"] == model]


@pytest.fixture
def fake(tmp_path):
    d = tmp_path / "fake"
    d.mkdir()
    f = Fake(d)
    yield f
    f.proc.kill()
    f.proc.wait()


def swap_yaml(fake, tmp_path, extra=""):
    keyfile = tmp_path / "or.key"
    keyfile.write_text(PROVIDER_KEY + "\n")
    return f"""
peers:
  or:
    proxy: {fake.url}
    apiKeyFile: {keyfile}
    caFile: {fake.ca}
    headers:
      HTTP-Referer: https://app.example
      X-Title: Goinfer tests
    models: [fake/ok, fake/payment, fake/ratelimit, fake/down, fake/flaky, fake/cut,
             fake/slow, fake/endless, fake/big]
  badkey:
    proxy: {fake.url}
    apiKey: sk-or-v1-wrong
    caFile: {fake.ca}
    models: [other/not-allowed]
{extra}"""


def start_cloud(start_goinfer, fake, tmp_path, extra="", models_dir=None):
    empty = tmp_path / "no-models"
    empty.mkdir(exist_ok=True)
    cfg = config(tmp_path, swap_yaml(fake, tmp_path, extra), models_dir or empty)
    return start_goinfer(None, args=["-config", str(cfg)], config=False)


def chat(client, g, model, **kw):
    return client.post(g.url() + "/v1/chat/completions", headers=auth(),
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}], **kw})


def test_openai_sdk_through_goinfer_to_the_cloud(start_goinfer, fake, tmp_path, client):
    g = start_cloud(start_goinfer, fake, tmp_path)
    client_dir = ROOT / "tests" / "client"
    if not (client_dir / "node_modules" / "openai").exists():
        raise AssertionError("the openai npm package is missing: run `make setup`")
    env = dict(os.environ, GOINFER_URL=g.url() + "/v1", GOINFER_KEY=API_KEY)
    p = subprocess.run(["node", "--test", "cloud_sdk.test.mjs"], cwd=client_dir, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr + g.log()
    assert "# pass 7" in p.stdout and "# fail 0" in p.stdout, p.stdout
    # the provider got its key (never the caller's), the attribution headers and its own ids
    rows = fake.requests()
    assert all(r["key_ok"] for r in rows if r["title"]), rows  # peer or: the right key
    assert any(not r["key_ok"] for r in rows if not r["title"]), rows  # peer badkey
    ok = fake.requests("fake/ok")
    assert ok[0]["referer"] == "https://app.example" and ok[0]["title"] == "Goinfer tests"
    # a retry before the first byte only: 502 twice (one retry), a cut stream once, 402 once
    assert len(fake.requests("fake/down")) == 2
    assert len(fake.requests("fake/cut")) == 1
    assert len(fake.requests("fake/payment")) == 1
    # the provider's usage reached the request: the cost on the access line, tokens in activity
    g.wait_log(r"model=or/fake/ok backend=cloud status=200 .*total=[\d.]+ms cost=\$0\.000123")
    g.wait_log(r"model=fake/ok backend=cloud status=200 .* cost=\$0\.000123")  # streamed
    rows = client.get(g.url() + "/api/activity", headers=auth()).json()["data"]
    row = next(x for x in rows if x["model"] == "or/fake/ok")
    assert row["prompt_tokens"] == 7 and row["completion_tokens"] == 3 and row["backend"] == "cloud"

    g.wait_log(r"peer or for model fake/cut failed mid-response")
    assert PROVIDER_KEY not in g.log()


def test_a_retry_before_the_first_byte_hides_a_flaky_provider(start_goinfer, fake, tmp_path,
                                                              client):
    g = start_cloud(start_goinfer, fake, tmp_path)
    r = chat(client, g, "fake/flaky")
    assert r.status_code == 200 and r.json()["usage"]["cost"] == 0.000123, r.text
    assert len(fake.requests("fake/flaky")) == 2  # 503, then 200


def test_the_client_leaving_cancels_the_provider_request(start_goinfer, fake, tmp_path):
    g = start_cloud(start_goinfer, fake, tmp_path)
    with httpx.Client(timeout=10) as c:
        with c.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                      json={"model": "fake/endless", "stream": True,
                            "messages": [{"role": "user", "content": "go on"}]}) as r:
            assert r.status_code == 200
            got = b""
            for piece in r.iter_bytes():
                got += piece
                if got.count(b"data: ") >= 3:
                    break
        left = time.time()
    gone = fake.dir / "endless.gone"
    deadline = time.monotonic() + 5
    while not gone.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone.exists(), "the FAKE provider never saw its request end"
    assert float(gone.read_text()) - left < 1.0


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_slow_reader_holds_the_provider_back(start_goinfer, fake, tmp_path):
    """32 MiB streamed by the provider to a client that stops reading for a while: Goinfer
    pauses the transfer (its memory stays flat) and resumes it; every event arrives once, in
    order."""
    g = start_cloud(start_goinfer, fake, tmp_path)
    before = rss_kib(g.proc.pid)
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                      json={"model": "fake/big", "stream": True, "messages": []}) as r:
            it = r.iter_raw(65536)
            pieces = [next(it)]
            time.sleep(1.5)  # the provider has sent all it can; Goinfer must hold it back
            peak = rss_kib(g.proc.pid)
            pieces.extend(it)
    body = b"".join(pieces)
    assert peak - before < 16 * 1024, (before, peak)
    seq = [json.loads(line[6:])["i"] for line in body.split(b"\n\n")
           if line.startswith(b'data: {"i"')]
    assert seq == list(range(512)), seq[:5]
    assert body.endswith(b"data: [DONE]\n\n")


def test_fallback_from_a_local_model_that_cannot_start(start_goinfer, fake, tmp_path, client):
    broken = tmp_path / "broken-server"
    broken.write_text("#!/bin/sh\necho FAKE llama-server that cannot start >&2\nexit 1\n")
    broken.chmod(0o755)
    extra = f"""models:
  local-chat:
    cmd: {broken} --port ${{PORT}}
    fallback: or/fake/ok
  no-fallback:
    cmd: {broken} --port ${{PORT}}
"""
    g = start_cloud(start_goinfer, fake, tmp_path, extra)
    r = chat(client, g, "local-chat")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "FAKE hello", \
        r.text
    assert fake.requests("fake/ok")[-1]["key_ok"]  # the body's model became the provider's id
    g.wait_log(r"model local-chat cannot answer .*falling back to peer or model fake/ok")
    g.wait_log(r"model=local-chat backend=cloud status=200")
    r = chat(client, g, "no-fallback")
    assert r.status_code == 502, r.text
    # streaming takes the same road
    with client.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                       json={"model": "local-chat", "stream": True,
                             "messages": [{"role": "user", "content": "s"}]}) as s:
        body = s.read()
    assert s.status_code == 200 and b"data: [DONE]" in body and b'"cost":0.000123' in body
    # disabled on the admin page: straight to its fallback, no start tried
    r = client.post(g.url() + "/api/models/local-chat/disable", headers=auth())
    assert r.status_code == 200, r.text
    r = chat(client, g, "local-chat")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "FAKE hello"
    g.wait_log(r"model local-chat is disabled: falling back to peer or model fake/ok")
    r = client.post(g.url() + "/api/models/no-fallback/disable", headers=auth())
    assert chat(client, g, "no-fallback").status_code == 404


def test_a_fallback_that_names_no_peer_model_is_refused(start_goinfer, fake, tmp_path):
    extra = """models:
  m:
    cmd: /bin/false ${PORT}
    fallback: or/not-listed
"""
    empty = tmp_path / "no-models"
    empty.mkdir()
    cfg = config(tmp_path, swap_yaml(fake, tmp_path, extra), empty)
    g = start_goinfer(None, args=["-config", str(cfg)], config=False, ready=False)
    assert g.proc.wait(20) != 0
    assert "fallback or/not-listed is no peer's model" in g.log(), g.log()


def test_an_untrusted_certificate_is_refused(start_goinfer, fake, tmp_path, client):
    """Without caFile, the FAKE provider's certificate is not trusted: 502, nothing sent."""
    empty = tmp_path / "no-models"
    empty.mkdir()
    swap = f"""
peers:
  or:
    proxy: {fake.url}
    apiKey: {PROVIDER_KEY}
    models: [fake/ok]
"""
    g = start_goinfer(None, args=["-config", str(config(tmp_path, swap, empty))], config=False)
    r = chat(client, g, "fake/ok")
    assert r.status_code == 502 and "peer or" in r.text, r.text
    assert "certificate" in r.text.lower() or "ssl" in r.text.lower(), r.text
    assert PROVIDER_KEY not in r.text and PROVIDER_KEY not in g.log()
    assert fake.requests("fake/ok") == []


def test_the_provider_key_is_in_no_response_log_or_page(start_goinfer, fake, tmp_path, client):
    g = start_cloud(start_goinfer, fake, tmp_path)
    seen = []
    for model in ("fake/ok", "fake/payment", "fake/down", "badkey/other/not-allowed"):
        r = chat(client, g, model)
        seen.append(r.text + str(r.headers))
    for path in ("/v1/models", "/models", "/running", "/ui/", "/api/config", "/api/models",
                 "/metrics", "/logs", "/api/activity", "/api/audit", "/api/openapi.json",
                 "/v1/models/or/fake/ok", "/health"):
        r = client.get(g.url() + path, headers=auth())
        seen.append(f"{path} {r.status_code} {r.text} {r.headers}")
    everything = "\n".join(seen)
    assert "or/fake/ok" in everything  # the listings were read
    assert PROVIDER_KEY not in everything
    assert PROVIDER_KEY not in g.log()
    assert "apiKeyFile" in everything  # the config editor (/ui) shows where the key is
    # a key written literally in the file (peer badkey) is shown by the admin's config editor,
    # as the file is; it is in no answer to a request and no log line
    assert "sk-or-v1-wrong" not in "\n".join(seen[:4]) and "sk-or-v1-wrong" not in g.log()


def test_the_model_list_is_fetched_refreshed_and_filtered(start_goinfer, fake, tmp_path, client):
    """modelsRefresh: GET <proxy>/v1/models at start and every N s, with the key; allow: keeps
    the ids that match; the configured models stay."""
    extra = f"""  listed:
    proxy: {fake.url}
    apiKeyFile: {tmp_path / "or.key"}
    caFile: {fake.ca}
    modelsRefresh: 1
    allow: ["fake/o*", "fake/pay*"]
"""
    g = start_cloud(start_goinfer, fake, tmp_path, extra)
    g.wait_log(r"peer listed: 2 models from https://127\.0\.0\.1:\d+/api/v1/models \(\d+ listed\)")
    ids = [m["id"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"]]
    assert "listed/fake/ok" in ids and "listed/fake/payment" in ids, ids
    assert "listed/other/not-allowed" not in ids and "listed/fake/cut" not in ids, ids
    assert "or/fake/cut" in ids  # configured models are listed as before
    r = chat(client, g, "listed/fake/ok")
    assert r.status_code == 200, r.text
    assert chat(client, g, "listed/fake/cut").status_code == 404  # not allowed
    deadline = time.monotonic() + 10
    while len([r for r in fake.requests() if r["method"] == "GET"]) < 2:
        assert time.monotonic() < deadline, fake.requests()
        time.sleep(0.1)
    gets = [r for r in fake.requests() if r["method"] == "GET"]
    assert all(r["key_ok"] and r["path"] == "/api/v1/models" for r in gets), gets
    assert PROVIDER_KEY not in g.log()


def connect_proxy(seen):
    """A FAKE forward proxy that speaks CONNECT (what https_proxy names): notes each target in
    seen, then pipes bytes both ways. Returns its port."""
    import select
    import socket
    import threading

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)

    def pipe(a, b):
        with a, b:
            while True:
                r, _, _ = select.select([a, b], [], [], 30)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)

    def serve(c):
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.recv(4096)
        target = head.split()[1].decode()
        seen.append(target)
        host, port = target.rsplit(":", 1)
        up = socket.create_connection((host, int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipe(c, up)

    def accept():
        while True:
            c, _ = lsock.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock.getsockname()[1]


def test_https_proxy_is_honoured(start_goinfer, fake, tmp_path, client):
    """libcurl takes https_proxy (and no_proxy) from Goinfer's environment: the provider is
    reached through the CONNECT proxy, the TLS still ends at the provider (caFile verifies it)."""
    seen = []
    port = connect_proxy(seen)
    empty = tmp_path / "no-models"
    empty.mkdir()
    cfg = config(tmp_path, swap_yaml(fake, tmp_path), empty)
    g = start_goinfer(None, args=["-config", str(cfg)], config=False,
                      env={"https_proxy": f"http://127.0.0.1:{port}", "no_proxy": "",
                           "NO_PROXY": "", "HTTPS_PROXY": ""})
    r = chat(client, g, "fake/ok")
    assert r.status_code == 200, r.text
    assert seen == [f"127.0.0.1:{fake.port}"], seen


def test_http2_to_a_provider_that_offers_it(start_goinfer, fake, tmp_path, client):
    """An nginx over HTTPS that offers HTTP/2 (ALPN h2) is the FAKE provider here: requests go
    over HTTP/2 (its access log says so), and a 32 MiB stream to a reader that stops for a while
    is paused and resumed on its HTTP/2 stream, every event once, in order."""
    www = tmp_path / "www"
    www.mkdir()
    with open(www / "big.txt", "w") as f:
        for i in range(512):
            f.write("data: " + json.dumps({"i": i, "pad": "x" * 65000}) + "\n\n")
        f.write("data: [DONE]\n\n")
    nd = tmp_path / "nginx"
    nd.mkdir()
    ports = []
    for _ in range(2):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    static, h2 = ports
    user = "user root;\n" if os.geteuid() == 0 else ""  # the files are under pytest's 0700 folder
    (nd / "nginx.conf").write_text(user + f"""worker_processes 1;
daemon off;
pid {nd}/nginx.pid;
error_log {nd}/error.log warn;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {nd};
  log_format proto '$server_protocol $request_method $request_uri $http_authorization';
  server {{ listen 127.0.0.1:{static}; access_log off; root {www};
           default_type text/event-stream; }}
  server {{
    listen 127.0.0.1:{h2} ssl http2;
    ssl_certificate {fake.dir}/srv.pem; ssl_certificate_key {fake.dir}/srv.key;
    access_log {nd}/access.log proto;
    location / {{ rewrite ^ /big.txt break; proxy_pass http://127.0.0.1:{static};
                 proxy_method GET; proxy_buffering off; }}
  }}
}}
""")
    nginx = subprocess.Popen(["nginx", "-c", str(nd / "nginx.conf"), "-p", str(nd)])
    try:
        extra = f"""  h2:
    proxy: https://127.0.0.1:{h2}/api
    apiKeyFile: {tmp_path / "or.key"}
    caFile: {fake.ca}
    models: [fake/big2]
"""
        g = start_cloud(start_goinfer, fake, tmp_path, extra)
        with httpx.Client(timeout=30) as c:
            with c.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                          json={"model": "h2/fake/big2", "stream": True, "messages": []}) as r:
                it = r.iter_raw(65536)
                pieces = [next(it)]
                time.sleep(1.5)
                pieces.extend(it)
        body = b"".join(pieces)
        seq = [json.loads(line[6:])["i"] for line in body.split(b"\n\n")
               if line.startswith(b'data: {"i"')]
        assert r.status_code == 200 and seq == list(range(512)), seq[:5]
        assert body.endswith(b"data: [DONE]\n\n")
        log = (nd / "access.log").read_text()
        assert log.startswith("HTTP/2.0 POST /api/v1/chat/completions Bearer "), log
        assert f"Bearer {PROVIDER_KEY}" in log  # the provider got its key, over HTTP/2
    finally:
        nginx.terminate()
        nginx.wait()
