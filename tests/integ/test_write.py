"""-write: generates goinfer.yml (fresh key, 0600, .bak kept) and llama-swap.yml that goinfer
itself then serves from, plain and GI_ variants."""
import os
import re
import stat
import subprocess

from conftest import GOINFER, Goinfer, llama_exe


def write(cwd, models_dir, *flags):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env.update(GI_MODELS_DIR=str(models_dir), GI_LLAMA_EXE=llama_exe())
    p = subprocess.run([str(GOINFER), "-write", *flags], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stderr


def serve_written(cwd):
    """goinfer serving from the files -write made in cwd, on ports the kernel picks instead of
    :4444 and :5555."""
    text = (cwd / "goinfer.yml").read_text()
    (cwd / "goinfer.yml").write_text(
        text.replace('":4444": goinfer', '"127.0.0.1:0": goinfer').replace('":5555": openai', '"127.0.0.2:0": openai'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    return Goinfer([], env, cwd).wait_ready()


DEBUG_KEY = "7aea109636aefb984b13f9b6927cd174425a1e05ab5f2e3935ddfeb183099465"


def entry(swap, name):
    """The lines of one model's entry in a written llama-swap.yml."""
    m = re.search(r'^  "%s":.*\n((?:    .*\n)+)' % re.escape(name), swap, re.M)
    assert m, f"no entry {name} in:\n{swap}"
    return m.group(1)


def chat(client, g, key, model):
    r = client.post(g.url() + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                    json={"model": model, "max_tokens": 2,
                          "messages": [{"role": "user", "content": "Hello"}]})
    assert r.status_code == 200, r.text + g.log()
    return r.json()


def test_write_generates_working_config(models_dir, tmp_path, client):
    out = write(tmp_path, models_dir)
    assert "wrote ./goinfer.yml" in out
    g_yml = (tmp_path / "goinfer.yml").read_text()
    key = re.search(r'api_key: "([0-9a-f]{64})"', g_yml).group(1)
    assert key != DEBUG_KEY
    assert stat.S_IMODE((tmp_path / "goinfer.yml").stat().st_mode) == 0o600
    swap = (tmp_path / "llama-swap.yml").read_text()
    # the seed's llama-swap.yml: top-level keys, and per model a plain entry and a GI_ variant
    # that is unlisted and sends the plain name upstream (useModelName)
    assert re.search(r"^logLevel: info\b", swap, re.M) and re.search(r"^startPort: 6000\b", swap, re.M)
    assert re.search(r"^healthCheckTimeout: \d+", swap, re.M)
    plain, gi = entry(swap, "tiny-a"), entry(swap, "GI_tiny-a")
    assert "${cmd-common} -m " in plain and "unlisted" not in plain and "useModelName" not in plain
    assert "${cmd-goinfer} -m " in gi and "unlisted: true" in gi
    assert re.search(r'useModelName: "tiny-a"', gi)
    for e in (plain, gi):
        assert 'proxy: "http://127.0.0.1:${PORT}"' in e and "checkEndpoint: /health" in e
    assert "--verbosity" not in swap  # llama.args.debug only with -write -debug
    # a second -write keeps the first files and makes a new key
    write(tmp_path, models_dir)
    assert (tmp_path / "goinfer.yml.bak").read_text() == g_yml
    assert key not in (tmp_path / "goinfer.yml").read_text()
    key = re.search(r'api_key: "([0-9a-f]{64})"', (tmp_path / "goinfer.yml").read_text()).group(1)
    g = serve_written(tmp_path)
    try:
        h = {"Authorization": f"Bearer {key}"}
        ids = [m["id"] for m in client.get(g.url() + "/v1/models", headers=h).json()["data"]]
        assert "tiny-a" in ids and "GI_tiny-a" not in ids
        for model in ("tiny-a", "GI_tiny-a"):
            r = client.post(g.url() + "/completions", headers=h,
                            json={"model": model, "prompt": "Hello", "n_predict": 2})
            assert r.status_code == 200, r.text
            chat(client, g, key, model)
        # the first model took startPort (when free), as the file says
        g.wait_log(r"model tiny-a: starting: .* --port (600\d|\d+) ")
        assert "debug key" not in g.log()
    finally:
        assert g.stop() == 0, g.log()


def test_write_debug_writes_the_debug_key(models_dir, tmp_path, client):
    """The seed: -write -debug 'sets the debug API key'; as the seed's Goinfer does, it also
    writes logLevel: debug and bakes llama.args.debug into the command lines (a configured cmd
    gets no llama.args when goinfer runs). Goinfer then warns that the key is public."""
    out = write(tmp_path, models_dir, "-debug")
    assert "DEBUG API key" in out and "for development only" in out
    g_yml = (tmp_path / "goinfer.yml").read_text()
    assert f'api_key: "{DEBUG_KEY}"' in g_yml and "DEBUG key" in g_yml
    swap = (tmp_path / "llama-swap.yml").read_text()
    assert re.search(r"^logLevel: debug\b", swap, re.M)
    assert re.search(r"^  cmd-common: .* --verbosity 3\"", swap, re.M), swap
    assert re.search(r'useModelName: "tiny-a"', entry(swap, "GI_tiny-a"))
    write(tmp_path, models_dir, "-debug")  # the same key every time
    assert f'api_key: "{DEBUG_KEY}"' in (tmp_path / "goinfer.yml").read_text()
    g = serve_written(tmp_path)
    try:
        g.wait_log(r"warn the API key is the debug key of goinfer -write -debug")
        for model in ("tiny-a", "GI_tiny-a"):
            chat(client, g, DEBUG_KEY, model)
        g.wait_log(r"model GI_tiny-a: starting: .* --verbosity 3 .*--jinja")
    finally:
        assert g.stop() == 0, g.log()
    # a public key guards nothing where other machines reach: refused there
    cfg = tmp_path / "goinfer.yml"
    cfg.write_text(cfg.read_text().replace('"127.0.0.2:0": openai', '"0.0.0.0:0": openai'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    p = subprocess.run([str(GOINFER)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and "public debug key" in p.stderr and "0.0.0.0" in p.stderr, p.stderr


def test_write_with_no_api_key_placeholder(models_dir, tmp_path):
    write(tmp_path, models_dir, "-no-api-key")
    assert 'api_key: "PLEASE SET YOUR API KEY"' in (tmp_path / "goinfer.yml").read_text()


def test_written_cmds_keep_odd_file_names_whole(tmp_path, client):
    """From issue 9: a written cmd keeps each name and flag one argument, without the flags
    Goinfer sets, and leaves out what llama-swap's syntax would read as a macro."""
    from conftest import mkmodel
    from test_child_hardening import listeners
    models = tmp_path / "odd"
    models.mkdir()
    for i, f in enumerate(["sp ace.gguf", "x&-host=0.0.0.0&c=256.gguf", "${PORT}.gguf"]):
        mkmodel(models / f, "-n", "tiny", "-s", str(30 + i))
    write(tmp_path, models)
    swap = (tmp_path / "llama-swap.yml").read_text()
    assert "'-c' '256'" in swap and "'--host'" not in swap
    assert "# left out: " in swap and '"${PORT}":' not in swap
    key = re.search(r'api_key: "([0-9a-f]{64})"', (tmp_path / "goinfer.yml").read_text()).group(1)
    text = (tmp_path / "goinfer.yml").read_text()
    (tmp_path / "goinfer.yml").write_text(text.replace('":4444": goinfer', '"127.0.0.1:0": goinfer')
                                          .replace('":5555": openai', '"127.0.0.2:0": openai'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    g = Goinfer([], env, tmp_path).wait_ready()
    try:
        h = {"Authorization": f"Bearer {key}"}
        for model in ("sp ace", "x"):
            r = client.post(g.url() + "/completions", headers=h,
                            json={"model": model, "prompt": "Hello", "n_predict": 2})
            assert r.status_code == 200, r.text + g.log()
            child = {x["model"]: x for x in client.get(g.url() + "/running", headers=h).json()["running"]}[model]
            assert listeners(int(child["proxy"].rsplit(":", 1)[1])) == ["0100007F"]
    finally:
        assert g.stop() == 0, g.log()


def test_written_models_keep_what_discovery_knows(tmp_path, client):
    """After -write the generated entries shadowed the discovered files: GET /models lost
    every GGUF field and a model with a projector said vision: false (issue 11, item 2)."""
    from conftest import mkmodel
    models = tmp_path / "m"
    models.mkdir()
    mkmodel(models / "tiny-v.gguf", "-n", "tiny-v", "--mmproj")  # and mmproj-tiny-v.gguf
    mkmodel(models / "tiny-t.gguf", "-n", "tiny-t", "-s", "2")
    write(tmp_path, models)
    key = re.search(r'api_key: "([0-9a-f]{64})"', (tmp_path / "goinfer.yml").read_text()).group(1)
    g = serve_written(tmp_path)
    try:
        h = {"Authorization": f"Bearer {key}"}
        rows = {m["id"]: m for m in client.get(g.url() + "/models", headers=h).json()["data"]}
        for name in ("tiny-v", "tiny-t"):
            assert rows[name]["path"] == str(models / f"{name}.gguf"), rows[name]
            assert rows[name]["gguf"]["architecture"] == "llama" and rows[name]["size"] > 0, rows[name]
        assert rows["tiny-v"]["vision"] is True and rows["tiny-t"]["vision"] is False
        r = client.post(g.url() + "/completions", headers=h,  # its own cmd still runs it
                        json={"model": "tiny-t", "prompt": "Hello", "n_predict": 2})
        assert r.status_code == 200, r.text
    finally:
        assert g.stop() == 0, g.log()


def test_written_macros_keep_quoted_llama_args(models_dir, tmp_path, client):
    """llama.args from goinfer.yml go into the macros as YAML strings: a quote in them (a JSON
    argument) broke the cmd-goinfer line."""
    (tmp_path / "goinfer.yml").write_text(
        "llama:\n  args:\n"
        "    common: -c 512 --no-warmup\n"
        "    goinfer: \"--jinja --chat-template-kwargs '{\\\"enable_thinking\\\": false}'\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env.update(GI_MODELS_DIR=str(models_dir), GI_LLAMA_EXE=llama_exe())
    p = subprocess.run([str(GOINFER), "-write", "-config", "goinfer.yml"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "common: \"-c 512 --no-warmup\"" in (tmp_path / "goinfer.yml").read_text()
    key = re.search(r'api_key: "([0-9a-f]{64})"', (tmp_path / "goinfer.yml").read_text()).group(1)
    g = serve_written(tmp_path)
    try:
        chat(client, g, key, "GI_tiny-a")
        g.wait_log(r"""model GI_tiny-a: starting: .* -c 512 --no-warmup --jinja """
                   r"""--chat-template-kwargs '\{"enable_thinking": false\}' -m """)
    finally:
        assert g.stop() == 0, g.log()
