"""server.py: the OpenAI endpoint, the dialogue endpoint, voices, errors, the queue, a load test, Ctrl-C."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from soundstorm.doors.server import ApiError, RenderQueue, ServerLimits, create_app

AUDIO = {"content-type": "audio/wav"}
SCRIPT = "[S1] Hello there, how was the trip?\n[S2] Long, but worth it.\n[S1] Tell me more."


@pytest.fixture(scope="module")
def synth(tiny_bundle):
    from soundstorm.chain.synthesize import Synthesizer

    return Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu")


@pytest.fixture(scope="module")
def client(synth):
    from fastapi.testclient import TestClient

    app = create_app(synth, ServerLimits(max_body_bytes=2_000_000, max_upload_bytes=1_000_000))
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def speech(client, **body):
    return client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hello there, friend."} | body)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus"])
def test_the_openai_endpoint_returns_decodable_audio(client, fmt):
    response = speech(client, voice="alloy", response_format=fmt)
    assert response.status_code == 200 and response.headers["content-type"].startswith("audio/")
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate in (16000, 48000) and len(audio) / rate > 0.3 and np.abs(audio).max() > 0


def test_pcm_is_raw_24khz_16_bit_and_speed_shortens(client):
    wav = speech(client, response_format="wav", seed=3)
    seconds = len(sf.read(io.BytesIO(wav.content))[0]) / 16000
    pcm = speech(client, response_format="pcm", seed=3)
    assert pcm.headers["content-type"] == "audio/pcm"
    assert len(pcm.content) / 2 / 24000 == pytest.approx(seconds, abs=0.01)
    fast = speech(client, response_format="wav", seed=3, speed=2.0)
    assert len(sf.read(io.BytesIO(fast.content))[0]) / 16000 == pytest.approx(seconds / 2, rel=0.1)


def test_same_seed_same_audio_and_voices_by_name(client):
    first, again = speech(client, voice="v1", response_format="wav"), speech(client, voice="v1", response_format="wav")
    assert first.content == again.content
    assert speech(client, voice="v0", response_format="wav").content != first.content
    assert speech(client, voice="echo", response_format="wav").status_code == 200  # OpenAI's names map


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"input": "   "}, 400, "empty"),
        ({"input": "word " * 5000}, 400, "at most 20000"),
        ({"voice": "../voices/v0.wav"}, 400, "not a voice name"),
        ({"voice": "/etc/passwd"}, 400, "not a voice name"),
        ({"voice": "nobody"}, 404, "no voice named"),
        ({"response_format": "aac"}, 400, "aac"),
        ({"speed": 9}, 422, "speed"),
    ],
)
def test_bad_requests_get_a_json_error_and_the_server_keeps_serving(client, body, status, words):
    response = speech(client, **body)
    assert response.status_code == status and words in error_of(response)["message"]
    assert speech(client, response_format="wav").status_code == 200


def test_unknown_fields_only_and_a_body_over_the_cap(client):
    response = client.post("/v1/audio/speech", json={"colour": "blue"})
    assert response.status_code == 422 and "input" in error_of(response)["message"]
    huge = client.post("/v1/audio/speech", content=b"{" + b" " * 2_100_000 + b"}",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and error_of(huge)["code"] == "body_too_large"
    assert client.get("/v1/nothing").status_code == 404
    chunked = client.post("/v1/audio/speech", content=iter([b'{"input": "hi"}']),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 411 and error_of(chunked)["code"] == "length_required"
    assert speech(client, response_format="wav").status_code == 200


def test_a_dialogue_renders_with_turns_stems_and_checks(client):
    response = client.post("/v1/dialogue", json={"script": SCRIPT, "voices": {"S2": "v1"}, "stems": True,
                                                 "stereo": True, "loudness": -20})
    assert response.status_code == 200
    body = response.json()
    mix, rate = sf.read(io.BytesIO(base64.b64decode(body["audio"])), dtype="float32")
    assert mix.ndim == 2 and [t["speaker"] for t in body["turns"]] == ["S1", "S2", "S1"]
    assert body["turns"][-1]["end_s"] == pytest.approx(len(mix) / rate, abs=0.05)
    stems = {s: sf.read(io.BytesIO(base64.b64decode(b)), dtype="float32")[0] for s, b in body["stems"].items()}
    assert set(stems) == {"S1", "S2"} and np.allclose(stems["S1"] + stems["S2"], mix, atol=2e-4)
    assert body["loudness"]["after"]["lufs"] == pytest.approx(-20, abs=0.5)
    plain = client.post("/v1/dialogue", json={"script": SCRIPT, "response_format": "flac"})
    assert plain.headers["content-type"] == "audio/flac" and len(sf.read(io.BytesIO(plain.content))[0]) > 0


def test_script_errors_say_where_and_scripts_cannot_name_files(client):
    bad = client.post("/v1/script/check", json={"script": "[S1] Hello\n[S2 oops"})
    error = error_of(bad)
    assert bad.status_code == 400 and (error["line"], error["column"]) == (2, 1)
    good = client.post("/v1/script/check", json={"script": SCRIPT}).json()
    assert good["speakers"] == ["S1", "S2"] and good["turns"] == 3
    pathy = "---\nvoices:\n  S1: /etc/hostname\n---\n[S1] Hello there."
    response = client.post("/v1/dialogue", json={"script": pathy})
    assert response.status_code == 400 and "not a voice name" in error_of(response)["message"]
    stranger = client.post("/v1/dialogue", json={"script": SCRIPT, "voices": {"S9": "v0"}})
    assert stranger.status_code == 400 and "S9" in error_of(stranger)["message"]


def test_voices_are_uploaded_in_memory_used_and_removed(client, tmp_path):
    buffer = io.BytesIO()
    sf.write(buffer, voice_like(3.0, 16000, 160.0, 5), 16000, format="WAV")
    added = client.post("/v1/voices", params={"name": "guest", "text": "a test voice"}, content=buffer.getvalue(),
                        headers=AUDIO)
    assert added.status_code == 201 and added.json()["name"] == "guest"
    listed = {v["name"]: v["kind"] for v in client.get("/v1/voices").json()["voices"]}
    assert listed["guest"] == "named" and listed["v0"] == "bundled"
    assert speech(client, voice="guest", response_format="wav").status_code == 200
    assert client.post("/v1/voices", params={"name": "../x"}, content=buffer.getvalue(), headers=AUDIO).status_code == 400
    assert client.post("/v1/voices", params={"name": "junk"}, content=b"not audio", headers=AUDIO).status_code == 400
    assert client.post("/v1/voices", params={"name": "big"}, content=b"0" * 1_500_000, headers=AUDIO).status_code == 413
    assert client.delete("/v1/voices/guest").status_code == 200
    assert client.delete("/v1/voices/guest").status_code == 404
    assert speech(client, voice="guest").status_code == 404


def test_a_job_reports_progress_and_its_result(client):
    job = client.post("/v1/jobs", json={"script": SCRIPT, "timings": True})
    assert job.status_code == 202
    for _ in range(600):
        state = client.get(f"/v1/jobs/{job.json()['id']}").json()
        if state["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert state["state"] == "done" and state["total"] >= 1 and len(state["result"]["turns"]) == 3
    assert client.get("/v1/jobs/job999").status_code == 404


def test_the_queue_is_bounded_in_order_and_times_out():
    async def scenario():
        queue = RenderQueue(ServerLimits(queue=1, timeout_s=0.5))
        order = []

        def work(n, seconds):
            def run():
                time.sleep(seconds)
                order.append(n)
                return n

            return run

        first = asyncio.create_task(queue.run(work(1, 0.2)))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(queue.run(work(2, 0.01)))
        await asyncio.sleep(0.02)
        with pytest.raises(ApiError) as full:
            await queue.run(work(3, 0.01))
        assert full.value.status == 429
        assert await first == 1 and await second == 2 and order == [1, 2]
        with pytest.raises(ApiError) as late:
            await queue.run(work(4, 0.8))
        assert late.value.status == 500 and late.value.code == "timeout"
        assert await queue.run(work(5, 0.01)) == 5  # served once the late render ended
        assert queue.waiting == 0 and not queue.running

    asyncio.run(scenario())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_load_eight_clients_five_requests_each_over_loopback(synth):
    """A bounded load test against 127.0.0.1: every request answered, nothing left in the queue."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(synth), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    statuses: list[int] = []

    def client_loop(n: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            for k in range(5):
                body = {"input": f"Client {n} asks for request {k}.", "response_format": "wav", "voice": "v0"}
                statuses.append(http.post("/v1/audio/speech", json=body).status_code)

    try:
        clients = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=300)
        health = httpx.get(f"{base}/healthz").json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert statuses == [200] * 40
    assert health["queued"] == 0 and health["rendering"] is False


