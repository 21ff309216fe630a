"""The server's service layer: what `doors/server.py`'s endpoints call. One loaded `Synthesizer` behind a
bounded render queue (`RenderQueue`), the request bodies and their checks, jobs polled for progress,
voices by name, errors as OpenAI-style JSON (`ApiError`), and the audio formats answered."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from soundstorm.base.errors import CheckpointError, SoundstormError

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
PCM_RATE = 24000  # OpenAI's `pcm`: raw 16-bit little-endian samples at 24 kHz, mono
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # as they appear in a Host header
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
UPLOAD_TYPES = ("audio/", "application/octet-stream")  # a voice upload's Content-Type starts with one of these
log = logging.getLogger("soundstorm.server")


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts; the text caps are the CLI's (`chain/plan.py`)."""

    max_body_bytes: int = 12 * 1024 * 1024  # a request body (a voice upload is the largest)
    max_upload_bytes: int = 10 * 1024 * 1024  # an uploaded voice file
    queue: int = 8  # renders waiting beyond the one running; more get 429
    timeout_s: float = 300.0  # a request's wait in the queue plus its render
    jobs_kept: int = 32  # finished studio jobs kept for polling


class ApiError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 **extra):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.extra = status, message, kind, code, extra

    def body(self) -> dict:
        # a message may quote what the client sent, lone surrogates included: escaped, so it encodes
        message = self.message.encode("utf-8", "backslashreplace").decode("utf-8")
        return {"error": {"message": message, "type": self.kind, "code": self.code} | self.extra}


def plain_text(value, where: str = "the request") -> None:
    """Refuse text that is not valid Unicode (a lone surrogate, as JSON's "\\ud800" gives) anywhere in a
    request's strings: it cannot be a file name, a log line or a JSON answer (issue 48)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{where}: text that is not valid Unicode (a lone surrogate such as \\ud800)",
                           code="invalid_text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            plain_text(key, where)
            plain_text(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            plain_text(item, where)


def allowed_hosts(host: str) -> list[str]:
    """The Host headers a server listening on `host` answers (others get 400: DNS rebinding): the loopback
    names, `host` itself and, for a wildcard address (0.0.0.0, ::), this machine's name and addresses."""
    import socket

    hosts = list(LOOPBACK_HOSTS)
    names = [host]
    if host in ("0.0.0.0", "::", ""):
        names = [socket.gethostname(), socket.getfqdn()]
        try:
            names += socket.gethostbyname_ex(socket.gethostname())[2]
        except OSError:
            pass
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        if name and shown.lower() not in hosts:
            hosts.append(shown.lower())
    return hosts


def cross_origin(headers) -> bool:
    """Whether a state-changing request comes from another site's page: its Origin is not this server's
    (the Host it was sent to), or the browser says so (Sec-Fetch-Site). Clients that are not browsers
    send neither and pass."""
    from urllib.parse import urlsplit

    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    return parts.scheme not in ("http", "https") or parts.netloc.lower() != headers.get("host", "").lower()


def error_of(exc: SoundstormError) -> ApiError:
    """The library's typed errors as API errors: bad input 400 (a script's with its line and column as
    fields), a missing model 500."""
    from soundstorm.base.errors import ScriptError

    message = str(exc)
    if isinstance(exc, CheckpointError):
        return ApiError(500, message, "server_error", "model_unavailable")
    code = getattr(exc, "code", None) or type(exc).__name__.removesuffix("Error").lower() or None
    if isinstance(exc, ScriptError) and exc.line is not None:
        return ApiError(400, message, code="script_error", line=exc.line, column=exc.column)
    return ApiError(400, message, code=code)


