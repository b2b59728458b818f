"""Loading progress (issue 11, item 4), from what the real llama-server reports on llama.cpp's
child protocol: GET /models/sse in llama.cpp's event shapes, /running and the listings while a
model loads, llama-swap's sendLoadingState in the stream of a chat request that waits on a load
(with an estimate from the model's past loads), and the graceful exit line on unload.

A load of a tiny model takes milliseconds, so the slow model runs the real llama-server behind
fakes/fake_slow_load.py, which only holds back its "loading" state lines (about 1 s each)."""
import json
import re
import sys
import threading
import time
from pathlib import Path

import httpx

from conftest import auth, llama_exe
from test_swapconf import config, start

SLOW = Path(__file__).parent / "fakes" / "fake_slow_load.py"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def swap_yaml(models_dir, extra=""):
    real = f"{llama_exe()} -m {models_dir}/tiny-a.gguf --host 127.0.0.1 --port ${{PORT}} " \
           "-c 512 --no-warmup"
    return f"""
healthCheckTimeout: 60
{extra}
models:
  slow:
    cmd: {sys.executable} {SLOW} {real}
  quiet:
    sendLoadingState: false
    cmd: {sys.executable} {SLOW} {real}
"""


class Feed:
    """GET /models/sse read in a thread: the parsed records, in order."""

    def __init__(self, url):
        self.events = []
        self.status = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self.thread.start()
        with self.cond:
            assert self.cond.wait_for(lambda: self.status is not None, 10), "no /models/sse answer"

    def _read(self, url):
        with httpx.Client(timeout=httpx.Timeout(5, read=None)) as c:
            with c.stream("GET", url + "/models/sse", headers=auth()) as r:
                with self.cond:
                    self.status = (r.status_code, r.headers.get("content-type"))
                    self.cond.notify_all()
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        with self.cond:
                            self.events.append(json.loads(line[6:]))
                            self.cond.notify_all()

    def wait(self, pred, timeout=30):
        with self.cond:
            ok = self.cond.wait_for(lambda: any(pred(e) for e in self.events), timeout)
            assert ok, f"no such event in {self.events}"
            return list(self.events)


def is_state(model, status):
    return lambda e: e["model"] == model and e["event"] == "status_change" and \
        e["data"]["status"] == status


def test_models_sse_reports_a_load_in_order_with_progress_to_one(models_dir, tmp_path,
                                                                   start_goinfer, client):
    g = start(start_goinfer, models_dir, config(tmp_path, swap_yaml(models_dir), models_dir))
    feed = Feed(g.url())
    assert feed.status == (200, "text/event-stream")
    other = Feed(g.url("openai"))  # every listener serving the API has it
    r = client.post(g.url() + "/models/load", headers=auth(), json={"model": "slow"})
    assert r.status_code == 200, r.text
    events = [e for e in feed.wait(is_state("slow", "loaded")) if e["model"] == "slow"]
    assert events[0] == {"model": "slow", "event": "model_status", "data": {"status": "loading"}}
    assert events[-1]["data"] == {"status": "loaded"}, events
    progress = [e["data"]["progress"] for e in events[1:-1]]
    assert all(e["event"] == "status_change" and e["data"]["status"] == "loading"
               for e in events[1:-1]), events
    assert len(progress) >= 2, events
    for p in progress:
        assert p["stages"] == ["text_model"] and p["current"] == "text_model", p
    values = [p["value"] for p in progress]
    assert values == sorted(values) and values[-1] == 1.0, values
    # unloaded, with the exit code of a clean exit (llama.cpp's web UI reads non-zero as failed)
    client.post(g.url() + "/models/unload", headers=auth(), json={"model": "slow"})
    last = feed.wait(is_state("slow", "unloaded"))[-1]
    assert last["data"] == {"status": "unloaded", "exit_code": 0}, last
    assert [e["event"] for e in other.wait(is_state("slow", "unloaded"))
            if e["model"] == "slow"] == [e["event"] for e in feed.events if e["model"] == "slow"]
    # behind the same key as /models; HEAD answers the head and ends
    assert httpx.get(g.url() + "/models/sse", timeout=5).status_code == 401
    r = client.head(g.url() + "/models/sse", headers=auth(), timeout=5)
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"


def test_a_failed_start_is_unloaded_with_an_exit_code(models_dir, tmp_path, start_goinfer,
                                                      client):
    g = start_goinfer(models_dir)
    feed = Feed(g.url())
    assert client.post(g.url() + "/models/load", headers=auth(),
                       json={"model": "broken"}).status_code == 502
    last = feed.wait(is_state("broken", "unloaded"))[-1]
    assert last["data"]["exit_code"] != 0, last


def entry(client, g, model):
    rows = client.get(g.url() + "/running", headers=auth()).json()["running"]
    return next((x for x in rows if x["model"] == model), None)


