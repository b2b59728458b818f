#!/usr/bin/python3
"""The admin app's Models page with N models (default 500): time from navigation to every row
shown and the page answering a filter keystroke, in Debian's Chromium, median of 5 loads.
The models are N links to one tiny GGUF (discovery lists each name), so nothing is started.

Usage: bench/admin_ui_bench.py [models]   (run `make build` and `make setup` first)
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / os.environ.get("GOINFER_BUILD", "build")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 500
KEY = "bench-key-0123456789abcdef"
SCRIPT = """
import { launch } from './browser.mjs';
const b = await launch();
const times = [];
for (let i = 0; i < 5; i++) {
  const page = await b.newPage();
  await page.addInitScript((k) => sessionStorage.setItem('goinfer-key', k), process.env.KEY);
  const t0 = Date.now();
  await page.goto(process.env.ORIGIN + '/ui');
  await page.waitForFunction((n) => document.querySelectorAll('#models tbody tr').length >= n, Number(process.env.N), { timeout: 60000 });
  await page.fill('#model-filter', 'm-00');
  await page.waitForFunction(() => document.getElementById('model-count').textContent.startsWith('10 of'));
  times.push(Date.now() - t0);
  await page.close();
}
await b.close();
console.log(JSON.stringify(times));
"""


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        models.mkdir()
        subprocess.run([str(BUILD / "mkmodel"), "-n", "m", "-o", str(tmp / "one.gguf")],
                       check=True, capture_output=True)
        for i in range(N):
            (models / f"m-{i:03d}.gguf").symlink_to(tmp / "one.gguf")
        cfg = tmp / "goinfer.yml"
        cfg.write_text(f"models_dir: {models}\napi_key: {KEY}\nlisten:\n  \"127.0.0.1:0\": goinfer\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
        env["GI_STATE_DIR"] = str(tmp / "state")
        g = subprocess.Popen([str(BUILD / "goinfer"), "-config", str(cfg)], env=env,
                             stderr=subprocess.PIPE, text=True)
        port = None
        for line in g.stderr:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            port = port or (m and m.group(1))
            if "goinfer ready" in line:
                break
        try:
            script = ROOT / "tests" / "client" / "bench-admin.tmp.mjs"
            script.write_text(SCRIPT)
            p = subprocess.run(["node", script.name], cwd=script.parent, capture_output=True,
                               text=True, timeout=600,
                               env=dict(os.environ, ORIGIN=f"http://127.0.0.1:{port}", KEY=KEY,
                                        N=str(N)))
            script.unlink()
            if p.returncode != 0:
                raise SystemExit(p.stderr)
            times = sorted(eval(p.stdout.strip().splitlines()[-1]))
            print(f"admin app, Models page with {N} models: every row shown and a filter "
                  f"applied in {times[len(times) // 2]} ms (median of 5; all: {times})")
        finally:
            g.terminate()
            g.wait(30)


if __name__ == "__main__":
    main()
