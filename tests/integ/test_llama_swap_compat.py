"""A llama-swap configuration loads as llama-swap loads it (issue 11, item 1): keys it documents
that Goinfer does not implement yet are each one warning (also listed by GET /running for /ui),
unknown keys in its file are warnings, model-level macros, ttl: -1, cmd with comment lines and
continuations, group members and preload ids that name no model are warnings; the models still
answer. globalTTL, apiKeys, setParams/setParamsByID, routing.router.settings.groups and peers
are honoured, each shown by what the real llama-server (or a peer) does. goinfer.yml itself
stays strict."""
import base64
import time

import httpx

from conftest import API_KEY, auth, llama_exe
from test_swapconf import CHAT, config, post, running, start


def test_a_llama_swap_file_with_keys_we_do_not_implement(models_dir, tmp_path, start_goinfer,
                                                          client):
    swap = f"""
logLevel: info
logToStdout: "proxy"
logTimeFormat: rfc3339
sendLoadingState: true
includeAliasesInList: true
globalTTL: 300
apiKeys: ["sk-a"]
someFutureKey: {{nested: true}}
routing: {{router: {{use: matrix, settings: {{groups: {{}}, matrix: {{}}}}}}, scheduler: {{}}}}
peers: {{}}
macros:
  exe: {llama_exe()}
models:
  a:
    macros:
      file: {models_dir}/tiny-a.gguf
      exe: ${{exe}}
    ttl: -1
    sendLoadingState: false
    unloadTimeout: 5
    capabilities: {{in: [text], tools: true}}
    filters:
      stripParams: "temperature"
      setParams: {{top_k: 1}}
    cmd: |
      # the real llama-server, with a comment and continuations
      ${{exe}} \\
        -m ${{file}} \\
        # --flash-attn on
        --host 127.0.0.1 --port ${{PORT}} -c 512 --no-warmup
groups:
  g1:
    members: [a, not-a-model]
hooks:
  on_startup:
    preload: [ghost]
"""
    g = start(start_goinfer, models_dir, config(tmp_path, swap, models_dir))
    not_yet = ("logToStdout", "logTimeFormat", "unloadTimeout", "matrix",
               "scheduler")
    for key in not_yet:
        g.wait_log(rf"{key} is llama-swap's and Goinfer does not implement it yet; ignored")
    g.wait_log(r"routing\.router\.use: matrix is llama-swap's and Goinfer does not implement it "
               r"yet; groups decide")
    for key in ("globalTTL", "apiKeys", "routing", "peers", "setParams", "capabilities",
                "includeAliasesInList", "sendLoadingState"):
        assert f"{key} is llama-swap's" not in g.log()  # honoured now
    g.wait_log(r"unknown key 'someFutureKey' in llama-swap\.yml|unknown key 'someFutureKey'")
    assert "sendLoadingState" not in g.log()  # honoured now, at both levels: no warning
    g.wait_log(r"group g1: member not-a-model is no model here; ignored")
    g.wait_log(r"hooks.on_startup.preload: ghost is no model here; not preloaded")
    r = post(client, g, "a")
    assert r.status_code == 200, r.text
    g.wait_log(r"model=a backend=local status=200")
    warnings = client.get(g.url() + "/running", headers=auth()).json()["warnings"]  # for /ui
    for key in not_yet:
        assert any(f"{key} is llama-swap's" in w for w in warnings), warnings
    assert any("unknown key 'someFutureKey'" in w for w in warnings), warnings
    assert any("group g1: member not-a-model is no model here" in w for w in warnings), warnings
    assert any("preload: ghost is no model here" in w for w in warnings), warnings
    page = client.get(g.url() + "/ui").text + client.get(g.url() + "/ui/app.js").text
    assert "run.warnings" in page and "Configuration warnings" in page


def test_goinfer_yml_stays_strict(models_dir, tmp_path, start_goinfer):
    cfg = tmp_path / "strict.yml"
    cfg.write_text(f"models_dir: {models_dir}\napi_key: k-0123456789abcdef\nlimitz: {{}}\n")
    g = start_goinfer(None, args=["-config", str(cfg)], config=False, ready=False)
    assert g.proc.wait(15) != 0
    g.wait_log(r"strict\.yml:3: unknown key 'limitz'")


def chat_tokens(client, g, model, headers=None, **kw):
    r = client.post(g.url() + "/v1/chat/completions", headers=headers or auth(),
                    json={**CHAT, "model": model, "max_tokens": 8, **kw})
    assert r.status_code == 200, r.text
    return r.json()["usage"]["completion_tokens"]


