"""Server/client mode: real goinfer servers and GPU clients in their own network namespaces
(tests/integ/tunnel_net.py), the real llama-server on tiny models behind the clients, curl as
the end user in a namespace of its own. A client listens only on its own loopback: everything
reaches it through the tunnel it dialled.

Fault injection (a stream that never ends, a client killed mid-stream) uses the FAKE
llama-server of tests/integ/fakes/fake_llama_server.py, which says so in its name.
"""
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import API_KEY, mkmodel, seconds_until_gone
from tunnel_net import Net, Nodes, TOKEN

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"
AUTH = ["-H", f"Authorization: Bearer {API_KEY}"]


def chat(model, stream=True, tokens=4):
    return json.dumps({"model": model, "stream": stream, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": "Hi"}]})


@pytest.fixture
def net():
    n = Net()
    yield n
    n.cleanup()


@pytest.fixture
def nodes(net, tmp_path):
    n = Nodes(net, tmp_path)
    yield n
    problems = n.stop_all()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def gpu_models(tmp_path_factory):
    """Two model folders: tiny-a on one GPU machine, tiny-b on another."""
    root = tmp_path_factory.mktemp("gpu")
    for name, seed in (("tiny-a", "1"), ("tiny-b", "2")):
        (root / name).mkdir()
        mkmodel(root / name / f"{name}.gguf", "-n", name, "-s", seed)
    return root


@pytest.fixture(scope="module")
def fake_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("fake-gpu")
    for name in ("endless-a", "drip-a", "slow-a", "die-a", "echo-a", "chunkecho-a"):
        (d / f"{name}.gguf").write_bytes(b"GGUF fake: only the file name matters to the fake")
    return d


def wait_count(g, pattern, n, timeout=30):
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, g.log())) < n:
        assert time.monotonic() < deadline, f"fewer than {n} lines /{pattern}/ in:\n{g.log()}"
        time.sleep(0.05)


def star(net, n_clients):
    """A server namespace joined to n client namespaces and to the end user's."""
    s, u = net.ns("s"), net.ns("u")
    s_user, _ = net.link(s, u)
    clients = []
    for i in range(n_clients):
        c = net.ns(f"c{i}")
        s_ip, _ = net.link(s, c)
        clients.append((c, s_ip))
    return s, u, s_user, clients


def one_client(net, nodes, models, registered, env=None):
    """A server, the end user, and one GPU client serving `models`, registered."""
    s, u, s_user, [(c, s_ip)] = star(net, 1)
    ident = nodes.identity("gpu1")
    srv = nodes.server(s, s_user, [ident[2]])
    cli = nodes.client(c, "gpu1", models, [(s_ip, srv.pin)], ident, env=env)
    srv.wait_log(rf"registered: {registered}")
    return SimpleNamespace(srv=srv, cli=cli, u=u, c=c, s=s, s_ip=s_ip, s_user=s_user, ident=ident)


def two_clients(net, nodes, models1, models2, registered, env=None):
    """A server, the end user, and two GPU clients; returns (server, user ns, [clients])."""
    s, u, s_user, [(c1, ip1), (c2, ip2)] = star(net, 2)
    i1, i2 = nodes.identity("gpu1"), nodes.identity("gpu2")
    srv = nodes.server(s, s_user, [i1[2], i2[2]])
    gpus = [nodes.client(c1, "gpu1", models1, [(ip1, srv.pin)], i1, env=env),
            nodes.client(c2, "gpu2", models2, [(ip2, srv.pin)], i2, env=env)]
    for pattern in registered:
        wait_count(srv, rf"registered: {pattern}", 2 if len(registered) == 1 else 1)
    return srv, u, gpus


