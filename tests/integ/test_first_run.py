"""What a new user meets first (issue 11, item 5, in part): the version, a -help that lists
every variable, answers that say what to do (Allow on 405, WWW-Authenticate on 401), and
GI_DEFAULT_MODEL in the seed's own form, a file name."""
import re
import subprocess

from conftest import GOINFER, auth, need


def test_version_and_help():
    for flag in ("-version", "--version"):
        p = subprocess.run([need(GOINFER), flag], capture_output=True, text=True, timeout=10)
        assert p.returncode == 0 and re.fullmatch(r"goinfer \S+\n", p.stdout), (p.stdout, p.stderr)
    p = subprocess.run([need(GOINFER), "-help"], capture_output=True, text=True, timeout=10)
    for name in ("GI_MODELS_DIR", "GI_API_KEY", "GI_ADMIN_API_KEY", "GI_TUNNEL_TOKEN",
                 "GI_DEFAULT_MODEL", "-version"):
        assert name in p.stderr, name


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


def test_make_run_takes_the_key_goinfer_yml_holds(models_dir, tmp_path):
    """make run used to start -no-api-key unless GI_API_KEY was exported, so the key -write
    put in goinfer.yml was ignored (a request without it got 200)."""
    import os
    import signal
    from conftest import ROOT, BUILD, llama_exe
    import httpx

    (tmp_path / "goinfer.yml").write_text(
        f"models_dir: {models_dir}\napi_key: run-key-0123456789abcdef\n"
        "listen:\n  \"127.0.0.1:0\": goinfer\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env.update(BUILD=str(BUILD), GI_LLAMA_EXE=llama_exe())
    p = subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh")], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in p.stderr:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            port = port or (m and m.group(1))
            if "goinfer ready" in line:
                break
        assert port, "goinfer did not start"
        url = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(url).status_code == 401
        ok = httpx.get(url, headers={"Authorization": "Bearer run-key-0123456789abcdef"})
        assert ok.status_code == 200
    finally:
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=20)[0]
    assert "The API key is goinfer.yml's" in out and 'Authorization: Bearer $KEY' in out, out
    assert "http://localhost:4444/ui" in out
