"""Goinfer's own HTTP/1.1 client to llama-server (src/http/client.c), against a FAKE
llama-server (tests/integ/fakes/fake_llama_server.py) for what the real one does only by chance:
a pooled connection closed as it is reused, a body delimited by the close, an interim 1xx.
"""
import json
from pathlib import Path

import httpx
import pytest

from conftest import auth

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"


@pytest.fixture
def fake(tmp_path, start_goinfer):
    d = tmp_path / "fake-models"
    d.mkdir()
    for name in ("stale-a", "eofbody-a", "interim-a"):
        (d / f"{name}.gguf").write_bytes(b"GGUF fake: only the file name matters to the fake")
    return start_goinfer(d, env={"GI_LLAMA_EXE": str(FAKE)})


def chat(g, model, n):
    body = {"model": model, "messages": [{"role": "user", "content": f"question {n}"}]}
    r = httpx.post(g.url() + "/v1/chat/completions", headers=auth(), json=body, timeout=30)
    return r, body


def test_a_pooled_connection_closed_on_reuse_is_retried_on_a_fresh_one(fake):
    # every request after the first on a connection meets a close: each must still succeed,
    # once, with its own body (a retry only happens when no byte of an answer came back)
    for n in range(4):
        r, body = chat(fake, "stale-a", n)
        assert r.status_code == 200, r.text
        assert json.loads(r.text)["messages"] == body["messages"]


def test_a_body_delimited_by_the_close_arrives_whole(fake):
    for n in range(2):
        r, body = chat(fake, "eofbody-a", n)
        assert r.status_code == 200, r.text
        assert json.loads(r.text)["messages"] == body["messages"]


def test_an_interim_1xx_response_is_skipped(fake):
    r, body = chat(fake, "interim-a", 0)
    assert r.status_code == 200, r.text
    assert "link" not in r.headers
    assert json.loads(r.text)["messages"] == body["messages"]