def test_a_chat_streams_from_the_end_user_to_a_gpu_client_and_back(net, nodes, gpu_models):
    t = one_client(net, nodes, gpu_models / "tiny-a", "tiny-a")
    srv, cli, u = t.srv, t.cli, t.u
    cli.wait_log(r"tunnel: connected to https://")
    # the client has no inbound route: its listener is its own loopback
    assert "127.0.0.1" in cli.url()
    r = net.curl(u, *AUTH, f"{srv.api}/v1/models")
    assert [m["id"] for m in json.loads(r.stdout)["data"]] == ["tiny-a"], r.stdout
    assert json.loads(r.stdout)["data"][0]["status"] == {"value": "unloaded"}, r.stdout
    r = net.curl(u, *AUTH, "-i", f"{srv.api}/v1/chat/completions", "-d", chat("tiny-a"))
    assert r.returncode == 0, r.stderr
    assert "text/event-stream" in r.stdout and "data: [DONE]" in r.stdout, r.stdout
    assert r.stdout.count("data: ") >= 3
    # the listing shows the state the GPU machine reports (it says so within a tick)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        one = json.loads(net.curl(u, *AUTH, f"{srv.api}/v1/models/tiny-a").stdout)
        if one["status"]["value"] == "loaded":
            break
        time.sleep(0.1)
    assert one["status"] == {"value": "loaded"} and one["owned_by"] == "goinfer-tunnel", one
    srv.wait_log(r"POST /v1/chat/completions model=tiny-a backend=tunnel status=200")
    cli.wait_log(r"POST /v1/chat/completions model=tiny-a backend=local status=200")
    # an unknown model is still a clear 404, naming what there is
    r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("nope"))
    assert "model_not_found" in r.stdout and "tiny-a" in r.stdout, r.stdout  # names what there is


def test_two_clients_with_different_models_each_get_their_own(net, nodes, gpu_models):
    srv, u, (a, b) = two_clients(net, nodes, gpu_models / "tiny-a", gpu_models / "tiny-b",
                                 ["tiny-a", "tiny-b"])
    r = net.curl(u, *AUTH, f"{srv.api}/v1/models")
    assert sorted(m["id"] for m in json.loads(r.stdout)["data"]) == ["tiny-a", "tiny-b"]
    for model, gpu in (("tiny-a", a), ("tiny-b", b)):
        r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat(model, stream=False))
        assert json.loads(r.stdout)["choices"][0]["message"]["content"] is not None, r.stdout
        gpu.wait_log(rf"POST /v1/chat/completions model={model} backend=local status=200")
    running = json.loads(net.curl(u, *AUTH, f"{srv.api}/running").stdout)["tunnels"]
    assert sorted(t["models"][0]["id"] for t in running) == ["tiny-a", "tiny-b"]
    metrics = net.curl(u, *AUTH, f"{srv.api}/metrics").stdout
    assert "goinfer_tunnel_clients 2" in metrics, metrics
    assert len(re.findall(r'goinfer_tunnel_busy\{client="sha256/', metrics)) == 2, metrics


def test_one_client_serves_two_servers(net, nodes, gpu_models):
    s1, s2, c, u = net.ns("s1"), net.ns("s2"), net.ns("c"), net.ns("u")
    s1_c, _ = net.link(s1, c)
    s2_c, _ = net.link(s2, c)
    s1_u, _ = net.link(s1, u)
    s2_u, _ = net.link(s2, u)
    ident = nodes.identity("gpu")
    one = nodes.server(s1, s1_u, [ident[2]], name="one")
    two = nodes.server(s2, s2_u, [ident[2]], name="two")
    nodes.client(c, "gpu", gpu_models / "tiny-a", [(s1_c, one.pin), (s2_c, two.pin)], ident)
    for srv in (one, two):
        srv.wait_log(r"registered: tiny-a")
        r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("tiny-a"))
        assert "data: [DONE]" in r.stdout, r.stdout


def test_a_client_killed_mid_stream_ends_the_stream_and_the_next_request_goes_elsewhere(
        net, nodes, fake_models):
    srv, u, gpus = two_clients(net, nodes, fake_models, fake_models, [".*endless-a"],
                               env={"GI_LLAMA_EXE": str(FAKE)})
    end_user = net.popen_curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("endless-a"))
    first = end_user.stdout.readline()
    assert first.startswith(b"data: "), first
    serving = next(g for g in gpus if "model endless-a: starting" in g.log())
    serving.proc.send_signal(signal.SIGKILL)
    end_user.stdout.read()
    assert end_user.wait(10) != 0, "the end user's stream must end in an error, not look complete"
    srv.wait_log(r"tunnel: client .* disconnected")
    r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("drip-a"))
    assert "data: [DONE]" in r.stdout, r.stdout + r.stderr


