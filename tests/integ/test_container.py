"""The container (issue 14, item 3): the CPU image built from this checkout with Debian's podman
(offline: base images from mmdebstrap, the cached llama-server copied in), started, a chat
answered through it from the host, its health check, its user, its size; then compose.yml's
server and GPU client pair (the CPU image for both) with podman-compose, and the same pair
from the image in two network namespaces, as the tunnel tests do, where the GPU machine has no
inbound route at all."""
import os
import re
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from conftest import API_KEY, ROOT, mkmodel

IMAGE = "localhost/goinfer:test"
RUN = ["podman", "--runtime", "runc", "run", "-d", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=4096:4096", "--network=host"]


def need_tools():
    missing = [t for t in ("podman", "runc", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install podman runc mmdebstrap "
                    "(scripts/setup.sh test installs them)")
    if os.geteuid() != 0:
        pytest.fail("the container tests run podman as root (runc, network namespaces)")


@pytest.fixture(scope="module")
def image():
    need_tools()
    p = subprocess.run([str(ROOT / "container" / "build.sh"), IMAGE], capture_output=True,
                       text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return IMAGE


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Container:
    def __init__(self, args, netns=None):
        run = list(RUN)
        if netns:  # ip netns exec would remount /sys, where runc finds the cgroups
            run[run.index("--network=host")] = f"--network=ns:/run/netns/{netns}"
        p = subprocess.run([*run, *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        self.id = p.stdout.strip()

    def logs(self):
        return subprocess.run(["podman", "logs", self.id], capture_output=True, text=True).stderr

    def remove(self):
        subprocess.run(["podman", "--runtime", "runc", "rm", "-f", "-t", "5", self.id],
                       capture_output=True, timeout=60)


def chat(url, key=API_KEY, model="tiny", timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url + "/v1/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {key}"},
                           json={"model": model, "max_tokens": 4,
                                 "messages": [{"role": "user", "content": "hi"}]})
            if r.status_code == 200:
                return r.json()
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.2)
    raise AssertionError(f"no chat answered at {url}: {last}")


def shared_dir(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    return d


def test_image_serves_a_chat_from_the_host(image, tmp_path):
    models = shared_dir(tmp_path, "models")
    config = shared_dir(tmp_path, "config")
    mkmodel(models / "tiny.gguf", "-n", "tiny", "-s", "1")
    port = free_port()
    (config / "goinfer.yml").write_text(
        f"api_key: {API_KEY}\nmodels_dir: /models\nlisten:\n"
        f"  \"127.0.0.1:{port}\": goinfer, openai\n"
        "llama:\n  args:\n    common: -c 512 --no-warmup\n")
    for p in (models, config):
        subprocess.run(["chmod", "-R", "a+rX", str(p)], check=True)
    c = Container(["-e", f"GI_HEALTH_PORT={port}", "-v", f"{models}:/models:ro",
                   "-v", f"{config}:/config:ro", image])
    try:
        answer = chat(f"http://127.0.0.1:{port}")
        assert answer["choices"][0]["message"]["content"] is not None, answer
        # the health check the image declares passes, and it runs as its own user
        hc = subprocess.run(["podman", "--runtime", "runc", "healthcheck", "run", c.id],
                            capture_output=True, text=True, timeout=30)
        assert hc.returncode == 0, hc.stdout + hc.stderr
        uid = subprocess.run(["podman", "--runtime", "runc", "exec", c.id, "id", "-u"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        assert uid == "10001", uid
        inspect = subprocess.run(["podman", "image", "inspect", "--format",
                                  "{{.Size}} {{json .Config.Volumes}} {{.Config.User}}", image],
                                 capture_output=True, text=True).stdout
        size, volumes, user = inspect.split(" ", 2)
        assert int(size) < 150e6, f"image is {int(size) / 1e6:.1f} MB"
        assert "/models" in volumes and "/config" in volumes and user.strip() == "goinfer"
        assert "goinfer ready" in c.logs()
    finally:
        c.remove()


def test_compose_pair_serves_a_chat_through_the_tunnel(image, tmp_path):
    """compose.yml's server and GPU client, from the image and the configuration that
    container/compose-init.sh writes, each in a network namespace: the user reaches the server
    only, the server reaches the GPU machine only through the tunnel it dialled."""
    from tunnel_net import Net
    net = Net()
    containers = []
    work = tmp_path / "compose"
    try:
        srv, gpu, user = net.ns("s"), net.ns("g"), net.ns("u")
        srv_ip, _ = net.link(srv, gpu)
        _, srv_public = net.link(user, srv)
        shutil.copytree(ROOT / "container", work / "container",
                        ignore=shutil.ignore_patterns("llama", "compose"))
        p = subprocess.run([str(work / "container" / "compose-init.sh"),
                            f"https://{srv_ip}:8443"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        conf = work / "container" / "compose"
        key = (conf / "api_key").read_text().strip()
        models = shared_dir(tmp_path, "models")
        mkmodel(models / "tiny.gguf", "-n", "tiny", "-s", "1")
        subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
        os.chmod(tmp_path, 0o755)
        containers.append(Container(["-e", "GI_HEALTH_PORT=8080", "-v",
                                     f"{conf / 'server'}:/config:ro", image], netns=srv))
        containers.append(Container(["-e", "GI_HEALTH_PORT=4444", "-v",
                                     f"{conf / 'gpu'}:/config:ro", "-v",
                                     f"{models}:/models:ro", image], netns=gpu))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "registered" not in containers[0].logs():
            time.sleep(0.2)
        assert "registered" in containers[0].logs(), \
            containers[0].logs()[-3000:] + containers[1].logs()[-3000:]
        r = None
        for _ in range(100):
            r = net.curl(user, "-H", f"Authorization: Bearer {key}",
                         f"http://{srv_public}:8080/v1/chat/completions", "-d",
                         '{"model":"tiny","max_tokens":4,'
                         '"messages":[{"role":"user","content":"hi"}]}')
            if '"choices"' in r.stdout:
                break
            time.sleep(0.3)
        assert '"choices"' in r.stdout, r.stdout + r.stderr + containers[0].logs()[-2000:]
        assert re.search(r"POST /v1/chat/completions model=tiny backend=tunnel status=200 .*"
                         r"client=10\.", containers[0].logs()), containers[0].logs()[-2000:]
    finally:
        for c in containers:
            c.remove()
        net.cleanup()


def test_podman_compose_pair_serves_a_chat_through_the_tunnel(image, tmp_path):
    """compose.yml as it is, run by podman-compose (CNI with the dnsname plugin: the client
    dials https://server:8443 by its service name); a chat from the host on the published
    port reaches the GPU client's model through the tunnel."""
    if shutil.which("podman-compose") is None or not os.path.exists(
            "/usr/lib/cni/dnsname"):
        pytest.fail("podman-compose or its DNS plugin missing: apt-get install podman-compose "
                    "golang-github-containernetworking-plugin-dnsname (scripts/setup.sh test)")
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(ROOT / "compose.yml", work / "compose.yml")
    shutil.copytree(ROOT / "container", work / "container",
                    ignore=shutil.ignore_patterns("llama", "compose"))
    p = subprocess.run([str(work / "container" / "compose-init.sh")], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    key = (work / "container" / "compose" / "api_key").read_text().strip()
    (work / "models").mkdir()
    mkmodel(work / "models" / "tiny.gguf", "-n", "tiny", "-s", "1")
    subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
    port, tls_port = free_port(), free_port()
    project = f"gicompose{os.getpid()}"
    env = {**os.environ, "GOINFER_IMAGE": image, "GOINFER_GPU_IMAGE": image,
           "GOINFER_GPU_DEVICE": "/dev/null", "GI_MODELS_DIR": "./models",
           "GOINFER_HTTP_PORT": str(port), "GOINFER_TLS_PORT": str(tls_port)}
    compose = ["podman-compose", "-p", project, "--podman-run-args",
               "--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096"]
    try:
        p = subprocess.run([*compose, "up", "-d"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        answer = chat(f"http://127.0.0.1:{port}", key=key)
        assert answer["choices"], answer
        logs = subprocess.run(["podman", "logs", f"{project}_server_1"], capture_output=True,
                              text=True).stderr
        assert re.search(r"POST /v1/chat/completions model=tiny backend=tunnel status=200", logs), \
            logs[-2000:]
    finally:
        subprocess.run([*compose, "down", "-t", "5"], cwd=work, env=env, capture_output=True,
                       timeout=120)
        subprocess.run(["podman", "network", "rm", "-f", f"{project}_default"],
                       capture_output=True, timeout=60)
