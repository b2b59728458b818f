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
