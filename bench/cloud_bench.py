#!/usr/bin/python3
"""The cloud road, side by side in one run: one FAKE OpenRouter reached
  direct    by the load generator itself, over HTTPS (keep-alive);
  nginx     through nginx proxy_pass (plain HTTP in, HTTPS out with certificate verification,
            keep-alive to the provider, the provider key set by proxy_set_header);
  goinfer   through Goinfer, the provider an https:// peer with a static key (libcurl, HTTP/2,
            certificate verification on);
  [vkey]    through the same Goinfer with another key (--vkey KEY): the column for virtual keys
            (budget check, reservation and settlement), filled when that feature exists.
Each side is its own process; the provider is FAKE: an nginx over HTTPS (HTTP/2 offered) that
answers POST /api/v1/chat/completions at once with OpenRouter's shape (usage with cost), as a
whole JSON body or as a short event stream; its own process, one worker.

Rows: requests/s with 16 connections (wrk), latency p50/p99 of one request at a time (wrk -c1),
and what each proxy adds to direct. Ratios are what count: the machine is shared and noisy.

Usage: bench/cloud_bench.py [seconds per run, default 5] [--vkey KEY] [--config-extra FILE]
  (--config-extra: YAML appended to the Goinfer config, for the virtual-key set-up)
Needs `make build` (or GOINFER_BUILD), wrk, nginx, openssl.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nginx_conf import nginx_conf

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("GOINFER_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
PROVIDER_KEY = "sk-or-v1-FAKE-bench-key"
USER_KEY = "bench-user-key-0123456789"
USAGE = ('"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,"cost":0.000123}')
CHAT = ('{"id":"gen-fake","provider":"FAKE","model":"fake/ok","object":"chat.completion",'
        '"created":1700000000,"choices":[{"index":0,"finish_reason":"stop","message":'
        '{"role":"assistant","content":"FAKE hello"}}],' + USAGE + '}')
CHUNK = ('data: {"id":"gen-fake","object":"chat.completion.chunk","choices":[{"index":0,'
         '"delta":{"content":"tok "}}]}\n\n')
STREAM = (": OPENROUTER PROCESSING\n\n" + CHUNK * 3 +
          'data: {"id":"gen-fake","object":"chat.completion.chunk","choices":[],' + USAGE +
          '}\n\ndata: [DONE]\n\n')


def nginx_str(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def make_ca(d):
    def run(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key", "-out",
        d / "ca.pem", "-days", "2", "-subj", "/CN=FAKE bench CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "srv.key", "-out", d / "srv.csr",
        "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", d / "srv.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
        "-CAcreateserial", "-out", d / "srv.pem", "-days", "2", "-extfile", d / "ext.cnf")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_provider(t, port):
    """The FAKE OpenRouter: nginx over HTTPS, HTTP/2 offered, the key checked."""
    d = t / "fake"
    d.mkdir()
    server = f"""
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {t}/srv.pem; ssl_certificate_key {t}/srv.key;
    keepalive_requests 1000000;
    location = /api/v1/chat/completions {{
      if ($http_authorization != "Bearer {PROVIDER_KEY}") {{
        return 401 '{{"error":{{"code":401,"message":"No auth credentials found"}}}}';
      }}
      default_type application/json;
      return 200 {nginx_str(CHAT)};
    }}
    location = /stream/api/v1/chat/completions {{
      if ($http_authorization != "Bearer {PROVIDER_KEY}") {{
        return 401 '{{"error":{{"code":401,"message":"No auth credentials found"}}}}';
      }}
      default_type text/event-stream;
      return 200 {nginx_str(STREAM)};
    }}
  }}"""
    (d / "nginx.conf").write_text(nginx_conf(d, server))
    return subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)])


def proxy_nginx(t, port, fake_port):
    d = t / "proxy"
    d.mkdir()
    server = f"""
  upstream provider {{ server 127.0.0.1:{fake_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{
      proxy_pass https://provider/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {PROVIDER_KEY}";
      proxy_set_header Host localhost;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {t}/ca.pem;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
      proxy_buffering off;
    }}
  }}"""
    (d / "nginx.conf").write_text(nginx_conf(d, server))
    return subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)])


def goinfer(t, port, fake_port, extra):
    (t / "or.key").write_text(PROVIDER_KEY + "\n")
    (t / "models").mkdir()
    (t / "goinfer.yml").write_text(f"""models_dir: {t}/models
api_key: {USER_KEY}
listen:
  "127.0.0.1:{port}": goinfer
