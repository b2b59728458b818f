"""What a new user meets first (issue 11, item 5, in part): the version, a -help that lists
every variable, answers that say what to do (Allow on 405, WWW-Authenticate on 401), and
GI_DEFAULT_MODEL in the seed's own form, a file name."""
import os
import re
import subprocess

from conftest import GOINFER, auth, need


def test_version_and_help():
    for flag in ("-version", "--version"):
        p = subprocess.run([need(GOINFER), flag], capture_output=True, text=True, timeout=10)
        assert p.returncode == 0 and re.fullmatch(r"goinfer \S+\n", p.stdout), (p.stdout, p.stderr)
    p = subprocess.run([need(GOINFER), "-help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    # every variable the code reads and every flag it parses, found in the source itself
    from conftest import ROOT
    src = "\n".join(f.read_text() for f in (ROOT / "src").rglob("*.c"))
    variables = set(re.findall(r'(?:getenv|env_string)\("((?:GI|GOINFER)_[A-Z_]+)"', src))
    conf_c = (ROOT / "src" / "conf" / "conf.c").read_text()
    flags = set(re.findall(r'strn?cmp\(a, "([a-z-]+)=?"', conf_c))
    assert {"GI_MODELS_DIR", "GI_LLAMA_EXE", "GI_API_KEY", "GOINFER_CACHE"} <= variables
    assert {"config", "write", "no-api-key", "debug", "q", "version", "help", "h"} <= flags
    for name in variables:
        assert re.search(r"^  %s " % name, p.stderr, re.M) or f" {name} " in p.stderr, name
    for flag in flags:
        assert re.search(r"(^  |\(also |, )-%s\b" % re.escape(flag), p.stderr, re.M), flag


def test_a_405_says_allow_and_a_401_says_how(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url() + "/health", headers=auth())
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    r = client.get(g.url() + "/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_default_model_as_a_file_name(models_dir, start_goinfer, client):
    """The seed writes GI_DEFAULT_MODEL=name.gguf: it was accepted, then every request that
    named no model got 404."""
    g = start_goinfer(models_dir, env={"GI_DEFAULT_MODEL": "tiny-b.gguf"})
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json={"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    g.wait_log(r"model=tiny-b backend=local status=200")
    bad = start_goinfer(models_dir, env={"GI_DEFAULT_MODEL": "nothing-like-it.gguf"})
    bad.wait_log(r"default_model nothing-like-it.gguf is no model nor model file here")


def test_llama_servers_own_page_through_upstream(models_dir, start_goinfer, client):
    """/upstream/<model>/ forwards Accept-Encoding: llama-server's page is gzip only and
    answered 415 without it."""
    g = start_goinfer(models_dir)
    r = client.get(g.url() + "/upstream/tiny-a/", headers=dict(auth(), **{
        "Accept-Encoding": "gzip"}))
    assert r.status_code == 200, (r.status_code, r.text[:200])
    assert r.headers.get("content-encoding") == "gzip" and b"<html" in r.content.lower()


def run_sh(cwd):
    """scripts/run.sh (what make run starts) in cwd: (process, goinfer's port, stdout reader).
    The caller ends it with end_run_sh."""
    import os
    from conftest import ROOT, BUILD, llama_exe
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env.update(BUILD=str(BUILD), GI_LLAMA_EXE=llama_exe())
    p = subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh")], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        port = port or (m and m.group(1))
        if "goinfer ready" in line or " fatal " in line:
            break
    if not port:
        p.kill()
        raise AssertionError("goinfer did not start: " + line + p.communicate()[0])
    return p, port


def end_run_sh(p):
    import signal
    p.send_signal(signal.SIGTERM)
    return p.communicate(timeout=20)[0]


def test_make_run_takes_the_key_goinfer_yml_holds(models_dir, tmp_path):
    """make run used to start -no-api-key unless GI_API_KEY was exported, so the key -write
    put in goinfer.yml was ignored (a request without it got 200)."""
    import httpx

    (tmp_path / "goinfer.yml").write_text(
        f"models_dir: {models_dir}\napi_key: run-key-0123456789abcdef\n"
        "listen:\n  \"127.0.0.1:0\": goinfer\n")
    p, port = run_sh(tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(url).status_code == 401
        ok = httpx.get(url, headers={"Authorization": "Bearer run-key-0123456789abcdef"})
        assert ok.status_code == 200
    finally:
        out = end_run_sh(p)
    assert "The API key is goinfer.yml's" in out and 'Authorization: Bearer $KEY' in out, out
    assert "http://localhost:4444/ui  Goinfer's admin page" in out
    assert "http://localhost:4444/    llama.cpp's web UI" in out


def test_make_run_prints_commands_that_work_with_a_written_key(models_dir, tmp_path):
    """The KEY=... command make run printed kept the quotes -write puts around the key, so
    every printed curl got 401; a -write -no-api-key placeholder made goinfer refuse to start."""
    import httpx
    from test_write import write

    def listen_anywhere():
        text = (tmp_path / "goinfer.yml").read_text()
        (tmp_path / "goinfer.yml").write_text(
            text.replace('":4444": goinfer', '"127.0.0.1:0": goinfer').replace(
                '  ":5555": openai\n', ""))

    write(tmp_path, models_dir)
    listen_anywhere()
    p, port = run_sh(tmp_path)
    out = end_run_sh(p)
    line = re.search(r"^   (KEY=.*)$", out, re.M).group(1)
    key = subprocess.run(["bash", "-c", line + '; printf %s "$KEY"'], cwd=tmp_path,
                         capture_output=True, text=True).stdout
    assert re.fullmatch(r"[0-9a-f]{64}", key), (line, key)
    assert f'"{key}"' in (tmp_path / "goinfer.yml").read_text()
    curl = re.search(r"^   (curl -s -H .* localhost:4444/v1/models)$", out, re.M).group(1)
    p, port = run_sh(tmp_path)
    try:
        r = subprocess.run(["bash", "-c", line + "; " + curl.replace("localhost:4444",
                                                                      f"127.0.0.1:{port}")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert '"object":"list"' in r.stdout, (curl, r.stdout, r.stderr)
    finally:
        end_run_sh(p)
    write(tmp_path, models_dir, "-no-api-key")
    listen_anywhere()
    p, port = run_sh(tmp_path)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200
    finally:
        out = end_run_sh(p)
    assert "placeholder key of goinfer -write -no-api-key" in out and "No API key" in out


def own_llama_server(where):
    """A copy of the real llama-server in where/bin, with no UI folder anywhere near it (as an
    installed or hand-copied llama-server has none: its UI is built into the program)."""
    import shutil
    from conftest import llama_exe
    (where / "bin").mkdir(parents=True)
    exe = where / "bin" / "llama-server"
    shutil.copy2(llama_exe(), exe)
    return str(exe)


def test_root_with_a_users_own_llama_server_is_its_own_page(models_dir, start_goinfer, client,
                                                            tmp_path):
    """GI_LLAMA_EXE outside Goinfer's cache: / answered a JSON 404 and the log said nothing.
    Now / (and the assets the page asks for) come from a llama-server's own page, and the log
    says where the page comes from."""
    exe = own_llama_server(tmp_path / "own")
    g = start_goinfer(models_dir, env={"GI_LLAMA_EXE": exe})
    g.wait_log(r"web UI: llama-server's own page, proxied \(%s has no UI folder" % re.escape(exe))
    r = client.get(g.url() + "/")  # no key: the page is public, as the files are
    assert r.status_code == 200, (r.status_code, r.text[:300], g.log())
    assert r.headers["content-type"].startswith("text/html") and "<html" in r.text.lower()
    # the first model that can start (broken.gguf, first by name, cannot)
    g.wait_log(r"GET / model=split backend=local status=200")
    for asset in ("/favicon.ico", "/manifest.webmanifest"):
        assert client.get(g.url() + asset).status_code == 200, asset
    # an unknown path that names no file is not the page's: 404, and no model is asked
    r = client.get(g.url() + "/no-such-route")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    g.wait_log(r"GET /no-such-route model=- backend=- status=404")
    # a model already running serves the page: a page view never swaps it out
    r = client.post(g.url() + "/completions", headers=auth(),
                    json={"model": "tiny-b", "prompt": "Hi", "n_predict": 1})
    assert r.status_code == 200, r.text
    mark = len(g.lines)
    assert client.get(g.url() + "/").status_code == 200
    g.wait_log(r"GET / model=tiny-b backend=local status=200", start=mark)


def test_root_files_are_found_where_llama_cpp_puts_them(models_dir, start_goinfer, client,
                                                        tmp_path):
    """The UI folder is looked for where a llama.cpp build or its source tree keeps it; a
    symbolic link is followed to the llama-server it names."""
    from conftest import llama_exe

    def ui(d, text):
        d.mkdir(parents=True)
        (d / "index.html").write_text(f"<html>{text}</html>")

    layouts = {}
    # a build folder: build/bin/llama-server beside build/tools/ui/dist
    b = tmp_path / "llama.cpp" / "build"
    (b / "bin").mkdir(parents=True)
    os.symlink(llama_exe(), b / "bin" / "llama-server")
    ui(b / "tools" / "ui" / "dist", "build tree")
    layouts["build tree"] = (b / "bin" / "llama-server", b / "bin" / ".." / "tools" / "ui" / "dist")
    # an out-of-tree build whose CMakeCache.txt names the source tree holding a built UI
    src, out = tmp_path / "src-tree", tmp_path / "out"
    (out / "bin").mkdir(parents=True)
    os.symlink(llama_exe(), out / "bin" / "llama-server")
    (out / "CMakeCache.txt").write_text(f"FOO:BOOL=ON\nCMAKE_HOME_DIRECTORY:INTERNAL={src}\n")
    ui(src / "tools" / "ui" / "dist", "source tree")
    layouts["source tree"] = (out / "bin" / "llama-server", src / "tools" / "ui" / "dist")
    # a link in ~/bin to the cached llama-server: the files beside the real one
    (tmp_path / "home-bin").mkdir()
    os.symlink(llama_exe(), tmp_path / "home-bin" / "llama-server")
    real = os.path.realpath(llama_exe())
    layouts["cache"] = (tmp_path / "home-bin" / "llama-server",
                        os.path.join(os.path.dirname(real), "..", "ui"))
    for text, (exe, folder) in layouts.items():
        g = start_goinfer(models_dir, env={"GI_LLAMA_EXE": str(exe)})
        g.wait_log(r"web UI: files from %s$" % re.escape(str(folder)))
        r = client.get(g.url() + "/")
        assert r.status_code == 200 and "<html" in r.text, (text, r.status_code)
        if text != "cache":
            assert text in r.text
        assert g.stop() == 0


def test_root_of_the_cached_llama_server_is_still_its_files(models_dir, start_goinfer, client):
    from conftest import llama_exe
    g = start_goinfer(models_dir)
    folder = os.path.join(os.path.dirname(llama_exe()), "..", "ui")
    g.wait_log(r"web UI: files from %s$" % re.escape(folder))
    r = client.get(g.url() + "/")
    assert r.status_code == 200 and "<html" in r.text.lower()
    g.wait_log(r"GET / model=- backend=- status=200")  # from disk: no model started
    assert "starting:" not in g.log()


def test_root_says_why_there_is_no_page(models_dir, start_goinfer, client, tmp_path):
    """'web UI: none, because ...': llama-server's own page turned off in llama.args.common, or
    no listener with the goinfer service."""
    from conftest import API_KEY
    exe = tmp_path / "bin" / "llama-server"  # never started here: only its place matters
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o755)
    cfg = tmp_path / "no-ui.yml"
    cfg.write_text(f"models_dir: {models_dir}\napi_key: {API_KEY}\n"
                   "listen:\n  \"127.0.0.1:0\": goinfer\n"
                   "llama:\n  args:\n    common: -c 512 --no-ui\n")
    g = start_goinfer(models_dir, ["-config", str(cfg)], env={"GI_LLAMA_EXE": str(exe)},
                      config=False)
    g.wait_log(r"web UI: none, because %s has no UI folder beside it and llama.args.common "
               r"turns its own page off \(--no-ui\)" % re.escape(str(exe)))
    assert client.get(g.url() + "/").status_code == 404
    assert "starting:" not in g.log()
    cfg = tmp_path / "openai-only.yml"
    cfg.write_text(f"models_dir: {models_dir}\napi_key: {API_KEY}\n"
                   "listen:\n  \"127.0.0.1:0\": openai\n")
    g = start_goinfer(models_dir, ["-config", str(cfg)], config=False)
    g.wait_log(r"web UI: none, because no listen address offers the goinfer service")