def test_running_and_listings_show_progress_while_loading(models_dir, tmp_path, start_goinfer,
                                                         client):
    g = start(start_goinfer, models_dir, config(tmp_path, swap_yaml(models_dir), models_dir))
    loader = threading.Thread(target=lambda: httpx.post(
        g.url() + "/models/load", headers=auth(), json={"model": "slow"}, timeout=60))
    loader.start()
    deadline = time.monotonic() + 20
    e = None
    while time.monotonic() < deadline:
        e = entry(client, g, "slow")
        if e and "progress" in e:
            break
        time.sleep(0.05)
    assert e and "progress" in e, e
    assert e["state"] == "starting" and e["elapsed_s"] >= 0, e
    assert e["progress"]["stages"] == ["text_model"] and e["progress"]["current"] == "text_model"
    assert 0 <= e["progress"]["value"] <= 1
    st = next(m["status"] for m in client.get(g.url() + "/v1/models", headers=auth()).json()["data"]
              if m["id"] == "slow")
    assert st["value"] == "loading" and st["progress"]["current"] == "text_model", st
    loader.join(60)
    e = entry(client, g, "slow")
    assert e["state"] == "ready" and "progress" not in e and "remaining_s" not in e, e


def chat_stream(client, g, model):
    """The reasoning text and the content of a streaming chat, and whether it ended with [DONE]."""
    reasoning, content, done = "", "", False
    with client.stream("POST", g.url() + "/v1/chat/completions", headers=auth(),
                       json=dict(CHAT, model=model, stream=True)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            line = line.strip()
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                delta = json.loads(line[6:])["choices"][0].get("delta", {})
                if not content:  # the loading state comes before any of the answer
                    reasoning += delta.get("reasoning_content") or ""
                content += delta.get("content") or ""
    return reasoning, content, done


def test_send_loading_state_in_the_stream_of_a_waiting_chat(models_dir, tmp_path, start_goinfer,
                                                            client):
    g = start(start_goinfer, models_dir,
              config(tmp_path, swap_yaml(models_dir, "sendLoadingState: true"), models_dir))
    reasoning, content, done = chat_stream(client, g, "slow")
    assert reasoning.startswith("━━━━━\ngoinfer loading model: slow\n"), reasoning
    assert "\nLoading weights 0%" in reasoning and "\nLoading weights 100%" in reasoning, reasoning
    assert "\nDone! (" in reasoning and reasoning.endswith("━━━━━\n \n"), reasoning
    assert "left" not in reasoning.split("Loading weights 0%")[0], reasoning  # no past load yet
    assert content and done
    # a model already loaded: the answer alone
    reasoning, content, done = chat_stream(client, g, "slow")
    assert "loading model" not in reasoning and content and done
    # loaded again: an estimate from the first load, from the start
    client.post(g.url() + "/models/unload", headers=auth(), json={"model": "slow"})
    g.wait_log(r"model slow: stopped")
    reasoning, content, done = chat_stream(client, g, "slow")
    assert re.search(r"\nStarting llama-server, about [1-9]\d* s left", reasoning), reasoning
    assert content and done
    # the model's own sendLoadingState: false wins over the global true
    reasoning, content, done = chat_stream(client, g, "quiet")
    assert "loading model" not in reasoning and content and done
    # not streaming: a plain answer
    client.post(g.url() + "/models/unload", headers=auth(), json={"model": "quiet"})
    r = client.post(g.url() + "/v1/chat/completions", headers=auth(),
                    json=dict(CHAT, model="slow"))
    assert r.status_code == 200 and r.json()["choices"], r.text


def test_no_loading_state_when_off(models_dir, tmp_path, start_goinfer, client):
    g = start(start_goinfer, models_dir, config(tmp_path, swap_yaml(models_dir), models_dir))
    reasoning, content, done = chat_stream(client, g, "slow")
    assert "loading model" not in reasoning and content and done


def test_unload_sends_the_exit_line(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir)
    assert client.post(g.url() + "/models/load", headers=auth(),
                       json={"model": "tiny-a"}).status_code == 200
    n = len(g.lines)
    t0 = time.monotonic()
    assert client.post(g.url() + "/models/unload", headers=auth(),
                       json={"model": "tiny-a"}).status_code == 200
    g.wait_log(r"model tiny-a: stopping pid \d+ \(exit line", start=n)
    g.wait_log(r"model tiny-a: stopped", start=n)
    assert time.monotonic() - t0 < 1, "the exit line did not stop it at once"
    logs = client.get(g.url() + "/logs", headers=auth()).text
    assert "exit command received" in logs, logs[-3000:]
    assert "sending SIGTERM" not in g.log() and "sending SIGKILL" not in g.log()