def test_the_server_restarted_clients_reconnect_with_backoff(net, nodes, gpu_models):
    t = one_client(net, nodes, gpu_models / "tiny-a", "tiny-a")
    srv, cli, u = t.srv, t.cli, t.u
    assert srv.stop() == 0
    cli.wait_log(r"connection to https://.* lost: .*; reconnecting in \d+ ms")
    mark = len(cli.lines)
    again = nodes.server(t.s, t.s_user, [t.ident[2]], identity=srv.identity)
    again.wait_log(r"registered: tiny-a", timeout=20)
    cli.wait_log(r"tunnel: connected to https://", start=mark)
    r = net.curl(u, *AUTH, f"{again.api}/v1/chat/completions", "-d", chat("tiny-a"))
    assert "data: [DONE]" in r.stdout, r.stdout


def test_a_blackholed_path_is_detected_within_the_ping_limits(net, nodes, gpu_models):
    t = one_client(net, nodes, gpu_models / "tiny-a", "tiny-a")
    srv, cli, u = t.srv, t.cli, t.u
    net.blackhole(t.c, t.s_ip)
    t0 = time.monotonic()
    # ping_interval 1 s and ping_timeout 1 s: silence is noticed within about 2 s on each side
    srv.wait_log(r"tunnel: client .* disconnected: no answer to a PING", timeout=10)
    cli.wait_log(r"connection to https://.* lost: no answer to a PING", timeout=10)
    assert time.monotonic() - t0 < 4
    r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("tiny-a"))
    assert "model_not_found" in r.stdout, r.stdout


def test_an_end_user_leaving_cancels_the_gpu_request_at_once(net, nodes, fake_models):
    t = one_client(net, nodes, fake_models, ".*endless-a", env={"GI_LLAMA_EXE": str(FAKE)})
    srv, u = t.srv, t.u
    gone = fake_models / "endless-a.gguf.gone"
    gone.unlink(missing_ok=True)
    end_user = net.popen_curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("endless-a"))
    assert end_user.stdout.readline().startswith(b"data: ")
    end_user.kill()
    end_user.wait()
    noticed = seconds_until_gone(gone, time.time())
    # the fake writes every 20 ms, so it notices a close up to 20 ms late
    assert noticed < 0.1, f"the GPU request ended {noticed * 1000:.0f} ms after the user left"


@pytest.mark.parametrize("fault", ["token", "server pin", "client key"])
def test_a_wrong_identity_is_refused_logged_and_gets_nothing(net, nodes, gpu_models, fault):
    s, u, s_user, [(c, s_ip)] = star(net, 1)
    ident, stranger = nodes.identity("gpu1"), nodes.identity("stranger")
    srv = nodes.server(s, s_user, [ident[2]])
    pin = "sha256/" + "A" * 43 + "=" if fault == "server pin" else srv.pin
    cli = nodes.client(c, "gpu1", gpu_models / "tiny-a", [(s_ip, pin)],
                       stranger if fault == "client key" else ident,
                       token="wrong-token-0123456789abcdef" if fault == "token" else TOKEN)
    if fault == "token":
        srv.wait_log(r"tunnel: refused client .*: wrong or missing token proof")
        cli.wait_log(r"refused the tunnel with 401")
    elif fault == "client key":
        srv.wait_log(rf"tunnel: refused client .*: its key {re.escape(stranger[2])} is not in")
        cli.wait_log(r"refused the tunnel with 403")
    else:
        cli.wait_log(r"presented key sha256/.*, not the pin configured for it")
    assert "registered" not in srv.log()
    r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("tiny-a"))
    assert "model_not_found" in r.stdout, r.stdout


def access_count(g, model):
    return len(re.findall(rf"POST /v1/chat/completions model={model} backend=local status=200",
                          g.log()))


