"""Log injection (issue 9, item 11): a model name is the requester's text, and it reaches the
access line, stderr, GET /logs and /logs/stream. Control bytes in it (CR, LF, ESC...) must come
out escaped, so no request can end its own log line and forge the next one."""
import re

from conftest import API_KEY, auth

ADMIN = "admin-key-fedcba9876543210"
FORGED = "2026-01-01T00:00:00.000Z info req=1 GET /admin model=- backend=- status=200"
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab aside, as the harness splits on LF


def test_control_bytes_in_a_model_name_cannot_forge_a_log_line(models_dir, start_goinfer, client):
    g = start_goinfer(models_dir, extra=f"admin_api_key: {ADMIN}\n")
    url = g.url() + "/v1/chat/completions"
    n = len(g.lines)
    r = client.post(url + "?model=x%0d%0aFORGED%20line", headers=auth())
    assert r.status_code == 404, r.text
    r = client.post(url, headers=auth(), json={"model": "a\n" + FORGED})
    assert r.status_code == 404, r.text
    r = client.post(url, headers=auth(), files={"file": ("a.wav", b"RIFF")},
                    data={"model": "m\r\nFORGED multipart"})
    assert r.status_code == 404, r.text
    r = client.post(url, headers=auth(), json={"model": "\x1b[2J\x1b]0;title\x07esc"})
    assert r.status_code == 404, r.text
    assert client.get(g.url() + "/v1/models", headers=auth()).status_code == 200
    g.wait_log(r"GET /v1/models ", start=n)  # access lines come in order: all four are in
    logs = client.get(g.url() + "/logs", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert API_KEY not in logs
    for source, lines in (("stderr", g.lines[n:]), ("GET /logs", logs.split("\n"))):
        for line in lines:
            assert not line.startswith(("FORGED", FORGED, "req=1 GET /admin")), (source, line)
            assert not CONTROL.search(line), (source, repr(line))
    text = "\n".join(g.lines[n:])
    assert "model=x\\r\\nFORGED line " in text, text
    assert "model=a\\n" + FORGED + " " in text, text
    assert "model=m\\r\\nFORGED multipart " in text, text
    assert "model=\\x1b[2J\\x1b]0;title\\x07esc " in text, text
    assert "model=x\\r\\nFORGED line " in logs
