"""llama.cpp's web UI at / manages every model (issue 11): in Chromium, its router mode lists
the models, picking one loads it with the load bar fed by /models/sse, and the answer comes from
that model (the access log says which model answered)."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import API_KEY, ROOT, auth, llama_exe, mkmodel
from test_swapconf import config, start

SLOW = Path(__file__).parent / "fakes" / "fake_slow_load.py"


def test_llama_ui_picks_and_loads_a_second_model(start_goinfer, client, tmp_path):
    d = tmp_path / "two"
    d.mkdir()
    mkmodel(d / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
    mkmodel(d / "tiny-b.gguf", "-n", "tiny-b", "-s", "2")
    real = f"{llama_exe()} --host 127.0.0.1 --port ${{PORT}} -c 512 -np 2 --no-warmup"
    swap = f"""
models:
  tiny-a:
    cmd: {real} -m {d}/tiny-a.gguf
  slow-b:   # the real llama-server, its loading lines held back (FAKE pace only) to be seen
    cmd: {sys.executable} {SLOW} {real} -m {d}/tiny-b.gguf
"""
    g = start(start_goinfer, None, config(tmp_path, swap))
    shot = Path(os.environ.get("GOINFER_LLAMAUI_ROUTER_SHOT", tmp_path / "router.png"))
    env = dict(os.environ, GOINFER_ORIGIN=g.url(), GOINFER_KEY=API_KEY, FIRST="tiny-a",
               SECOND="slow-b", SCREENSHOT=str(shot), FAKE_LOAD_DELAY="1")
    p = subprocess.run(["node", "--test", "llamaui_router.test.mjs"], cwd=ROOT / "tests" / "client",
                       env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr + g.log()
    assert "# pass 1" in p.stdout and shot.stat().st_size > 10_000
    g.wait_log(r"GET /models/sse model=- backend=- status=200")
    g.wait_log(r"POST /models/load model=slow-b backend=- status=200")
    g.wait_log(r"POST /v1/chat/completions model=slow-b backend=local status=200")
    log = g.log()
    assert "chat/completions model=tiny-a" not in log
    assert "model tiny-a: starting" not in log  # opening the page starts no model
    running = client.get(g.url() + "/running", headers=auth()).json()["running"]
    assert [x["model"] for x in running] == ["slow-b"]