def access_counts(gpus, model, total, timeout=10):
    """Each GPU machine's access lines for model, once they add up to total: a line is
    written as the answer ends and read from the process's stderr a moment later."""
    deadline = time.monotonic() + timeout
    while sum(counts := [access_count(g, model) for g in gpus]) < total:
        assert time.monotonic() < deadline, f"{counts}: fewer than {total} access lines"
        time.sleep(0.02)
    return counts


def test_a_client_with_the_model_loaded_is_preferred(net, nodes, gpu_models):
    srv, u, gpus = two_clients(net, nodes, gpu_models / "tiny-a", gpu_models / "tiny-a",
                               ["tiny-a"])
    r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("tiny-a", stream=False))
    assert r.returncode == 0 and "choices" in r.stdout, r.stdout
    first = access_counts(gpus, "tiny-a", 1)
    hot, cold = (gpus[0], gpus[1]) if first[0] == 1 else (gpus[1], gpus[0])
    time.sleep(0.6)  # the loaded model is reported within a tick (250 ms)
    for _ in range(6):
        net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("tiny-a", stream=False))
    # two random choices alone would send about half to the other machine and load it there
    assert access_counts([hot, cold], "tiny-a", 7) == [7, 0]
    running = json.loads(net.curl(u, *AUTH, f"{srv.api}/running").stdout)["tunnels"]
    assert sorted(t["models"][0]["hot"] for t in running) == [False, True]


def image_chat(model):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]})


def test_images_go_only_to_a_client_with_a_projector(net, nodes, tmp_path):
    """echo-v on two GPU machines, a projector (mmproj) beside it on the second only."""
    plain, seeing = tmp_path / "plain", tmp_path / "seeing"
    for d in (plain, seeing):
        d.mkdir()
        (d / "echo-v.gguf").write_bytes(b"GGUF fake: only the file name matters to the fake")
    (seeing / "mmproj-echo-v.gguf").write_bytes(b"GGUF fake projector")
    s, u, s_user, [(c1, ip1), (c2, ip2)] = star(net, 2)
    i1, i2 = nodes.identity("gpu1"), nodes.identity("gpu2")
    srv = nodes.server(s, s_user, [i1[2], i2[2]])
    fake = {"GI_LLAMA_EXE": str(FAKE)}
    g1 = nodes.client(c1, "gpu1", plain, [(ip1, srv.pin)], i1, env=fake)
    srv.wait_log(r"registered: echo-v")
    url = f"{srv.api}/v1/chat/completions"
    # only a machine without a projector: a clear 400, and nothing reaches it
    r = net.curl(u, *AUTH, "-i", url, "-d", image_chat("echo-v"))
    assert r.stdout.split()[1] == "400" and "mmproj" in r.stdout, r.stdout
    assert access_count(g1, "echo-v") == 0
    r = net.curl(u, *AUTH, url, "-d", chat("echo-v", stream=False))  # text loads it on gpu1
    assert access_counts([g1], "echo-v", 1) == [1], r.stdout
    g2 = nodes.client(c2, "gpu2", seeing, [(ip2, srv.pin)], i2, env=fake)
    wait_count(srv, r"registered: echo-v", 2)
    time.sleep(0.6)  # gpu1 reports echo-v hot within a tick
    for _ in range(3):  # hot over cold alone would send these to gpu1
        r = net.curl(u, *AUTH, url, "-d", image_chat("echo-v"))
        assert "image_url" in r.stdout, r.stdout  # the echo fake answers with what it got
    assert access_counts([g2, g1], "echo-v", 4) == [3, 1]
    models = json.loads(net.curl(u, *AUTH, f"{srv.api}/running").stdout)["tunnels"]
    assert sorted(t["models"][0]["vision"] for t in models) == [False, True], models


