"""Fault injection with tests/integ/fakes/fake_llama_server.py (a FAKE llama-server).

The real llama-server on tiny models answers in microseconds, too fast to show buffering or to
be killed mid-stream at a chosen moment; the fake does exactly that, nothing else.
"""
import time
from pathlib import Path

import httpx
import pytest

from conftest import auth, seconds_until_gone

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def fake_models(tmp_path):
    d = tmp_path / "fake-models"
    d.mkdir()
    for name in ("drip-a", "die-a", "endless-a"):
        (d / f"{name}.gguf").write_bytes(b"GGUF fake: only the file name matters to the fake")
    return d


@pytest.fixture
def fake_goinfer(fake_models, start_goinfer):
    return start_goinfer(fake_models, env={"GI_LLAMA_EXE": str(FAKE)})


def test_events_are_forwarded_as_they_arrive(fake_goinfer):
    arrivals = []
    t0 = time.monotonic()
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", fake_goinfer.url() + "/v1/chat/completions", headers=auth(),
                      json=dict(CHAT, model="drip-a")) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                arrivals.append(time.monotonic() - t0)
    # five events 200 ms apart upstream must reach the client 200 ms apart, not in one lump
    assert len(arrivals) >= 5
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert sum(1 for g in gaps if g > 0.1) >= 3, arrivals  # lumped together would be ~0


def test_child_dying_mid_stream_cuts_the_stream_and_next_request_works(fake_goinfer):
    with httpx.Client(timeout=30) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            with c.stream("POST", fake_goinfer.url() + "/v1/chat/completions", headers=auth(),
                          json=dict(CHAT, model="die-a")) as r:
                assert r.status_code == 200
                for _ in r.iter_raw():
                    pass
        fake_goinfer.wait_log(r"llama-server for model die-a failed mid-response")
        fake_goinfer.wait_log(r"model die-a: llama-server exited unexpectedly")
        # the crashed child is restarted for the next request, and others are unaffected
        r = c.post(fake_goinfer.url() + "/v1/chat/completions", headers=auth(),
                   json=dict(CHAT, model="drip-a"))
        assert r.status_code == 200 and "[DONE]" in r.text


def test_client_leaving_aborts_the_upstream_request(fake_goinfer, fake_models):
    gone = fake_models / "endless-a.gguf.gone"
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", fake_goinfer.url() + "/v1/chat/completions", headers=auth(),
                      json=dict(CHAT, model="endless-a")) as r:
            next(r.iter_raw())
            left = time.time()
    noticed = seconds_until_gone(gone, left)
    assert noticed < 1.0, f"upstream noticed {noticed:.3f}s after the client left"
    fake_goinfer.wait_log(r"went away before the response ended")
