#!/usr/bin/python3
"""Swap cost, side by side in one run: a request that forces a model swap, through Goinfer vs
through llama.cpp's own router mode (llama-server --models-dir --models-max 1), same
llama-server build, same tiny models. Prints medians and the ratio (goal: <= 1.0).

Usage: bench/swap_bench.py [rounds]   (run `make build` first; GOINFER_BUILD=dir for another)
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("GOINFER_CACHE", Path.home() / ".cache" / "goinfer"))
LLAMA = os.environ.get("GI_LLAMA_EXE") or str(CACHE / "llama-current" / "bin" / "llama-server")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
BUILD = ROOT / os.environ.get("GOINFER_BUILD", "build")  # as the tests name it
BODY = {"prompt": "Hello", "n_predict": 1}


def request(port, model):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    c.request("POST", "/completion", json.dumps(dict(BODY, model=model)),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    dt = time.perf_counter() - t0
    c.close()
    if r.status != 200:
        raise SystemExit(f"model {model}: HTTP {r.status}")
    return dt


def wait_port(proc, pattern, log):
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(pattern, log.read_text())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.05)
    raise SystemExit("did not start:\n" + log.read_text())


def measure(port):
    request(port, "a")  # first load, not counted
    swaps, warm = [], []
    for _ in range(ROUNDS):
        swaps.append(request(port, "b"))
        warm.append(request(port, "b"))
        swaps.append(request(port, "a"))
    return statistics.median(swaps), statistics.median(warm)


def run_goinfer(models, tmp):
    log = tmp / "goinfer.log"
    cfg = tmp / "goinfer.yml"
    cfg.write_text(f"models_dir: {models}\nlisten:\n  \"127.0.0.1:0\": goinfer\n"
                   "llama:\n  args:\n    common: -c 512 --no-warmup\n")
    p = subprocess.Popen([str(BUILD / "goinfer"), "-config", str(cfg), "-no-api-key"],
                         stderr=log.open("w"), env=dict(os.environ, GI_LLAMA_EXE=LLAMA))
    try:
        return measure(wait_port(p, r"listening on 127.0.0.1:(\d+)", log))
    finally:
        p.terminate()
        p.wait(30)


def run_router(models, tmp):
    log = tmp / "router.log"
    port = 18000 + os.getpid() % 1000
    p = subprocess.Popen([LLAMA, "--models-dir", str(models), "--models-max", "1", "--host",
                          "127.0.0.1", "--port", str(port), "-c", "512", "--no-warmup"],
                         stderr=subprocess.STDOUT, stdout=log.open("w"))
    try:
        wait_port(p, r"listening on http://127.0.0.1:(\d+)", log)
        time.sleep(0.2)
        return measure(port)
    finally:
        p.terminate()
        p.wait(30)


def main():
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        models = tmp / "models"
        models.mkdir()
        for name, seed in (("a", "1"), ("b", "2")):
            subprocess.run([str(BUILD / "mkmodel"), "-n", name, "-s", seed, "-o",
                            str(models / f"{name}.gguf")], check=True, capture_output=True)
        g_swap, g_warm = run_goinfer(models, tmp)
        r_swap, r_warm = run_router(models, tmp)
    print(f"swap cost, {ROUNDS} rounds of a->b->a on tiny models (median per request)")
    print(f"{'':24}{'swap request':>14}{'warm request':>14}{'swap - warm':>14}")
    for name, s, w in (("goinfer", g_swap, g_warm), ("llama-server router", r_swap, r_warm)):
        print(f"{name:24}{s * 1e3:>11.1f} ms{w * 1e3:>11.1f} ms{(s - w) * 1e3:>11.1f} ms")
    print(f"ratio goinfer/router, swap request: {g_swap / r_swap:.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