def test_busy_clients_queue_a_few_requests_then_answer_503_with_retry_after(
        net, nodes, fake_models):
    s, u, s_user, [(c, s_ip)] = star(net, 1)
    ident = nodes.identity("gpu1")
    srv = nodes.server(s, s_user, [ident[2]], extra="  max_queue: 1\n")
    nodes.client(c, "gpu1", fake_models, [(s_ip, srv.pin)], ident, slots=1,
                 env={"GI_LLAMA_EXE": str(FAKE)})
    srv.wait_log(r"registered: .*slow-a.*; 1 slots")
    users = []
    for _ in range(3):  # the fake answers after 2 s: one runs, one waits, one is turned away
        users.append(net.popen_curl(u, *AUTH, "-i", f"{srv.api}/v1/chat/completions",
                                    "-d", chat("slow-a", stream=False)))
        time.sleep(0.2)
    outs = [p.communicate(timeout=30)[0].decode() for p in users]
    codes = sorted(int(o.split()[1]) for o in outs)
    assert codes == [200, 200, 503], outs
    refused = next(o for o in outs if o.split()[1] == "503")
    assert re.search(r"(?i)retry-after: 1", refused) and "overloaded" in refused, refused


def test_a_client_failing_before_it_answered_is_retried_on_another(net, nodes, fake_models):
    srv, u, gpus = two_clients(net, nodes, fake_models, fake_models, [".*slow-a"],
                               env={"GI_LLAMA_EXE": str(FAKE)})
    end_user = net.popen_curl(u, *AUTH, "-i", f"{srv.api}/v1/chat/completions",
                              "-d", chat("slow-a", stream=False))
    deadline = time.monotonic() + 10
    while not any("model slow-a: ready" in g.log() for g in gpus):
        assert time.monotonic() < deadline, "no client started slow-a"
        time.sleep(0.05)
    first = next(g for g in gpus if "model slow-a: ready" in g.log())
    first.proc.send_signal(signal.SIGKILL)  # before its answer (the fake waits 2 s)
    out = end_user.communicate(timeout=30)[0].decode()
    assert out.split()[1] == "200", out
    srv.wait_log(r"failed before answering .*; retried on another")


def slow_request_in_flight(net, nodes, fake_models):
    """A server, a client with the FAKE llama-server, and an end user's request that the fake
    answers after 2 s, now running on the client."""
    t = one_client(net, nodes, fake_models, ".*slow-a", env={"GI_LLAMA_EXE": str(FAKE)})
    srv, cli = t.srv, t.cli
    end_user = net.popen_curl(t.u, *AUTH, "-i", f"{srv.api}/v1/chat/completions",
                              "-d", chat("slow-a", stream=False))
    cli.wait_log(r"model slow-a: ready")
    return srv, cli, end_user


def test_shutting_down_a_server_lets_tunnelled_requests_finish(net, nodes, fake_models):
    srv, cli, end_user = slow_request_in_flight(net, nodes, fake_models)
    assert srv.stop() == 0  # SIGTERM with a request in flight
    out = end_user.communicate(timeout=30)[0].decode()
    assert out.split()[1] == "200" and '"slow-a"' in out, out
    cli.wait_log(r"asks us to leave once our requests are done")


def test_shutting_down_a_client_finishes_its_requests_and_tells_the_server(
        net, nodes, fake_models):
    srv, cli, end_user = slow_request_in_flight(net, nodes, fake_models)
    assert cli.stop() == 0
    out = end_user.communicate(timeout=30)[0].decode()
    assert out.split()[1] == "200", out
    srv.wait_log(r"tunnel: client .* is draining")
    srv.wait_log(r"tunnel: client .* disconnected")


def test_a_server_that_accepts_and_says_nothing_is_given_up_on(net, nodes, gpu_models):
    """A listener that takes the TCP connection and never answers TLS must not hold the client:
    it gives up after ping_timeout (1 s here) and tries again later."""
    s, c = net.ns("s"), net.ns("c")
    s_ip, _ = net.link(s, c)
    mute = subprocess.Popen(["ip", "netns", "exec", s, "/usr/bin/python3", "-c",
                             "import socket, time\n"
                             f"l = socket.create_server(('{s_ip}', 8443))\n"
                             "print('listening', flush=True)\n"
                             "held = []\n"
                             "while True: held.append(l.accept())\n"],
                            stdout=subprocess.PIPE, text=True)
    try:
        # listening before the client starts (a fixed sleep raced a slow start: the client's
        # first dial was refused, not left unanswered)
        assert mute.stdout.readline() == "listening\n"
        ident = nodes.identity("gpu1")
        cli = nodes.client(c, "gpu1", gpu_models / "tiny-a", [(s_ip, "sha256/" + "A" * 43 + "=")],
                           ident)
        t0 = time.monotonic()
        cli.wait_log(r"connection to https://.* lost: no answer within 1000 ms; reconnecting",
                     timeout=10)
        assert time.monotonic() - t0 < 3
        wait_count(cli, r"lost: no answer within 1000 ms", 2, timeout=15)  # and it keeps trying
    finally:
        mute.kill()
        mute.wait()


