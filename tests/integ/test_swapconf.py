"""The model section in llama-swap's syntax: macros, aliases, unlisted, groups, ttl, preload,
concurrencyLimit, filters.strip_params, useModelName; and llama-swap.yml read unchanged."""
import concurrent.futures as cf
import time
from pathlib import Path

import httpx

from conftest import API_KEY, auth, llama_exe

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def config(tmp_path, swap_yaml, models_dir=None):
    """goinfer.yml with listeners, and the llama-swap part in llama-swap.yml beside it."""
    d = tmp_path / "cfg"
    d.mkdir(exist_ok=True)
    (d / "goinfer.yml").write_text(
        (f"models_dir: {models_dir}\n" if models_dir else "") + f"api_key: {API_KEY}\n"
        "listen:\n  \"127.0.0.1:0\": goinfer\n  \"127.0.0.2:0\": openai\n")
    (d / "llama-swap.yml").write_text(swap_yaml)
    return d / "goinfer.yml"


def start(start_goinfer, models_dir, cfg):
    return start_goinfer(models_dir, args=["-config", str(cfg)], config=False)


def running(client, g):
    return sorted(x["model"] for x in client.get(g.url() + "/running", headers=auth()).json()["running"])


def post(client, g, model, **kw):
    return client.post(g.url() + "/v1/chat/completions", headers=auth(), json=dict(CHAT, model=model, **kw))


def test_real_llama_swap_yml_with_macros_aliases_unlisted(models_dir, tmp_path, start_goinfer, client):
    swap = f"""
healthCheckTimeout: 60
startPort: 0
macros:
  exe: {llama_exe()}
  cmd-common: ${{exe}} --host 127.0.0.1 --port ${{PORT}} -c 512 --no-warmup
  cmd-goinfer: ${{cmd-common}} --alias ${{MODEL_ID}}
models:
  "tiny/a:f32":
    description: "tiny a"
    aliases: [alpha, first]
    cmd: ${{cmd-goinfer}} -m {models_dir}/tiny-a.gguf
  hidden-b:
    unlisted: true
    cmd: ${{cmd-common}} -m {models_dir}/sub/tiny-b.gguf
"""
    g = start(start_goinfer, models_dir, config(tmp_path, swap, models_dir))
    ids = [m["id"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"]]
    assert "tiny/a:f32" in ids and "hidden-b" not in ids
    assert "tiny-a" in ids  # discovered models are still served beside configured ones
    r = post(client, g, "alpha")
    assert r.status_code == 200, r.text
    assert running(client, g) == ["tiny/a:f32"]
    assert post(client, g, "hidden-b").status_code == 200  # unlisted, yet usable by name
    r = client.get(g.url() + "/upstream/tiny/a:f32/props", headers=auth())
    assert r.status_code == 200 and "tiny-a.gguf" in r.json()["model_path"]


def fake_models(**extra):
    lines = ["models:"]
    for name, opts in extra.items():
        kind = name.split("_")[0]
        lines.append(f"  {name}:")
        lines.append(f"    cmd: {FAKE} -m /tmp/{kind}-{name}.gguf --port ${{PORT}}")
        for k, v in opts.items():
            lines.append(f"    {k}: {v}")
    return "\n".join(lines) + "\n"


def test_groups_swap_exclusive_persistent(models_dir, tmp_path, start_goinfer, client):
    swap = fake_models(echo_p={}, echo_a={}, echo_b={}, echo_x={}) + """
groups:
  forever:
    persistent: true
    swap: false
    exclusive: false
    members: [echo_p]
  pair:
    swap: true
    exclusive: false
    members: [echo_a, echo_b]
  solo:
    swap: true
    exclusive: true
    members: [echo_x]
"""
    g = start(start_goinfer, models_dir, config(tmp_path, swap))
    for m in ["echo_p", "echo_a"]:
        assert post(client, g, m).status_code == 200
    assert running(client, g) == ["echo_a", "echo_p"]
    assert post(client, g, "echo_b").status_code == 200  # swaps within its group only
    assert running(client, g) == ["echo_b", "echo_p"]
    assert post(client, g, "echo_x").status_code == 200  # exclusive: stops others, not persistent
    assert running(client, g) == ["echo_p", "echo_x"]


def test_ttl_stops_an_idle_model(models_dir, tmp_path, start_goinfer, client):
    g = start(start_goinfer, models_dir, config(tmp_path, fake_models(echo_t={"ttl": 1})))
    assert post(client, g, "echo_t").status_code == 200
    t0 = time.monotonic()
    g.wait_log(r"model echo_t: stopping \(ttl: idle too long\)", timeout=10)
    assert 0.8 < time.monotonic() - t0 < 3
    g.wait_log(r"model echo_t: stopped")


def test_preload_starts_models_at_boot(models_dir, tmp_path, start_goinfer, client):
    swap = fake_models(echo_pre={}) + "hooks:\n  on_startup:\n    preload: [echo_pre]\n"
    g = start(start_goinfer, models_dir, config(tmp_path, swap))
    g.wait_log(r"model echo_pre: ready")
    assert running(client, g) == ["echo_pre"]


def test_concurrency_limit_answers_429(models_dir, tmp_path, start_goinfer):
    g = start(start_goinfer, models_dir, config(tmp_path, fake_models(slow_c={"concurrencyLimit": 1})))

    def one(_):
        with httpx.Client(timeout=30) as c:
            return post(c, g, "slow_c")

    with cf.ThreadPoolExecutor(3) as ex:
        results = list(ex.map(one, range(3)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) >= 1 and codes.count(429) >= 1, codes
    err = next(r for r in results if r.status_code == 429).json()["error"]
    assert "concurrencyLimit" in err["message"]


def test_strip_params_and_use_model_name(models_dir, tmp_path, start_goinfer, client):
    swap = fake_models(echo_f={"useModelName": "upstream-name",
                               "filters": "\n      strip_params: \"temperature, top_k\""})
    g = start(start_goinfer, models_dir, config(tmp_path, swap))
    r = post(client, g, "echo_f", temperature=0.1, top_k=3, top_p=0.5)
    assert r.status_code == 200
    got = r.json()
    assert "temperature" not in got and "top_k" not in got and got["top_p"] == 0.5
    assert got["model"] == "upstream-name"


def test_cmd_stop_runs_instead_of_sigterm(models_dir, tmp_path, start_goinfer, client):
    mark = tmp_path / "stopped-by"
    swap = fake_models(echo_s={"cmdStop": f"\"/bin/sh -c 'echo ${{PID}} > {mark}; kill ${{PID}}'\""})
    g = start(start_goinfer, models_dir, config(tmp_path, swap))
    assert post(client, g, "echo_s").status_code == 200
    pid = client.get(g.url() + "/running", headers=auth()).json()["running"][0]["pid"]
    assert client.post(g.url() + "/unload", headers=auth()).status_code == 200
    g.wait_log(r"model echo_s: stopped")
    assert mark.read_text().strip() == str(pid)
    assert "cmdStop: /bin/sh" in g.log()
