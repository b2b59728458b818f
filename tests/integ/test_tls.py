"""HTTPS listener: TLS 1.2/1.3 with the pair -write generates, old protocols refused, plain
HTTP on the TLS port refused, streaming over TLS, certificate reload on SIGHUP."""
import os
import re
import signal
import ssl
import socket
import subprocess

import httpx

from conftest import GOINFER, Goinfer, llama_exe


def write_tls_config(tmp_path, models_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GI_")}
    env.update(GI_MODELS_DIR=str(models_dir), GI_LLAMA_EXE=llama_exe())
    p = subprocess.run([str(GOINFER), "-write"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    yml = (tmp_path / "goinfer.yml").read_text()
    key = re.search(r'api_key: "([0-9a-f]{64})"', yml).group(1)
    yml = yml.replace('":4444": goinfer', '"127.0.0.1:0": goinfer, openai, tls').replace(
        '  ":5555": openai\n', '')
    (tmp_path / "goinfer.yml").write_text(yml)
    return env, key


def test_https_with_the_generated_pair(models_dir, tmp_path):
    env, key = write_tls_config(tmp_path, models_dir)
    assert oct((tmp_path / "goinfer-key.pem").stat().st_mode & 0o777) == "0o600"
    g = Goinfer([], env, tmp_path).wait_ready()
    try:
        assert "tls" in g.log()
        host, port = g.ports["goinfer"]
        cert = str(tmp_path / "goinfer-cert.pem")
        with httpx.Client(verify=cert, timeout=30) as c:
            base = f"https://localhost:{port}"
            assert c.get(base + "/health").json()["status"] == "ok"
            h = {"Authorization": f"Bearer {key}"}
            with c.stream("POST", base + "/v1/chat/completions", headers=h,
                          json={"model": "tiny-a", "stream": True, "max_tokens": 4,
                                "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status_code == 200
                assert b"[DONE]" in b"".join(r.iter_raw())
        # TLS 1.2 and 1.3 both work
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = ssl.create_default_context(cafile=cert)
            ctx.minimum_version = ctx.maximum_version = version
            with socket.create_connection((host, port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                           ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert s.recv(100).startswith(b"HTTP/1.1 200")
        # plain HTTP on the TLS port gets nothing usable, and the server carries on
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not s.recv(100).startswith(b"HTTP/1.1 200")
        with httpx.Client(verify=cert) as c:
            assert c.get(f"https://localhost:{port}/health").status_code == 200
        # SIGHUP re-reads the certificate; a missing one is refused and the old keeps serving
        n = len(g.lines)
        g.proc.send_signal(signal.SIGHUP)
        g.wait_log(r"reloaded \(SIGHUP\)", start=n)
        os.rename(tmp_path / "goinfer-cert.pem", tmp_path / "moved.pem")
        n = len(g.lines)
        g.proc.send_signal(signal.SIGHUP)
        m = g.wait_log(r"reload \(SIGHUP\) refused.*: (TLS certificate .*)", start=n)
        assert "goinfer-cert.pem" in m.group(1)
        with httpx.Client(verify=str(tmp_path / "moved.pem")) as c:
            assert c.get(f"https://localhost:{port}/health").status_code == 200
    finally:
        assert g.stop() == 0, g.log()