""" + extra)
    (t / "llama-swap.yml").write_text(f"""peers:
  or:
    proxy: https://127.0.0.1:{fake_port}/api
    apiKeyFile: {t}/or.key
    caFile: {t}/ca.pem
    models: [fake/ok]
  ors:
    proxy: https://127.0.0.1:{fake_port}/stream/api
    apiKeyFile: {t}/or.key
    caFile: {t}/ca.pem
    models: [fake/ok]
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env["GI_STATE_DIR"] = str(t / "state")
    return subprocess.Popen([str(BUILD / "goinfer"), "-config", str(t / "goinfer.yml"), "-q"],
                            env=env, stderr=open(t / "goinfer.err", "w"))


def wrk(url, lua, conns, secs, latency=False):
    args = ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "-s", str(lua)]
    if latency:
        args.append("--latency")
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"cloud_bench: {url}: {errors.group(1)} failed requests:\n{out}")
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            v, unit = float(m.group(1)), m.group(2)
            lat[pct] = v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    return rps, lat


def lua_script(t, name, key, stream):
    body = ('{"model":"ors/fake/ok","stream":true,' if stream else '{"model":"or/fake/ok",') + \
        '"messages":[{"role":"user","content":"Hi"}]}'
    p = t / f"{name}.lua"
    p.write_text(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = '{body}'
""")
    return p


def wait_http(url, insecure=False):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-k", url],
                           capture_output=True)
        if r.stdout.decode() not in ("", "000"):
            return
        time.sleep(0.1)
    raise SystemExit(f"cloud_bench: nothing answers at {url}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("secs", nargs="?", type=int, default=5)
    ap.add_argument("--vkey", help="a second Goinfer key to measure (virtual keys)")
    ap.add_argument("--config-extra", help="YAML appended to goinfer.yml")
    ap.add_argument("--conns", type=int, default=16)
    a = ap.parse_args()
    t = Path(tempfile.mkdtemp(prefix="cloud_bench."))
    procs = []
    try:
        make_ca(t)
        fp, np_, gp = free_port(), free_port(), free_port()
        procs.append(fake_provider(t, fp))
        procs.append(proxy_nginx(t, np_, fp))
        extra = Path(a.config_extra).read_text() if a.config_extra else ""
        procs.append(goinfer(t, gp, fp, extra))
        for u in (f"https://127.0.0.1:{fp}/", f"http://127.0.0.1:{np_}/", f"http://127.0.0.1:{gp}/health"):
            wait_http(u)
        for stream in (False, True):
            pre = "/stream" if stream else ""
            sides = [("direct", f"https://127.0.0.1:{fp}{pre}/api/v1/chat/completions",
                      PROVIDER_KEY),
                     ("nginx", f"http://127.0.0.1:{np_}{pre}/api/v1/chat/completions", "unused"),
                     ("goinfer", f"http://127.0.0.1:{gp}/v1/chat/completions", USER_KEY)]
            if a.vkey:
                sides.append(("vkey", f"http://127.0.0.1:{gp}/v1/chat/completions", a.vkey))
            kind = "stream (4 events + usage)" if stream else "chat (JSON body)"
            res = {}
            for name, url, key in sides:
                lua = lua_script(t, f"{name}-{int(stream)}", key, stream)
                wrk(url, lua, 4, 1)  # warm: connections, TLS sessions
                rps, _ = wrk(url, lua, a.conns, a.secs)
                _, lat = wrk(url, lua, 1, a.secs, latency=True)
                res[name] = (rps, lat)
            report(kind, res, a)
        err = (t / "goinfer.err").read_text()
        if PROVIDER_KEY in err:
            raise SystemExit("cloud_bench: the provider key is in Goinfer's log")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(t, ignore_errors=True)


def report(kind, res, a):
    d_rps, d_lat = res["direct"]
    print(f"\n{kind}: wrk {a.conns} connections (req/s), 1 connection (latency), {a.secs}s each")
    print(f"{'':10} {'req/s':>9} {'x direct':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'+p50 ms':>8} {'+p99 ms':>8}")
    for name, (rps, lat) in res.items():
        print(f"{name:10} {rps:9.0f} {rps / d_rps:8.2f}x {lat['50']:8.3f} {lat['99']:8.3f} "
              f"{lat['50'] - d_lat['50']:8.3f} {lat['99'] - d_lat['99']:8.3f}")
    if "nginx" in res and "goinfer" in res:
        print(f"goinfer / nginx: {res['goinfer'][0] / res['nginx'][0]:.2f}x req/s, "
              f"added p50 {res['goinfer'][1]['50'] - d_lat['50']:.3f} ms vs "
              f"{res['nginx'][1]['50'] - d_lat['50']:.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