def test_serve_refuses_a_bad_port_in_one_line(cli, tiny_bundle):
    code, _, err = cli("serve", "--port", "70000", "--checkpoint", tiny_bundle)
    assert code != 0 and err.strip().startswith("error:") and "65535" in err and "Traceback" not in err
    with socket.socket() as taken:  # a port in use, and a host that does not resolve: said before loading
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli("serve", "--port", str(port), "--checkpoint", tiny_bundle)
    assert code != 0 and err.strip().startswith("error:") and "in use" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("serve", "--host", "no-such-host.invalid", "--checkpoint", tiny_bundle)
    assert code != 0 and err.strip().startswith("error: cannot listen on no-such-host.invalid")


@pytest.mark.slow
def test_serve_starts_answers_and_stops_cleanly_on_ctrl_c(tiny_bundle):
    port = free_port()
    env = os.environ | {"SOUNDSTORM_CHECKPOINT": str(tiny_bundle)}
    process = subprocess.Popen(
        [sys.executable, "-m", "soundstorm.doors.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "soundstorm studio" in page.text
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}" in err and "Traceback" not in err


def test_dialogue_pans_are_checked_before_the_queue_and_applied(client):
    bad = client.post("/v1/dialogue", json={"script": SCRIPT, "stereo": True, "pans": {"S7": 0.5}})
    assert bad.status_code == 400 and "S7" in error_of(bad)["message"]
    left = client.post("/v1/dialogue", json={"script": "[S1] Hello there.", "stereo": True, "pans": {"S1": -1.0}})
    audio, _ = sf.read(io.BytesIO(left.content), dtype="float32")
    assert np.abs(audio[:, 0]).max() > 0 and np.abs(audio[:, 1]).max() < 1e-3
