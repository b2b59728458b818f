"""What the listings and /props tell clients (issue 11, item 3): llama.cpp's router shape
(status, modalities, GET /props with "role":"router", /props?model=), llama-swap's fields
(name, description, capabilities, metadata with macros, includeAliasesInList), and the
llama-swap service's API surface on its own listener."""
from conftest import API_KEY, auth, llama_exe
from test_swapconf import post, start


def swap_config(tmp_path, models_dir, swap_yaml):
    d = tmp_path / "cfg"
    d.mkdir(exist_ok=True)
    (d / "goinfer.yml").write_text(
        f"models_dir: {models_dir}\napi_key: {API_KEY}\nlisten:\n"
        "  \"127.0.0.1:0\": goinfer\n  \"127.0.0.3:0\": llama-swap\n  \"127.0.0.2:0\": openai\n")
    (d / "llama-swap.yml").write_text(swap_yaml)
    return d / "goinfer.yml"


def listed(client, url):
    r = client.get(url, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "list"
    return {m["id"]: m for m in r.json()["data"]}


def test_router_props_and_per_model_props(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    props = client.get(g.url() + "/props", headers=auth()).json()
    assert props["role"] == "router" and props["models_autoload"] is True, props
    assert client.get(g.url("openai") + "/props", headers=auth()).status_code == 404
    r = client.get(g.url() + "/props?model=tiny-a&autoload=false", headers=auth())
    assert r.status_code == 400 and "not loaded" in r.json()["error"]["message"], r.text
    assert "tiny-a" not in client.get(g.url() + "/running", headers=auth()).text
    r = client.get(g.url() + "/props?model=tiny-a", headers=auth())  # loads it
    assert r.status_code == 200 and r.json()["model_path"].endswith("tiny-a.gguf"), r.text
    assert "role" not in r.json()
    r = client.get(g.url() + "/props?model=tiny-a&autoload=false", headers=auth())
    assert r.status_code == 200, r.text
    g.wait_log(r"GET /props model=tiny-a backend=- status=400")
    g.wait_log(r"req=6 GET /props model=tiny-a backend=local status=200")


def test_listings_in_llama_cpp_router_shape(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    v1 = listed(client, g.url() + "/v1/models")
    a = v1["tiny-a"]
    assert a["status"] == {"value": "unloaded"} and a["owned_by"] == "goinfer"
    assert a["architecture"] == {"input_modalities": ["text"], "output_modalities": ["text"]}
    assert a["context_length"] == 512 and a["meta"]["n_ctx"] == 512
    assert "path" not in a and "gguf" not in a  # files are for GET /models, not the API
    full = listed(client, g.url() + "/models")
    assert full["tiny-a"]["gguf"]["architecture"] == "llama" and full["tiny-a"]["size"] > 0
    assert set(full) == set(v1)


def test_llama_swap_fields_in_listings(models_dir, tmp_path, start_goinfer, client):
    swap = f"""
includeAliasesInList: true
macros:
  exe: {llama_exe()}
  temp: 0.7
models:
  coder:
    name: "  Tiny Coder  "
    description: A tiny model that codes
    aliases: [tc, tiny-coder]
    macros:
      ctx: 512
    metadata:
      temperature: ${{temp}}
      quoted: "${{temp}}"
      note: "runs ${{MODEL_ID}} at ${{ctx}}"
      ok: true
      list: [1, "two", "${{ctx}}"]
      context_length: 99
    capabilities:
      in: [text, image]
      out: [text]
      tools: true
      context: 4096
    cmd: ${{exe}} -m {models_dir}/tiny-a.gguf --port ${{PORT}} -c ${{ctx}} --no-warmup
"""
    g = start(start_goinfer, models_dir, swap_config(tmp_path, models_dir, swap))
    v1 = listed(client, g.url() + "/v1/models")
    c = v1["coder"]
    assert c["name"] == "Tiny Coder"
    assert c["description"] == "A tiny model that codes"
    assert c["architecture"] == {"input_modalities": ["text", "image"], "output_modalities": ["text"],
                                 "modality": "text+image->text"}
    assert c["capabilities"] == {"vision": True, "function_calling": True}
    assert c["supported_parameters"] == ["tools", "tool_choice"]
    assert c["context_length"] == 4096 and c["meta"]["n_ctx"] == 4096
    md = c["meta"]["llamaswap"]
    assert md["temperature"] == 0.7 and md["quoted"] == 0.7 and md["ok"] is True
    assert md["note"] == "runs coder at 512"
    assert md["list"] == [1, "two", 512] and "context_length" not in md
    assert md["type"] == "model" and md["aliases"] == ["tc", "tiny-coder"]
    for alias in ("tc", "tiny-coder"):
        assert v1[alias]["meta"]["llamaswap"]["type"] == "alias"
        assert v1[alias]["meta"]["llamaswap"]["modelID"] == "coder"
    assert post(client, g, "tc").status_code == 200
    assert listed(client, g.url() + "/v1/models")["coder"]["status"] == {"value": "loaded"}
    one = client.get(g.url() + "/v1/models/coder", headers=auth()).json()
    assert one["description"] == "A tiny model that codes" and one["status"]["value"] == "loaded"


def test_llama_swap_service_has_llama_swaps_api(models_dir, tmp_path, start_goinfer, client):
    swap = f"""
models:
  a:
    cmd: {llama_exe()} -m {models_dir}/tiny-a.gguf --port ${{PORT}} -c 512 --no-warmup
"""
    g = start(start_goinfer, models_dir, swap_config(tmp_path, models_dir, swap))
    ls = g.url("llama-swap")
    assert ls != g.url("openai")
    assert post(client, g, "a").status_code == 200
    r = client.get(ls + "/running", headers=auth())
    assert r.status_code == 200 and [x["model"] for x in r.json()["running"]] == ["a"], r.text
    assert client.get(ls + "/logs", headers=auth()).status_code == 200
    assert client.get(ls + "/ui").status_code == 200
    assert "a" in listed(client, ls + "/v1/models")
    assert client.get(ls + "/unload", headers=auth()).status_code == 200
    g.wait_log(r"model a: stopping \(unloaded\)")
    for path in ("/running", "/logs", "/ui", "/unload"):  # the plain OpenAI listener has none
        assert client.get(g.url("openai") + path, headers=auth()).status_code == 404, path


def test_openapi_describes_every_route(models_dir, start_goinfer, client):
    """GET /api/openapi.json is made from the route table: every route has a summary, and
    the key each needs."""
    g = start_goinfer(models_dir)
    doc = client.get(g.url() + "/api/openapi.json").json()  # public: it holds no secret
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "Goinfer"
    ops = [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()]
    assert len(ops) > 40
    undocumented = [f"{m.upper()} {p}" for p, m, op in ops if op["summary"] == "undocumented"]
    assert not undocumented, undocumented
    assert doc["paths"]["/unload"]["post"]["security"] == [{"admin": []}]
    assert doc["paths"]["/v1/models"]["get"]["security"] == [{"user": []}]
    assert "security" not in doc["paths"]["/health"]["get"]
