"""The admin app in Chromium, every page against the real llama-server (issue 12): Models
enable/disable, Activity after real chats, Settings with an error at its line then a save,
Files with an upload, Fleet. The screenshots land in GOINFER_ADMIN_SHOTS when set."""
import os
import subprocess
from pathlib import Path

from conftest import API_KEY, ROOT, auth, mkmodel


def test_every_page_in_chromium(start_goinfer, client, tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    mkmodel(d / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
    mkmodel(d / "tiny-b.gguf", "-n", "tiny-b", "-s", "2")
    upload = tmp_path / "uploaded.gguf"
    mkmodel(upload, "-n", "uploaded", "-s", "3")
    g = start_goinfer(d)
    for _ in range(2):
        r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                        json={"model": "tiny-a", "max_tokens": 4,
                              "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    shots = Path(os.environ.get("GOINFER_ADMIN_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOINFER_ORIGIN=g.url(), GOINFER_KEY=API_KEY, SHOTS=str(shots),
               UPLOAD=str(upload))
    p = subprocess.run(["node", "--test", "admin_pages.test.mjs"], cwd=ROOT / "tests" / "client",
                       env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr + g.log()
    assert "# pass 1" in p.stdout
    for name in ("models", "activity", "settings-error", "settings-saved", "files", "engine",
                 "fleet"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
    g.wait_log(r"audit: model.disable tiny-b by api_key")
    g.wait_log(r"audit: config.save goinfer.yml by api_key .*: 200")
    assert "uploaded" in [m["id"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"]]
