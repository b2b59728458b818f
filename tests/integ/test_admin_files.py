"""The admin API's model files (issue 12, Files): uploads (chunked, resumable, checked), the
listing, deletes (refused while running, forced, confined), downloads from a fake hub."""
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import auth, mkmodel

CHAT = {"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
CHUNK = 16 << 20


@pytest.fixture
def mdir(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    mkmodel(d / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
    return d


def tiny_bytes(tmp_path, name="tiny-x", seed="5"):
    p = tmp_path / f"src-{name}.gguf"
    mkmodel(p, "-n", name, "-s", seed)
    return p.read_bytes()


def big_file(tmp_path, size):
    """A tiny model padded to size bytes: the header reader takes it, nobody runs it."""
    p = tmp_path / "big-src.gguf"
    mkmodel(p, "-n", "big", "-s", "9")
    with open(p, "ab") as f:
        f.truncate(size)
    return p


def create(client, g, name, size, sha=None):
    body = {"name": name, "size": size}
    if sha:
        body["sha256"] = sha
    return client.post(g.url() + "/api/uploads", headers=auth(), json=body)


def patch(client, g, uid, offset, data):
    return client.patch(g.url() + f"/api/uploads/{uid}", content=data,
                        headers={**auth(), "Upload-Offset": str(offset),
                                 "Content-Type": "application/offset+octet-stream"})


def upload(client, g, name, data, start=0, uid=None, sha=True, progress=None):
    """Uploads data (bytes) in chunks from start; returns the last answer."""
    if uid is None:
        r = create(client, g, name, len(data), hashlib.sha256(data).hexdigest() if sha else None)
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
    off = start
    r = None
    while off < len(data):
        r = patch(client, g, uid, off, data[off:off + CHUNK])
        assert r.status_code == 200, r.text
        assert int(r.headers["Upload-Offset"]) == r.json()["offset"]
        off = r.json()["offset"]
        if progress is not None:
            progress.append(off)
    return r


def files(client, g):
    r = client.get(g.url() + "/api/files", headers=auth())
    assert r.status_code == 200, r.text
    return r.json()


def model_ids(client, g):
    return [m["id"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"]]


def wait_model(client, g, name, present=True):
    deadline = time.monotonic() + 10
    while (name in model_ids(client, g)) != present:
        assert time.monotonic() < deadline, f"{name} {'never' if present else 'still'} listed"
        time.sleep(0.05)


def test_upload_200mb_then_listed_and_tiny_one_chats(start_goinfer, mdir, tmp_path, client):
    g = start_goinfer(mdir)
    src = big_file(tmp_path, 200 << 20)
    data = src.read_bytes()
    progress = []
    r = upload(client, g, "big-model.gguf", data, progress=progress)
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest() and r.json()["done"]
    assert len(progress) == (200 << 20) // CHUNK + 1 and progress == sorted(progress)
    assert (mdir / "big-model.gguf").stat().st_size == 200 << 20
    assert not [p for p in os.listdir(mdir) if p.startswith(".goinfer-upload")]
    wait_model(client, g, "big-model")
    listed = {f["name"]: f for f in files(client, g)["files"]}
    assert listed["big-model.gguf"]["size"] == 200 << 20
    assert listed["big-model.gguf"]["models"] == ["big-model"]
    assert listed["tiny-a.gguf"]["running"] is False
    assert files(client, g)["folders"][0]["free_bytes"] > 0
    g.wait_log(r"audit: upload.complete big-model.gguf by .* 200")

    upload(client, g, "tiny-up.gguf", tiny_bytes(tmp_path))
    wait_model(client, g, "tiny-up")
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json=dict(CHAT, model="tiny-up"))
    assert r.status_code == 200, r.text
    f = {f["name"]: f for f in files(client, g)["files"]}["tiny-up.gguf"]
    assert f["running"] is True and f["running_models"] == ["tiny-up"]


def cut_patch(g, uid, offset, data, sent):
    """A PATCH whose connection drops after `sent` of its body bytes."""
    host, port = g.ports["goinfer"]
    s = socket.create_connection((host, port))
    head = (f"PATCH /api/uploads/{uid} HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: {auth()['Authorization']}\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    s.sendall(head + data[:sent])
    s.close()


def status(client, g, uid):
    r = client.get(g.url() + f"/api/uploads/{uid}", headers=auth())
    assert r.status_code == 200, r.text
    h = client.head(g.url() + f"/api/uploads/{uid}", headers=auth())
    assert h.status_code == 200 and h.headers["Upload-Offset"] == str(r.json()["offset"])
    return r.json()


def test_upload_cut_at_60_percent_resumes(start_goinfer, mdir, tmp_path, client):
    g = start_goinfer(mdir)
    data = big_file(tmp_path, 80 << 20).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    uid = create(client, g, "resumed.gguf", len(data), sha).json()["id"]
    cut = int(len(data) * 0.6) // CHUNK * CHUNK
    off = 0
    while off < cut:
        off = patch(client, g, uid, off, data[off:off + CHUNK]).json()["offset"]
    cut_patch(g, uid, off, data[off:off + CHUNK], CHUNK // 2)  # the connection drops mid-chunk
    time.sleep(0.3)
    st = status(client, g, uid)
    assert st["offset"] == off and st["size"] == len(data)
    assert [u["id"] for u in files(client, g)["uploads"]] == [uid]
    r = patch(client, g, uid, 0, data[:10])  # a wrong offset says the right one
    assert r.status_code == 409 and r.headers["Upload-Offset"] == str(off)
    r = upload(client, g, "resumed.gguf", data, start=off, uid=uid)
    assert r.json()["sha256"] == sha
    assert hashlib.sha256((mdir / "resumed.gguf").read_bytes()).hexdigest() == sha


def test_upload_resumes_after_a_restart(start_goinfer, mdir, tmp_path, client):
    """The offset comes back from the part's size, the hash is recomputed from its bytes."""
    data = big_file(tmp_path, 40 << 20).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    g = start_goinfer(mdir)
    uid = create(client, g, "restart.gguf", len(data), sha).json()["id"]
    off = patch(client, g, uid, 0, data[:CHUNK]).json()["offset"]
    assert g.stop() == 0
    g = start_goinfer(mdir)
    assert status(client, g, uid)["offset"] == off
    r = upload(client, g, "restart.gguf", data, start=off, uid=uid)
    assert r.json()["sha256"] == sha
    g.wait_log(r"resumed after a restart")


@pytest.mark.parametrize("name", ["../x.gguf", ".hidden.gguf", "a/b.gguf", "x.bin", "a\u0000b.gguf",
                                  "m-00003-of-00002.gguf", "", "a..b.gguf", "x\n.gguf"])
def test_upload_bad_names_refused(start_goinfer, mdir, client, name):
    g = start_goinfer(mdir)
    r = create(client, g, name, 100)
    assert r.status_code == 400, r.text
    assert not [p for p in os.listdir(mdir) if p != "tiny-a.gguf"]


def test_upload_refusals(start_goinfer, mdir, tmp_path, client):
    g = start_goinfer(mdir, extra="admin:\n  upload_max_bytes: 100000000\n")
    r = create(client, g, "huge.gguf", 100000001)
    assert r.status_code == 413 and "upload_max_bytes" in r.text
    assert create(client, g, "tiny-a.gguf", 100).status_code == 409  # there already
    # a wrong checksum: the file goes, the error says so
    data = tiny_bytes(tmp_path)
    uid = create(client, g, "wrong.gguf", len(data), "0" * 64).json()["id"]
    r = patch(client, g, uid, 0, data)
    assert r.status_code == 422 and "sha256 mismatch" in r.text
    # not a GGUF file
    uid = create(client, g, "notgguf.gguf", 1000).json()["id"]
    r = patch(client, g, uid, 0, b"x" * 1000)
    assert r.status_code == 422 and "not a GGUF" in r.text
    # past the announced size
    uid = create(client, g, "short.gguf", 10).json()["id"]
    assert patch(client, g, uid, 0, b"y" * 11).status_code == 413
    assert client.delete(g.url() + f"/api/uploads/{uid}", headers=auth()).status_code == 200
    assert client.get(g.url() + f"/api/uploads/{uid}", headers=auth()).status_code == 404
    assert sorted(os.listdir(mdir)) == ["tiny-a.gguf"]
    # the admin key only
    assert client.get(g.url() + "/api/files").status_code == 401


def test_upload_no_space(start_goinfer, tmp_path, client):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        mkmodel(small / "tiny-a.gguf", "-n", "tiny-a", "-s", "1")
        g = start_goinfer(small)
        r = create(client, g, "big.gguf", 50 << 20)
        assert r.status_code == 507 and "not enough free space" in r.text, r.text
        g.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_delete_refused_while_running_forced_and_confined(start_goinfer, mdir, tmp_path, client):
    outside = tmp_path / "outside"
    outside.mkdir()
    mkmodel(outside / "precious.gguf", "-n", "precious", "-s", "3")
    os.symlink(outside / "precious.gguf", mdir / "link.gguf")
    os.symlink(outside, mdir / "ext")
    mkmodel(mdir / "split.gguf", "-n", "split", "-s", "3", "--split", "3")
    g = start_goinfer(mdir)
    assert client.post(g.url() + "/v1/chat/completions", headers=auth(),
                       json=dict(CHAT, model="tiny-a")).status_code == 200
    r = client.delete(g.url() + "/api/files/tiny-a.gguf", headers=auth())
    assert r.status_code == 409 and "tiny-a" in r.text and "force=1" in r.text, r.text
    assert (mdir / "tiny-a.gguf").exists()
    r = client.delete(g.url() + "/api/files/tiny-a.gguf?force=1", headers=auth())
    assert r.status_code == 200 and "tiny-a" in r.json()["unloaded"], r.text
    assert not (mdir / "tiny-a.gguf").exists()
    g.wait_log(r"model tiny-a: stopped")
    wait_model(client, g, "tiny-a", present=False)
    g.wait_log(r"audit: file.delete tiny-a.gguf by .* 200")
    # a symlink: the link goes, never its target
    r = client.delete(g.url() + "/api/files/link.gguf", headers=auth())
    assert r.status_code == 200, r.text
    assert not (mdir / "link.gguf").is_symlink() and (outside / "precious.gguf").exists()
    # through a symlinked folder: refused
    r = client.delete(g.url() + "/api/files/ext/precious.gguf", headers=auth())
    assert r.status_code == 403 and "symbolic link" in r.text, r.text
    assert (outside / "precious.gguf").exists()
    for bad in ["..%2Fx.gguf", "%2e%2e/outside/precious.gguf", "x.txt"]:
        r = client.delete(g.url() + "/api/files/" + bad, headers=auth())
        assert r.status_code == 400, (bad, r.text)
    assert client.delete(g.url() + "/api/files/nope.gguf", headers=auth()).status_code == 404
    # a split model's parts together
    r = client.delete(g.url() + "/api/files/split-00002-of-00003.gguf", headers=auth())
    assert r.status_code == 200 and len(r.json()["files"]) == 3, r.text
    assert not list(mdir.glob("split-*"))


# ---- downloads, from a fake hub ----

FAKE_HUB = Path(__file__).parent / "fakes" / "fake_hub.py"


@pytest.fixture
def hub(tmp_path):
    root = tmp_path / "hub"
    root.mkdir()
    p = subprocess.Popen(["/usr/bin/python3", str(FAKE_HUB), str(root)], stdout=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    assert line.startswith("FAKE hub listening on "), line
    port = int(line.split()[-1])
    yield root, port
    p.kill()
    p.wait()


def start_for_hub(start_goinfer, mdir, port, hosts=("127.0.0.1", "localhost")):
    extra = "admin:\n  download_hosts:\n" + "".join(f"    - \"{h}\"\n" for h in hosts)
    return start_goinfer(mdir, env={"GI_HF_BASE": f"http://127.0.0.1:{port}"}, extra=extra)


def download(client, g, body, want="done", timeout=60):
    r = client.post(g.url() + "/api/downloads", headers=auth(), json=body)
    assert r.status_code == 202, r.text
    did = r.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(g.url() + "/api/downloads", headers=auth())
        d = {x["id"]: x for x in r.json()["downloads"]}[did]
        if d["state"] not in ("resolving", "downloading", "verifying"):
            break
        assert time.monotonic() < deadline, d
        time.sleep(0.05)
    assert d["state"] == want, d
    return d


def requests_log(root):
    return (root / "requests.log").read_text().splitlines()


def test_download_hf_split_model_redirect_and_range_resume(start_goinfer, mdir, hub, client):
    root, port = hub
    repo = root / "org" / "Split-GGUF"
    (repo / "Q4_K_M").mkdir(parents=True)
    mkmodel(repo / "Q4_K_M" / "split-Q4_K_M.gguf", "-n", "split", "-s", "3", "--split", "3")
    mkmodel(repo / "split-Q8_0.gguf", "-n", "other", "-s", "4")
    (root / ".cut").write_text("split-Q4_K_M-00002-of-00003.gguf")
    g = start_for_hub(start_goinfer, mdir, port)
    d = download(client, g, {"hf": "org/Split-GGUF:Q4_K_M"})
    names = sorted(f["name"] for f in d["files"])
    assert names == [f"split-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)], d
    assert d["bytes"] == d["total"] and all(len(f["sha256"]) == 64 for f in d["files"])
    for f in d["files"]:
        src = repo / "Q4_K_M" / f["name"]
        assert (mdir / f["name"]).read_bytes() == src.read_bytes()
    assert not (mdir / "split-Q8_0.gguf").exists()
    log = requests_log(root)
    assert any(line.startswith("GET /api/models/org/Split-GGUF/tree/main") for line in log), log
    assert any("/resolve/main/Q4_K_M/" in line for line in log), log
    part2 = [line for line in log if line.startswith("GET /cdn/") and "00002-of" in line]
    assert len(part2) == 2 and part2[1].split()[-1].startswith("bytes="), part2
    assert not [p for p in os.listdir(mdir) if p.startswith(".")]
    wait_model(client, g, "split-Q4_K_M")
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json=dict(CHAT, model="split-Q4_K_M"))
    assert r.status_code == 200, r.text
    g.wait_log(r"audit: download.start org/Split-GGUF:Q4_K_M by .* 202")


def test_download_wrong_checksum_refused(start_goinfer, mdir, hub, client):
    root, port = hub
    repo = root / "org" / "Bad-GGUF"
    repo.mkdir(parents=True)
    mkmodel(repo / "bad-Q4_0.gguf", "-n", "bad", "-s", "6")
    (repo / ".oids.json").write_text(json.dumps({"bad-Q4_0.gguf": "ab" * 32}))
    g = start_for_hub(start_goinfer, mdir, port)
    d = download(client, g, {"hf": "org/Bad-GGUF:Q4_0"}, want="failed")
    assert "sha256 mismatch" in d["error"] and "removed" in d["error"], d
    assert sorted(os.listdir(mdir)) == ["tiny-a.gguf"]
    d = download(client, g, {"hf": "org/Bad-GGUF:Q5_K"}, want="failed")
    assert "no .gguf file" in d["error"] and "bad-Q4_0.gguf" in d["error"], d
    d = download(client, g, {"hf": "org/Missing-GGUF:Q5_K"}, want="failed")
    assert "404" in d["error"], d


def test_download_hosts_limited(start_goinfer, mdir, hub, client):
    root, port = hub
    (root / "files").mkdir()
    mkmodel(root / "files" / "plain.gguf", "-n", "plain", "-s", "7")
    repo = root / "org" / "R-GGUF"
    repo.mkdir(parents=True)
    mkmodel(repo / "r-Q4_0.gguf", "-n", "r", "-s", "8")
    g = start_for_hub(start_goinfer, mdir, port, hosts=("127.0.0.1",))
    r = client.post(g.url() + "/api/downloads", headers=auth(),
                    json={"url": "http://127.0.0.3:9/x.gguf"})
    assert r.status_code == 403 and "download_hosts" in r.text, r.text
    r = client.post(g.url() + "/api/downloads", headers=auth(),
                    json={"url": "https://127.0.0.1/x.gguf"})
    assert r.status_code == 501 and "plain http" in r.text, r.text
    for bad in [{"hf": "../x:Q4"}, {"hf": "org/repo"}, {}, {"url": "http://127.0.0.1/x.txt"}]:
        r = client.post(g.url() + "/api/downloads", headers=auth(), json=bad)
        assert r.status_code == 400, (bad, r.text)
    # the hub redirects to localhost, which is not allowed here
    d = download(client, g, {"hf": "org/R-GGUF:Q4_0"}, want="failed")
    assert "redirected to http://localhost" in d["error"] and "download_hosts" in d["error"], d
    assert sorted(os.listdir(mdir)) == ["tiny-a.gguf"]
    # a plain URL from an allowed host, with its sha256
    data = (root / "files" / "plain.gguf").read_bytes()
    d = download(client, g, {"url": f"http://127.0.0.1:{port}/files/plain.gguf",
                             "sha256": hashlib.sha256(data).hexdigest()})
    assert (mdir / "plain.gguf").read_bytes() == data
    wait_model(client, g, "plain")


def test_download_progress_and_cancel(start_goinfer, mdir, hub, tmp_path, client):
    root, port = hub
    (root / "files").mkdir()
    big_file(tmp_path, 30 << 20).rename(root / "files" / "slowmodel.gguf")
    g = start_for_hub(start_goinfer, mdir, port)
    r = client.post(g.url() + "/api/downloads", headers=auth(),
                    json={"url": f"http://127.0.0.1:{port}/slow/slowmodel.gguf"})
    did = r.json()["id"]
    deadline = time.monotonic() + 20
    while True:
        d = client.get(g.url() + "/api/downloads", headers=auth()).json()["downloads"][0]
        if d["bytes"] > 2 << 20:
            break
        assert time.monotonic() < deadline, d
        time.sleep(0.1)
    assert d["state"] == "downloading" and d["total"] == 30 << 20 and d["rate"] > 0, d
    assert [x["id"] for x in files(client, g)["downloads"]] == [did]
    r = client.delete(g.url() + f"/api/downloads/{did}", headers=auth())
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    time.sleep(0.3)
    assert sorted(os.listdir(mdir)) == ["tiny-a.gguf"]


def raw_patch(g, uid, offset, data):
    host, port = g.ports["goinfer"]
    s = socket.create_connection((host, port))
    s.sendall((f"PATCH /api/uploads/{uid} HTTP/1.1\r\nHost: localhost\r\n"
               f"Authorization: {auth()['Authorization']}\r\nUpload-Offset: {offset}\r\n"
               f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data)
    return s


def raw_status(s):
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return int(out.split(b" ", 2)[1]), out


def test_upload_next_chunk_on_a_second_connection(start_goinfer, mdir, tmp_path, client):
    """A chunk that follows the one being written waits for it instead of being refused."""
    g = start_goinfer(mdir)
    data = big_file(tmp_path, 96 << 20).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    uid = create(client, g, "two.gguf", len(data), sha).json()["id"]
    part = 32 << 20
    held = 0
    for k in range(0, 3, 2):
        a = raw_patch(g, uid, k * part, data[k * part:(k + 1) * part])
        b = raw_patch(g, uid, (k + 1) * part, data[(k + 1) * part:(k + 2) * part]) \
            if k + 1 < 3 else None
        assert raw_status(a)[0] == 200
        if b is not None:
            code, out = raw_status(b)
            if code == 409:  # came before its predecessor was taken: sent again
                assert b"Upload-Offset" in out
                assert patch(client, g, uid, (k + 1) * part,
                             data[(k + 1) * part:(k + 2) * part]).status_code == 200
            else:
                held += 1
                assert code == 200, out
    assert hashlib.sha256((mdir / "two.gguf").read_bytes()).hexdigest() == sha
    print(f"chunks held for their predecessor: {held}")
