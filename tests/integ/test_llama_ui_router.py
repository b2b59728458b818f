"""llama.cpp's web UI at / manages every model (issue 11): in Chromium, its router mode lists
the models, picking one loads it, and the answer comes from that model (the access log says
which model answered)."""
import os
import subprocess
from pathlib import Path

from conftest import API_KEY, ROOT, auth, mkmodel


def test_llama_ui_picks_and_loads_a_second_model(start_goinfer, client, tmp_path):
    d = tmp_path / "two"
    d.mkdir()
    mkmodel(d / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
    mkmodel(d / "tiny-b.gguf", "-n", "tiny-b", "-s", "2")
    g = start_goinfer(d)
    shot = Path(os.environ.get("GOINFER_LLAMAUI_ROUTER_SHOT", tmp_path / "router.png"))
    env = dict(os.environ, GOINFER_ORIGIN=g.url(), GOINFER_KEY=API_KEY, FIRST="tiny-a",
               SECOND="tiny-b", SCREENSHOT=str(shot))
    p = subprocess.run(["node", "--test", "llamaui_router.test.mjs"], cwd=ROOT / "tests" / "client",
                       env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr + g.log()
    assert "# pass 1" in p.stdout and shot.stat().st_size > 10_000
    g.wait_log(r"POST /models/load model=tiny-b backend=- status=200")
    g.wait_log(r"POST /v1/chat/completions model=tiny-b backend=local status=200")
    log = g.log()
    assert "chat/completions model=tiny-a" not in log
    assert "model tiny-a: starting" not in log  # opening the page starts no model
    running = client.get(g.url() + "/running", headers=auth()).json()["running"]
    assert [x["model"] for x in running] == ["tiny-b"]