@pytest.mark.parametrize("model", ["echo-a", "chunkecho-a"])
def test_large_bodies_cross_the_tunnel_whole_both_ways(net, nodes, fake_models, tmp_path, model):
    """3 MiB up and the same back (the echo fakes: with a length, and chunked), 30 times: the
    answers outrun the tunnel, so each is paused and resumed on the way. One paused on its last
    bytes once left its pooled connection deaf, and the next request on it hung."""
    t = one_client(net, nodes, fake_models, f".*{model}", env={"GI_LLAMA_EXE": str(FAKE)})
    pad = "".join(chr(97 + i % 26) for i in range(3 << 20))
    sent, got = tmp_path / "up.json", tmp_path / "down.json"
    sent.write_text(json.dumps({"model": model, "pad": pad}))
    for i in range(30):
        got.unlink(missing_ok=True)
        r = net.curl(t.u, *AUTH, "--max-time", "10", "-o", str(got), "-w", "%{http_code}",
                     "-H", "Content-Type: application/json", "--data-binary", f"@{sent}",
                     f"{t.srv.api}/v1/chat/completions")
        assert r.stdout == "200", f"try {i}: {r.stdout} {r.stderr}"
        assert json.loads(got.read_text())["pad"] == pad, f"try {i}: the body changed"


def test_an_answer_the_server_takes_nothing_of_is_dropped_on_the_gpu_side(
        net, nodes, fake_models, tmp_path):
    """An end user who reads nothing, and a server that waits an hour before cutting such a
    user: its window to the GPU machine stays shut, and the GPU machine drops the stream after
    its own limits.write_stall_timeout, freeing its llama-server."""
    s, u, s_user, [(c, s_ip)] = star(net, 1)
    ident = nodes.identity("gpu1")
    srv = nodes.server(s, s_user, [ident[2]], extra="limits:\n  write_stall_timeout: 3600\n")
    cli = nodes.client(c, "gpu1", fake_models, [(s_ip, srv.pin)], ident,
                       env={"GI_LLAMA_EXE": str(FAKE)},
                       extra="limits:\n  write_stall_timeout: 1\n")
    srv.wait_log(r"registered: .*echo-a")
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"model": "echo-a", "pad": "x" * (16 << 20)}))
    host = srv.api.split("//")[1].split(":")[0]
    reader = subprocess.Popen(  # sends the request, then reads nothing
        ["ip", "netns", "exec", u, "python3", "-c", f"""
import socket, sys, time
body = open({str(big)!r}, "rb").read()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(({host!r}, 8080))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer {API_KEY}"
          b"\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body))
s.sendall(body)
time.sleep(30)
"""])
    try:
        cli.wait_log(r"took nothing of stream \d+'s answer for 1000 ms; dropped", timeout=30)
        cli.wait_log(r"went away before the response ended")  # the echo fake is let go
    finally:
        reader.kill()
        reader.wait()


def test_a_gpu_side_failure_mid_stream_cuts_the_end_users_stream(net, nodes, fake_models):
    """Cancellation the other way: the client's llama-server dies mid-stream, the client
    resets the stream, and the end user's response is cut (not left hanging, not completed)."""
    t = one_client(net, nodes, fake_models, ".*die-a", env={"GI_LLAMA_EXE": str(FAKE)})
    t0 = time.monotonic()
    r = net.curl(t.u, *AUTH, f"{t.srv.api}/v1/chat/completions", "-d", chat("die-a"), timeout=20)
    assert r.returncode != 0 and "data: " in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert "[DONE]" not in r.stdout
    assert time.monotonic() - t0 < 5
    t.srv.wait_log(r"POST /v1/chat/completions model=die-a backend=tunnel status=200")
    t.cli.wait_log(r"llama-server for model die-a failed mid-response")