def test_global_ttl_api_keys_set_params_routing_groups(models_dir, tmp_path, start_goinfer,
                                                       client):
    swap = f"""
globalTTL: 3
apiKeys: ["sk-swap-1", "${{env.GOINFER_TEST_SWAP_KEY}}"]
macros:
  common: {llama_exe()} --host 127.0.0.1 --port ${{PORT}} -c 512 --no-warmup
models:
  short:
    cmd: ${{common}} -m {models_dir}/tiny-a.gguf
    filters:
      setParams: {{max_tokens: 2, ignore_eos: true}}
      setParamsByID:
        "${{MODEL_ID}}:long": {{max_tokens: 5}}
  keeper:
    ttl: 0
    cmd: ${{common}} -m {models_dir}/sub/tiny-b.gguf
routing:
  router:
    settings:
      groups:
        together: {{swap: false, exclusive: false, members: [short, keeper]}}
"""
    g = start_goinfer(None, args=["-config", str(config(tmp_path, swap))], config=False,
                      env={"GOINFER_TEST_SWAP_KEY": "sk-swap-2"})
    # apiKeys: Bearer, Basic password and x-api-key, on every listener, beside Goinfer's key
    basic = base64.b64encode(b"anyone:sk-swap-2").decode()
    for url in (g.url(), g.url("openai")):
        for h in ({"Authorization": "Bearer sk-swap-1"}, {"Authorization": f"Basic {basic}"},
                  {"x-api-key": "sk-swap-2"}, auth()):
            r = client.get(url + "/v1/models", headers=h)
            assert r.status_code == 200, (h, r.text)
        for h in ({"Authorization": "Bearer sk-swap-3"}, {"x-api-key": "nope"}, {},
                  {"Authorization": "Basic " + base64.b64encode(b"sk-swap-1:").decode()}):
            assert client.get(url + "/v1/models", headers=h).status_code == 401, h
    # routing.router.settings.groups: keeper and short run together (by default one at a time)
    assert chat_tokens(client, g, "keeper", headers={"x-api-key": "sk-swap-1"}) > 0
    # setParams: the model gets max_tokens 2 whatever the client asked (8); setParamsByID's
    # "short:long" is an alias of short that gets 5
    assert chat_tokens(client, g, "short") == 2
    assert chat_tokens(client, g, "short:long", max_tokens=1) == 5
    assert running(client, g) == ["keeper", "short"]
    # globalTTL: short (no ttl) stops after 3 s idle; keeper (ttl: 0) stays
    deadline = time.monotonic() + 20
    while running(client, g) != ["keeper"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(client, g) == ["keeper"]
    g.wait_log(r"short.*ttl: idle too long|ttl: idle too long.*short")
    # apiKeys open the admin routes when no admin key is set, as Goinfer's user key does
    assert client.post(g.url() + "/unload", headers={"Authorization": "Bearer sk-swap-1"}
                       ).status_code == 200


def test_peer_gets_its_injected_key(models_dir, tmp_path, start_goinfer, client):
    """A second Goinfer, with its own key only, is the peer; the first forwards to it with the
    peer's apiKey in place of the caller's."""
    peer = start_goinfer(models_dir, env={"GI_API_KEY": "sk-peer-only"})
    _, port = peer.ports["openai"]
    swap = f"""
peers:
  far:
    proxy: http://127.0.0.2:{port}/
    apiKey: ${{env.GOINFER_TEST_PEER_KEY}}
    models: [tiny-b, only-here]
    filters:
      setParams: {{max_tokens: 3, ignore_eos: true}}
  nokey:
    proxy: http://127.0.0.2:{port}
    models: [tiny-b]
"""
    empty = tmp_path / "no-models"
    empty.mkdir()
    g = start_goinfer(None, args=["-config", str(config(tmp_path, swap, empty))], config=False,
                      env={"GOINFER_TEST_PEER_KEY": "sk-peer-only"})
    ids = [m["id"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"]]
    assert {"far/tiny-b", "nokey/tiny-b", "far/only-here"} <= set(ids), ids
    one = client.get(g.url() + "/v1/models/far/tiny-b", headers=auth()).json()  # models.retrieve
    assert one["id"] == "far/tiny-b" and one["name"] == "far: tiny-b", one
    # the peer required its own key: it got it; the body's model became the peer's id, and the
    # peer's setParams reached the model (3 tokens asked for by nobody but the filter)
    assert chat_tokens(client, g, "far/tiny-b") == 3
    peer.wait_log(r"model=tiny-b backend=local status=200")
    g.wait_log(r"model=far/tiny-b backend=peer status=200")
    # without a peer key, the caller's key never passes on: the peer refuses
    r = client.post(g.url("openai") + "/v1/chat/completions", headers=auth(),
                    json=dict(CHAT, model="nokey/tiny-b"))
    assert r.status_code == 401, r.text
    peer.wait_log(r"status=401")
    # a bare name one peer alone lists is that peer's
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json=dict(CHAT, model="only-here"))
    assert r.status_code == 404 and "sk-peer-only" not in r.text  # the peer's 404, relayed
    peer.wait_log(r"model=only-here backend=- status=404|model=only-here .*status=404")
    # "tiny-b" is listed by two peers: nobody's
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(), json=dict(CHAT, model="tiny-b"))
    assert r.status_code == 404, r.text
    assert "sk-peer-only" not in g.log()
    assert API_KEY not in peer.log()
    # a peer that is down: 502 that names the peer, never its key
    peer.stop()
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json=dict(CHAT, model="far/tiny-b"))
    assert r.status_code == 502 and "peer far" in r.text and "sk-peer-only" not in r.text, r.text
    assert "sk-peer-only" not in g.log()
