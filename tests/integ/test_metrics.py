"""/metrics as operators expect it (issue 14, item 4): names that pass `promtool check metrics`
on a live exposition, exact status codes, goinfer_build_info, the process figures, model load
durations and token counters, and the admin app's own requests kept out of the histograms."""
import re
import shutil
import socket
import subprocess

import pytest

from conftest import GOINFER, auth, need


def promtool():
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is missing: apt-get install prometheus (scripts/setup.sh test)")
    return exe


def value(text, series):
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    assert m, f"no {series} in:\n{text}"
    return float(m.group(1))


def test_live_metrics_pass_promtool(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json={"model": "tiny-a", "max_tokens": 4,
                          "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    client.post(g.url() + "/v1/chat/completions", headers=auth(), json={"model": "nope"})
    client.get(g.url() + "/v1/chat/completions", headers=auth())  # 405
    text = client.get(g.url() + "/metrics", headers=auth()).text
    p = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr + "\n" + text

    # exact status codes
    assert value(text, 'goinfer_requests_total{model="tiny-a",code="200"}') == 1
    assert re.search(r'goinfer_requests_total\{model="-",code="405"\} 1$', text, re.M), text
    assert not re.search(r'code="\dxx"', text)
    # the version -version prints
    version = subprocess.run([need(GOINFER), "-version"], capture_output=True,
                             text=True).stdout.split()[1]
    assert value(text, f'goinfer_build_info{{version="{version}"}}') == 1
    # process figures from /proc/self
    assert value(text, "process_resident_memory_bytes") > 1e6
    assert 5 < value(text, "process_open_fds") < 1000
    assert value(text, "process_cpu_seconds_total") >= 0  # in ticks of 10 ms: may be 0 yet
    assert value(text, "process_max_fds") >= 1024
    assert value(text, "process_start_time_seconds") > 1.7e9
    # a load was timed, and the tokens counted
    assert value(text, 'goinfer_model_load_duration_seconds_count{model="tiny-a"}') == 1
    assert 0 < value(text, 'goinfer_model_load_duration_seconds_sum{model="tiny-a"}') < 60
    assert value(text, 'goinfer_generated_tokens_total{model="tiny-a"}') > 0
    assert value(text, 'goinfer_prompt_tokens_total{model="tiny-a"}') > 0


def test_admin_requests_stay_out_of_the_histograms(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    for path in ("/health", "/ui", "/api/settings", "/metrics"):
        client.get(g.url() + path, headers=auth())
    text = client.get(g.url() + "/metrics", headers=auth()).text
    assert value(text, "goinfer_request_duration_seconds_count") == 0, text
    assert value(text, 'goinfer_requests_total{model="-",code="200"}') >= 3  # still counted
    client.get(g.url() + "/v1/models", headers=auth())
    text = client.get(g.url() + "/metrics", headers=auth()).text
    assert value(text, "goinfer_request_duration_seconds_count") == 1, text


def test_access_line_has_the_client_and_json_lines(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    client.get(g.url() + "/v1/models", headers=auth())
    g.wait_log(r"GET /v1/models model=- backend=- status=200 bytes=\d+ ttfb=\S+ total=\S+ "
               r"client=127\.0\.0\.1:\d+$")
    j = start_goinfer(models_dir, env={"GI_LOG_FORMAT": "json"}, ready=False)
    import json
    j.wait_log(r'"msg":"goinfer ready')
    lines = [json.loads(line) for line in j.log().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "msg"} <= set(o) for o in lines)
    port = next(int(m) for o in lines for m in re.findall(r"listening on 127\.0\.0\.1:(\d+)",
                                                           o["msg"]))
    client.get(f"http://127.0.0.1:{port}/v1/models", headers=auth())
    m = j.wait_log(r'^\{.*"path":"/v1/models".*\}$')
    o = json.loads(m.group(0))
    assert o["status"] == 200 and o["method"] == "GET" and o["client"].startswith("127.0.0.1:")
    assert isinstance(o["total_ms"], float) and o["model"] == "-", o
    # a model name is the client's: whatever it holds stays inside the model field
    evil = 'x status=1,"a":2 backend=local ttfb=1ms total=1ms client=evil'
    r = client.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers=auth(),
                    json={"model": evil, "messages": [{"role": "user", "content": "hi"}]})
    m = j.wait_log(r'^\{.*"path":"/v1/chat/completions".*\}$')
    o = json.loads(m.group(0))
    assert o["status"] == r.status_code and o["client"].startswith("127.0.0.1:"), o
    assert o["model"].endswith("client=evil") and "a" not in o, o
    # bytes that are not UTF-8 in a path: the line is still JSON (U+FFFD in their place)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /bad\xff\xfe/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.recv(4096)
    m = j.wait_log(r'^\{.*"path":"/bad.*\}$')
    assert json.loads(m.group(0))["path"] == "/bad\ufffd\ufffd/path", m.group(0)
    j.stop()


def test_llama_server_output_in_the_log_history_with_its_model(models_dir, start_goinfer,
                                                                client):
    g = start_goinfer(models_dir)
    client.post(g.url() + "/v1/chat/completions", headers=auth(),
                json={"model": "tiny-b", "max_tokens": 2,
                      "messages": [{"role": "user", "content": "hi"}]})
    logs = client.get(g.url() + "/logs", headers=auth()).text
    assert re.search(r"^\[model tiny-b\] .*", logs, re.M), logs[-3000:]