def test_every_address_of_a_server_name_gets_its_own_tunnel(net, nodes, gpu_models):
    """High availability behind one DNS name: two servers (sharing a key, so one pin) under
    gpu.test; the client dials both addresses, and either server serves when the other stops."""
    s1, s2, c, u = net.ns("s1"), net.ns("s2"), net.ns("c"), net.ns("u")
    ip1, _ = net.link(s1, c)
    ip2, _ = net.link(s2, c)
    u1, _ = net.link(s1, u)
    u2, _ = net.link(s2, u)
    net.hosts(c, f"{ip1} gpu.test\n{ip2} gpu.test\n")
    ident, shared = nodes.identity("gpu"), nodes.identity("site")
    one = nodes.server(s1, u1, [ident[2]], name="one", identity=shared)
    two = nodes.server(s2, u2, [ident[2]], name="two", identity=shared)
    cli = nodes.client(c, "gpu", gpu_models / "tiny-a", [("gpu.test", shared[2])], ident)
    one.wait_log(r"registered: tiny-a")
    two.wait_log(r"registered: tiny-a")
    cli.wait_log(r"gpu.test:8443 has another address, 10\.")
    assert one.stop() == 0
    r = net.curl(u, *AUTH, f"{two.api}/v1/chat/completions", "-d", chat("tiny-a"))
    assert "data: [DONE]" in r.stdout, r.stdout


def test_a_key_removed_on_reload_closes_its_tunnel(net, nodes, gpu_models, tmp_path):
    t = one_client(net, nodes, gpu_models / "tiny-a", "tiny-a")
    cfg = tmp_path / "server" / "goinfer.yml"
    cfg.write_text(re.sub(r"clients: \[.*\]", "clients: []", cfg.read_text()))
    t.srv.proc.send_signal(signal.SIGHUP)
    t.srv.wait_log(r"disconnected: its key is no longer in server.clients")
    t.srv.wait_log(r"refused client .*: its key sha256/.* is not in server.clients")
    t.cli.wait_log(r"refused the tunnel with 403")
    r = net.curl(t.u, *AUTH, f"{t.srv.api}/v1/chat/completions", "-d", chat("tiny-a"))
    assert "model_not_found" in r.stdout, r.stdout


