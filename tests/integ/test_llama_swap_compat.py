"""A llama-swap configuration loads as llama-swap loads it (issue 11, item 1, in part): keys it
documents that Goinfer does not implement yet are each one warning, unknown keys in its file are
warnings, model-level macros, ttl: -1, cmd with comment lines and continuations, group members and preload ids that
name no model are warnings; the models still answer. goinfer.yml itself stays strict."""
from conftest import auth, llama_exe
from test_swapconf import config, post, start


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
routing: {{router: {{settings: {{groups: {{}}}}}}}}
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
    capabilities: [chat]
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
    for key in ("logToStdout", "logTimeFormat", "includeAliasesInList",
                "globalTTL", "apiKeys", "routing", "peers", "unloadTimeout", "capabilities",
                "setParams"):
        g.wait_log(rf"{key} is llama-swap's and Goinfer does not implement it yet; ignored")
    g.wait_log(r"unknown key 'someFutureKey' in llama-swap\.yml|unknown key 'someFutureKey'")
    assert "sendLoadingState" not in g.log()  # honoured now, at both levels: no warning
    g.wait_log(r"group g1: member not-a-model is no model here; ignored")
    g.wait_log(r"hooks.on_startup.preload: ghost is no model here; not preloaded")
    r = post(client, g, "a")
    assert r.status_code == 200, r.text
    g.wait_log(r"model=a backend=local status=200")


def test_goinfer_yml_stays_strict(models_dir, tmp_path, start_goinfer):
    cfg = tmp_path / "strict.yml"
    cfg.write_text(f"models_dir: {models_dir}\napi_key: k-0123456789abcdef\nlimitz: {{}}\n")
    g = start_goinfer(None, args=["-config", str(cfg)], config=False, ready=False)
    assert g.proc.wait(15) != 0
    g.wait_log(r"strict\.yml:3: unknown key 'limitz'")
