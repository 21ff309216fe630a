"""server.py under a hostile client (issue 48): one test per class of attack, against a real server on
127.0.0.1 where the transport matters (the event loop, raw HTTP), through the test client elsewhere."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import served, voice_like

from soundstorm.doors.server import ServerLimits, allowed_hosts, create_app

AUDIO = {"content-type": "audio/wav"}


@pytest.fixture(scope="module")
def synth(tiny_bundle):
    from soundstorm.chain.synthesize import Synthesizer

    return Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu")


@pytest.fixture(scope="module")
def client(synth):
    from fastapi.testclient import TestClient

    with TestClient(create_app(synth), base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def server(synth):
    """A real server on a free loopback port: (base URL, port)."""
    app = create_app(synth, ServerLimits(), allowed_hosts("127.0.0.1"))
    with served(app, log_level="warning") as port:
        yield f"http://127.0.0.1:{port}", port


def wav_bytes(seconds: float = 3.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, voice_like(seconds, 16000, 160.0, 5), 16000, format="WAV")
    return buffer.getvalue()


# 1. denial of service: costly checks run off the event loop, after a cap on the raw text


@pytest.mark.slow
def test_healthz_answers_while_a_large_request_is_checked(server):
    """The largest script the server parses (2 MiB of short turns: seconds of checking, and 9 s of a frozen
    server with the checks on the event loop): /healthz must answer meanwhile (a 24 KB body froze it 13 s)."""
    import httpx

    base, _ = server
    script = "[S1] a\n" * 299_000
    done = {}

    def check():
        with httpx.Client(timeout=300) as http:
            started = time.perf_counter()
            done["status"] = http.post(f"{base}/v1/script/check", json={"script": script}).status_code
            done["seconds"] = time.perf_counter() - started

    worker = threading.Thread(target=check)
    worker.start()
    waits = []
    with httpx.Client(timeout=60) as http:
        while worker.is_alive():
            started = time.perf_counter()
            assert http.get(f"{base}/healthz").status_code == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.05)
    worker.join()
    assert done["status"] == 400 and done["seconds"] > 0.5  # over the turns' text cap, once parsed
    assert waits and max(waits) < 1.0, (max(waits), done)


def test_hostile_text_is_refused_or_checked_quickly(client):
    for text in (" " * 1_000_000 + "a", "," * 1_000_000, "\U0001f600" * 250_000, "7" * 1_000_000):
        started = time.perf_counter()
        response = client.post("/v1/audio/speech", json={"input": text})
        assert response.status_code == 400 and time.perf_counter() - started < 5.0


# 2. cross-site requests


def test_a_foreign_origin_cannot_change_state(client):
    foreign = {"origin": "http://evil.example"}
    assert (
        client.post("/v1/voices?name=evil", content=wav_bytes(), headers=AUDIO | foreign).status_code == 403
    )
    assert client.delete("/v1/voices/v0", headers=foreign).status_code == 403
    assert (
        client.post("/v1/audio/speech", json={"input": "Hi."}, headers={"origin": "null"}).status_code == 403
    )
    sneaky = {"origin": "http://127.0.0.1:8000.evil.example"}
    assert client.post("/v1/script/check", json={"script": "[S1] Hi."}, headers=sneaky).status_code == 403
    assert (
        client.post(
            "/v1/script/check", json={"script": "[S1] Hi."}, headers={"sec-fetch-site": "cross-site"}
        ).status_code
        == 403
    )
    same = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}
    assert client.post("/v1/script/check", json={"script": "[S1] Hi."}, headers=same).status_code == 200
    assert client.get("/v1/voices", headers=foreign).status_code == 200  # reading is not refused


def test_uploads_need_an_audio_type(client):
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", None):
        headers = {"content-type": kind} if kind else {}
        response = client.post("/v1/voices?name=formpost", content=wav_bytes(), headers=headers)
        assert response.status_code == 415, kind
    ok = client.post(
        "/v1/voices?name=typed", content=wav_bytes(), headers={"content-type": "application/octet-stream"}
    )
    assert ok.status_code == 201
    assert client.delete("/v1/voices/typed").status_code == 200


# 3. DNS rebinding


def test_only_the_hosts_it_listens_as_are_answered(client):
    assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/healthz", headers={"host": "evil.example:8000"}).status_code == 400
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host


def test_the_allowed_hosts_follow_the_listening_address():
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")
    assert "[fd00::5]" in allowed_hosts("fd00::5")
    wildcard = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in wildcard and "evil.example" not in wildcard


# 4. decompression bombs


def test_an_upload_that_unpacks_huge_is_refused(client):
    bomb = io.BytesIO()
    sf.write(bomb, np.zeros((192_000 * 60, 8), dtype=np.int16), 192_000, format="FLAC")
    response = client.post(
        "/v1/voices?name=bomb", content=bomb.getvalue(), headers={"content-type": "audio/flac"}
    )
    assert response.status_code == 400 and "at most" in response.json()["error"]["message"]


# 5. 400 for bad text, 500 without details


def test_lone_surrogates_are_a_400(client):
    raw = {"content-type": "application/json"}
    speech = b'{"input": "Hello.", "voice": "\\ud800"}'
    assert client.post("/v1/audio/speech", content=speech, headers=raw).status_code == 400
    script = b'{"script": "[\\ud800] Hello there."}'
    for path in ("/v1/dialogue", "/v1/script/check", "/v1/jobs"):
        response = client.post(path, content=script, headers=raw)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_text", path
    text = b'{"input": "Hello \\udfff there."}'
    assert client.post("/v1/audio/speech", content=text, headers=raw).status_code == 400


def test_a_500_says_nothing_but_an_id_the_log_has(client, synth, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail /home/user/private")

    monkeypatch.setattr(synth, "render", broken)
    with caplog.at_level(logging.ERROR, logger="soundstorm.server"):
        response = client.post("/v1/audio/speech", json={"input": "Hello there."})
    error = response.json()["error"]
    assert response.status_code == 500 and "secret" not in response.text and error["id"] in error["message"]
    assert any(error["id"] in r.getMessage() and r.exc_info for r in caplog.records)


# 6. one check, one answer


def test_the_check_refuses_what_the_render_refuses(client):
    script = "---\nvoices:\n  S1: /etc/passwd\n---\n[S1] Hello there.\n"
    checked = client.post("/v1/script/check", json={"script": script})
    rendered = client.post("/v1/dialogue", json={"script": script})
    assert checked.status_code == rendered.status_code == 400
    assert checked.json()["error"]["message"] == rendered.json()["error"]["message"]


def test_an_upload_error_shows_no_object_address(client):
    response = client.post("/v1/voices?name=junk", content=b"RIFF" + b"\0" * 200, headers=AUDIO)
    assert response.status_code == 400 and " at 0x" not in response.text


@pytest.mark.parametrize("name", ["v0", "alloy", "echo"])
def test_a_voice_cannot_shadow_a_bundled_or_openai_name(client, name):
    response = client.post(f"/v1/voices?name={name}&replace=true", content=wav_bytes(), headers=AUDIO)
    assert response.status_code == 400 and response.json()["error"]["code"] == "name_taken"


def test_job_ids_are_not_guessable(client):
    body = {"script": "[S1] Hello there."}
    ids = [client.post("/v1/jobs", json=body).json()["id"] for _ in range(2)]
    assert ids[0] != ids[1] and all(len(i) >= 16 for i in ids)
    assert not any(i[-1].isdigit() and i.rstrip("0123456789") == "job" for i in ids)


def test_no_page_loads_a_foreign_script(client):
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/").text
    assert "cdn" not in page.lower() and '<script src="http' not in page


def test_a_malformed_chunked_body_is_answered_without_a_traceback(server, caplog):
    base, port = server
    request = (
        b"POST /v1/voices?name=chunky HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    )
    with caplog.at_level(logging.WARNING):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request)
            answer = conn.recv(4096)
        time.sleep(0.2)
    assert answer.startswith(b"HTTP/1.1 4")
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    import httpx

    assert httpx.get(f"{base}/v1/voices").json()["voices"]  # and the server goes on
    assert "chunky" not in json.dumps(httpx.get(f"{base}/v1/voices").json())