def test_a_gpu_clients_load_is_listed_on_the_server_with_its_progress(net, nodes, gpu_models,
                                                                      tmp_path):
    """The client tells the server how its loads go on the control stream (issue 11, item 4):
    the server's /running lists the model loading with llama.cpp's progress, then hot. The load
    is the real llama-server's, slowed by fakes/fake_slow_load.py (it holds back its lines)."""
    import sys
    from conftest import llama_exe
    slow = tmp_path / "slow-llama-server"
    slow.write_text(f"#!/bin/sh\nexec {sys.executable} "
                    f"{Path(__file__).parent / 'fakes' / 'fake_slow_load.py'} {llama_exe()} \"$@\"\n")
    slow.chmod(0o755)
    t = one_client(net, nodes, gpu_models / "tiny-a", "tiny-a", env={"GI_LLAMA_EXE": str(slow)})
    feed = net.popen_curl(t.u, *AUTH, f"{t.srv.api}/models/sse")
    time.sleep(0.3)  # the feed is open before the load begins
    chat_req = net.popen_curl(t.u, *AUTH, f"{t.srv.api}/v1/chat/completions", "-d",
                              chat("tiny-a", stream=False))

    def model():
        r = net.curl(t.u, *AUTH, f"{t.srv.api}/running")
        return json.loads(r.stdout)["tunnels"][0]["models"][0]

    deadline, m = time.monotonic() + 20, {}
    while time.monotonic() < deadline and "progress" not in m:
        m = model()
        time.sleep(0.05)
    assert m.get("loading") is True and m["hot"] is False, m
    assert m["progress"]["stages"] == ["text_model"] and m["progress"]["current"] == "text_model"
    assert 0 <= m["progress"]["value"] <= 1
    # the listings too: loading (with the progress in the one-model answer)
    one = json.loads(net.curl(t.u, *AUTH, f"{t.srv.api}/v1/models/tiny-a").stdout)
    assert one["status"]["value"] == "loading", one
    listed = json.loads(net.curl(t.u, *AUTH, f"{t.srv.api}/v1/models").stdout)["data"]
    assert [x["status"]["value"] for x in listed] == ["loading"], listed
    out, _ = chat_req.communicate(timeout=60)
    assert b"choices" in out, out
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not m["hot"]:
        m = model()
        time.sleep(0.1)
    assert m["hot"] is True and "loading" not in m and "progress" not in m, m
    listed = json.loads(net.curl(t.u, *AUTH, f"{t.srv.api}/v1/models").stdout)["data"]
    assert [x["status"] for x in listed] == [{"value": "loaded"}], listed
    # the server's /models/sse told the same, in llama.cpp's shapes
    feed.terminate()
    out, _ = feed.communicate(timeout=10)
    events = [json.loads(x[6:]) for x in out.decode().split("\n") if x.startswith("data: ")]
    assert events and all(e["model"] == "tiny-a" and e["event"] == "status_change"
                          for e in events), events
    assert [e["data"]["status"] for e in events][-1] == "loaded", events
    values = [e["data"]["progress"]["value"] for e in events if "progress" in e["data"]]
    assert values and values == sorted(values) and values[-1] == 1.0, events


def test_a_server_loads_and_unloads_a_model_on_one_gpu_machine_when_allowed(net, nodes,
                                                                           gpu_models):
    """The admin app's Fleet page (issue 12): POST /api/fleet/load|unload goes to one machine
    through its tunnel, only when that machine's owner set client.allow_admin."""
    s, u, s_user, [(c1, ip1), (c2, ip2)] = star(net, 2)
    i1, i2 = nodes.identity("gpu1"), nodes.identity("gpu2")
    srv = nodes.server(s, s_user, [i1[2], i2[2]])
    open_ = nodes.client(c1, "gpu1", gpu_models / "tiny-a", [(ip1, srv.pin)], i1,
                         extra="  allow_admin: true\n")
    shut = nodes.client(c2, "gpu2", gpu_models / "tiny-a", [(ip2, srv.pin)], i2)
    wait_count(srv, r"registered: tiny-a", 2)

    def tunnels():
        time.sleep(0.3)
        return json.loads(net.curl(u, *AUTH, f"{srv.api}/running").stdout)["tunnels"]

    pins = {t["admin"]: t["pin"] for t in tunnels()}
    assert set(pins) == {True, False}, pins

    def fleet(verb, pin, model="tiny-a"):
        r = net.curl(u, *AUTH, "-w", "\n%{http_code}", f"{srv.api}/api/fleet/{verb}", "-d",
                     json.dumps({"machine": pin, "model": model}))
        body, code = r.stdout.rsplit("\n", 1)
        return int(code), body

    code, body = fleet("load", pins[True])
    assert code == 200, body
    open_.wait_log(r"model tiny-a: starting")
    assert "model tiny-a: starting" not in shut.log()
    code, body = fleet("unload", pins[True])
    assert code == 200, body
    open_.wait_log(r"model tiny-a: stopping \(unloaded\)")
    code, body = fleet("load", pins[False])
    assert code == 403 and "client.allow_admin" in body, body
    assert fleet("load", "sha256/nope")[0] == 404
    assert fleet("load", pins[True], "no-such-model")[0] == 404
    srv.wait_log(r"audit: fleet.load tiny-a ")
    # a user request still reaches only the inference routes of the machine that did not allow
    r = net.curl(u, *AUTH, f"{srv.api}/v1/chat/completions", "-d", chat("tiny-a", stream=False))
    assert "choices" in r.stdout, r.stdout