class RenderQueue:
    """One render at a time, in arrival order, at most `limits.queue` waiting, each within its timeout."""

    def __init__(self, limits: ServerLimits):
        self.limits = limits
        self.waiting = 0
        self.running = False
        self._lock = threading.Lock()  # held by the render thread; released when the render ends
        self._turns = asyncio.Lock()  # the order in which waiting requests get the render thread

    async def run(self, work):
        """Run `work()` in a thread when its turn comes; 429 if the queue is full, 500 past the timeout."""
        if self.waiting >= self.limits.queue:
            raise ApiError(429, f"the render queue is full ({self.limits.queue} waiting): try again shortly",
                           "rate_limit_error", "queue_full")
        deadline = time.monotonic() + self.limits.timeout_s
        self.waiting += 1
        async def slot():
            async with self._turns:
                while not self._lock.acquire(blocking=False):  # the render before, or a timed-out one, runs
                    await asyncio.sleep(0.02)

        try:
            await asyncio.wait_for(slot(), self.limits.timeout_s)
        except TimeoutError:
            raise ApiError(500, f"no render slot within {self.limits.timeout_s:g} s", "server_error",
                           "timeout") from None
        finally:
            self.waiting -= 1
        self.running = True
        future = asyncio.get_running_loop().run_in_executor(None, work)

        def _done(_):
            self.running = False
            self._lock.release()

        future.add_done_callback(_done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise ApiError(500, f"the render took longer than {self.limits.timeout_s:g} s", "server_error",
                           "timeout") from None


@dataclass
class Job:
    id: str
    state: str = "queued"  # queued, rendering, done, failed
    stage: str = ""
    done: int = 0
    total: int = 0
    result: dict | None = None
    error: dict | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# -- the request bodies ------------------------------------------------------------------------------


class SpeechRequest(BaseModel):
    """OpenAI's `POST /v1/audio/speech` body; `seed` is ours."""

    model_config = ConfigDict(extra="forbid")
    model: str = "soundstorm"
    input: str
    voice: str | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = None  # OpenAI's style prompt: accepted, not followed (said in a header)
    stream_format: Literal["audio"] | None = None
    seed: int = Field(0, ge=0, le=2**31 - 1)


class DialogueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: str
    voices: dict[str, str] = Field(default_factory=dict)
    response_format: Literal["mp3", "opus", "flac", "wav", "pcm"] = "wav"
    stereo: bool = False
    pans: dict[str, float] = Field(default_factory=dict)  # speaker -> [-1, 1], with stereo
    loudness: float | None = None
    true_peak: float = -1.0
    check: bool = False
    stems: bool = False
    timings: bool = False
    seed: int = Field(0, ge=0, le=2**31 - 1)


class ScriptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: str


# -- rendering (in the render thread) ------------------------------------------------------------------


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """The audio in an OpenAI `response_format`: a file's bytes, or raw 24 kHz 16-bit PCM."""
    from soundstorm.io.audio import encode_audio, peak_safe, resample

    if fmt == "pcm":
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples
        pcm = peak_safe(resample(mono.astype(np.float32), sample_rate, PCM_RATE))
        return (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    return encode_audio(samples, sample_rate, f".{fmt}")


def parse_request_script(text: str):
    """A script from a request, parsed as the CLI would (`plan_dialogue` checks it); its voices are names."""
    from soundstorm.chain.script import parse_script
    from soundstorm.io.textfiles import SCRIPT_LIMIT

    if len(text) > SCRIPT_LIMIT:  # the CLI's cap on a script file, before any parsing
        raise ApiError(400, f"the script is {len(text)} characters long (at most {SCRIPT_LIMIT}); split it",
                       code="script_too_long")
    return parse_script(text, source="script")


class Studio:
    """The loaded synthesizer and what the endpoints do with it."""

    def __init__(self, synthesizer, limits: ServerLimits):
        self.synth, self.limits = synthesizer, limits
        self.queue = RenderQueue(limits)
        self.jobs: OrderedDict[str, Job] = OrderedDict()

    # voices
    def voice(self, name: str | None, what: str = "voice"):
        """A voice by name: the user's, the bundle's, or OpenAI's names for the bundled ones; never a path."""
        from soundstorm.io.named_voices import is_voice_name, voice_by_name

        if name is None:
            return self.synth.voice_for(0)
        if not is_voice_name(name) and name not in {v.name for v in self.synth.voices}:
            raise ApiError(400, f"{what} '{name}' is not a voice name: give a name from GET /v1/voices "
                           "(letters, digits, '_' or '-'); files on the server cannot be named", code="bad_voice")
        found = voice_by_name(name, self.synth.voices)
        if found is None and name in OPENAI_VOICES and self.synth.voices:
            found = self.synth.voice_for(OPENAI_VOICES.index(name))
        if found is None:
            raise ApiError(404, f"there is no voice named '{name}' (GET /v1/voices lists them)",
                           code="voice_not_found")
        return found

    def list_voices(self) -> list[dict]:
        from soundstorm.io.named_voices import list_voices

        named = [{"name": v.name, "kind": "named", "text": v.text} for v in list_voices()]
        taken = {v["name"] for v in named}
        bundled = [{"name": v.name, "kind": "bundled", "text": v.text} for v in self.synth.voices
                   if v.name not in taken]
        return named + bundled

    # requests, checked once (`chain/plan.py`) before they queue, in a worker thread
    def reader(self):
        """A voice reader for one request: names only (`voice`), each voice decoded once."""
        from soundstorm.chain.plan import VoiceReader

        return VoiceReader(self.synth.codec.sample_rate, self.synth.voices, resolve=self.voice)

    def plan_speech(self, request):
        from soundstorm.chain.plan import plan_say
        from soundstorm.chain.synthesize import SynthesisOptions

        plain_text(request.model_dump(), "the request")
        return plan_say(request.input, request.voice, None, SynthesisOptions(), request.seed, self.reader())

    def check_dialogue(self, request):
        """A dialogue request's plan (script, voices, options) and production, checked before it queues."""
        from soundstorm.chain.plan import plan_dialogue
        from soundstorm.chain.synthesize import SynthesisOptions
        from soundstorm.io.production import Production

        plain_text(request.model_dump(), "the request")
        script = parse_request_script(request.script)
        names = {s: v for s, v in script.voices.items() if s in script.speakers} | request.voices
        options = SynthesisOptions(check_turns=request.check)
        plan = plan_dialogue(script, names, options, request.seed, self.reader())
        production = Production(request.stereo, request.pans, request.stems, request.loudness, request.true_peak)
        return plan, production.check(script.speakers)

    # renders (in the render thread)
    def speech(self, request, plan) -> tuple[bytes, str, list[str]]:
        result = self.synth.render(plan)
        audio, notes = result.audio, list(result.warnings)
        if request.speed != 1.0:
            import pedalboard

            audio = pedalboard.time_stretch(audio.reshape(1, -1).astype(np.float32), result.sample_rate,
                                            stretch_factor=request.speed).reshape(-1)
        if request.instructions:
            notes.append("instructions are not followed: the voice prompt sets the style")
        return encode(audio, result.sample_rate, request.response_format), request.response_format, notes

    def dialogue(self, request, plan, production, progress=None) -> dict:
        """Render, produce (stereo, loudness, stems) and encode a dialogue; the JSON form of the answer."""
        from soundstorm.io.production import produce

        result = self.synth.render(plan, progress)
        produced = produce(result.audio, result.turns, result.sample_rate, production)
        fmt = request.response_format
        report = result.report()
        answer = {
            "audio": encode(produced.mix, result.sample_rate, fmt),
            "format": fmt,
            "sample_rate": PCM_RATE if fmt == "pcm" else result.sample_rate,
            "loudness": produced.loudness,
        } | {k: report[k] for k in ("duration_s", "turns", "warnings", "checks") if k in report}
        if request.stems:
            answer["stems"] = {s: encode(x, result.sample_rate, fmt) for s, x in produced.stems.items()}
        return answer

    # studio jobs
    def new_job(self) -> Job:
        job = Job(id=f"job-{secrets.token_urlsafe(12)}")  # not guessable: a job's result is its owner's
        self.jobs[job.id] = job
        while len(self.jobs) > self.limits.jobs_kept:
            self.jobs.popitem(last=False)
        return job


def internal_error(exc: BaseException) -> ApiError:
    """A 500 that says only that something failed here, with an id the log has beside the traceback."""
    incident = secrets.token_hex(6)
    log.error("internal error %s", incident, exc_info=exc)
    return ApiError(500, f"internal error (id {incident}; the server's log has the details)", "server_error",
                    "internal", id=incident)


def json_answer(answer: dict) -> dict:
    """The dialogue's JSON form: files as base64."""
    out = dict(answer)
    out["audio"] = base64.b64encode(answer["audio"]).decode()
    if "stems" in answer:
        out["stems"] = {s: base64.b64encode(b).decode() for s, b in answer["stems"].items()}
    return out
