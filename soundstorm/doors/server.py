"""`soundstorm serve`: a local speech server and the dialogue studio.

    soundstorm serve [--host 127.0.0.1] [--port 8000] [--checkpoint NAME]

The models load once; renders run one at a time, in order, from a bounded queue.
- `POST /v1/audio/speech`: OpenAI's request body (`model`, `input`, `voice`, `response_format`, `speed`),
  the audio bytes back, so that OpenAI's SDKs and the apps built on them work unchanged. `voice` is a
  bundled or named voice, by name; OpenAI's own voice names (alloy, echo, ...) stand for the bundled ones.
- `POST /v1/dialogue`: a script in the `[S1]` format, the mix back; with `stems` or `timings`, JSON with
  the files (base64), the turns and, with `check`, each turn's word recall.
- `POST /v1/jobs` and `GET /v1/jobs/{id}`: the same dialogue render, polled for its progress (the studio).
- `GET /v1/voices`, `POST /v1/voices?name=N` (the audio file as the body), `DELETE /v1/voices/{name}`,
  `POST /v1/script/check`, `GET /healthz`, and the studio page at `GET /`.

Errors are JSON, `{"error": {"message", "type", "code"}}`, with the status of their kind. Requests are
checked with the CLI's own checks and caps (`synthesize.check_say`, `check_script`) before they queue; no
request can name a file on the server: voices are names, scripts' voices too.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import Request  # module level: the endpoints' annotations are resolved here
from pydantic import BaseModel, ConfigDict, Field

from soundstorm.base.errors import CheckpointError, InputError, SoundstormError

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
    """What one server accepts; the text caps are the CLI's (`synthesize.check_say`, `check_script`)."""

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
    """The library's typed errors as API errors: bad input 400, a missing model 500."""
    message = str(exc)
    if isinstance(exc, CheckpointError):
        return ApiError(500, message, "server_error", "model_unavailable")
    found = re.match(r"^(?:[^:\n]*):(\d+):(\d+): ", message)  # a script error: source:line:column: ...
    if found:
        return ApiError(400, message, code="script_error", line=int(found[1]), column=int(found[2]))
    return ApiError(400, message, code=type(exc).__name__.removesuffix("Error").lower() or None)


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
    """A script from a request: parsed and checked as the CLI would, its voices names and never paths."""
    from soundstorm.chain.script import parse_script
    from soundstorm.chain.synthesize import check_script
    from soundstorm.io.textfiles import SCRIPT_LIMIT

    if len(text) > SCRIPT_LIMIT:  # the CLI's cap on a script file, before any parsing
        raise ApiError(400, f"the script is {len(text)} characters long (at most {SCRIPT_LIMIT}); split it",
                       code="script_too_long")
    script = parse_script(text, source="script")
    check_script(script)
    return script


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

    # renders
    def speech(self, request) -> tuple[bytes, str, list[str]]:
        from soundstorm.chain.synthesize import SynthesisOptions

        result = self.synth.say(request.input, prompt=self.voice(request.voice), seed=request.seed,
                                options=SynthesisOptions())
        audio, notes = result.audio, list(result.warnings)
        if request.speed != 1.0:
            import pedalboard

            audio = pedalboard.time_stretch(audio.reshape(1, -1).astype(np.float32), result.sample_rate,
                                            stretch_factor=request.speed).reshape(-1)
        if request.instructions:
            notes.append("instructions are not followed: the voice prompt sets the style")
        return encode(audio, result.sample_rate, request.response_format), request.response_format, notes

    def dialogue(self, request, script, voices, production, progress=None) -> dict:
        """Render, produce (stereo, loudness, stems) and encode a dialogue; the JSON form of the answer."""
        from soundstorm.chain.synthesize import SynthesisOptions
        from soundstorm.io.production import produce

        result = self.synth.dialogue(script, voices, seed=request.seed,
                                     options=SynthesisOptions(check_turns=request.check), progress=progress)
        produced = produce(result.audio, result.turns, result.sample_rate, production)
        fmt = request.response_format
        answer = {
            "audio": encode(produced.mix, result.sample_rate, fmt),
            "format": fmt,
            "sample_rate": PCM_RATE if fmt == "pcm" else result.sample_rate,
            "duration_s": round(result.duration_s, 3),
            "turns": [{"speaker": t.speaker, "text": t.text, "start_s": t.start_s, "end_s": t.end_s}
                      for t in result.turns],
            "loudness": produced.loudness,
            "warnings": list(result.warnings),
        }
        if request.stems:
            answer["stems"] = {s: encode(x, result.sample_rate, fmt) for s, x in produced.stems.items()}
        if result.checks is not None:
            answer["checks"] = [c.to_dict() for c in result.checks]
        return answer

    def check_dialogue(self, request):
        """A dialogue request's script, voices and production, checked before it queues (in a worker
        thread: the checks cost time in the length of the script)."""
        from soundstorm.io.production import Production

        plain_text(request.model_dump(), "the request")
        script = parse_request_script(request.script)
        unknown = sorted(set(request.voices) - set(script.speakers))
        if unknown:
            raise ApiError(400, f"voices given for {', '.join(unknown)}, who has no turn (speakers: "
                           f"{', '.join(script.speakers)})", code="unknown_speaker")
        names = {s: v for s, v in script.voices.items() if s in script.speakers} | request.voices
        voices = {s: self.voice(str(n), f"the voice of {s}") for s, n in names.items()}
        production = Production(request.stereo, request.pans, request.stems, request.loudness, request.true_peak)
        return script, voices, production.check(script.speakers)

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


# -- the app ---------------------------------------------------------------------------------------


def create_app(synthesizer, limits: ServerLimits = ServerLimits(), hosts=LOOPBACK_HOSTS):
    """The FastAPI app serving one loaded `Synthesizer`, answering requests sent to `hosts` only."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException

    from soundstorm.chain.synthesize import check_say

    studio = Studio(synthesizer, limits)
    # no /docs: its page loads its script from a CDN (broken offline; online, a foreign script with the
    # run of an unauthenticated API). The schema stays at /openapi.json.
    app = FastAPI(title="soundstorm", docs_url=None, redoc_url=None)
    app.state.studio = studio

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.method not in SAFE_METHODS and cross_origin(request.headers):
            return JSONResponse(ApiError(403, "a request from another site's page is refused (its Origin is "
                                         "not this server)", code="cross_origin").body(), status_code=403)
        length = request.headers.get("content-length")
        if length is None and request.method == "POST" and request.url.path != "/v1/voices":
            # a body without a declared length would be read whole before any cap applied
            return JSONResponse(ApiError(411, "a request body needs a Content-Length", code="length_required")
                                .body(), status_code=411)
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return JSONResponse(ApiError(413, f"the request body is over {limits.max_body_bytes} bytes",
                                         code="body_too_large").body(), status_code=413)
        return await call_next(request)

    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))  # outermost: checked first

    @app.exception_handler(ApiError)
    async def _api_error(_, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(SoundstormError)
    async def _library_error(_, exc: SoundstormError):
        error = error_of(exc)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid")
        return JSONResponse(ApiError(422, message, code="invalid_body").body(), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_, exc: HTTPException):
        return JSONResponse(ApiError(exc.status_code, str(exc.detail), code="http_error").body(),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _bug(_, exc: Exception):
        return JSONResponse(internal_error(exc).body(), status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        from soundstorm.bundles.checkpoints import ASSETS

        return HTMLResponse((ASSETS / "studio.html").read_text(encoding="utf-8"))

    @app.get("/healthz")
    async def health():
        return {"status": "ok", "bundle": studio.synth.bundle.name, "queued": studio.queue.waiting,
                "rendering": studio.queue.running}

    @app.post("/v1/audio/speech")
    async def speech(body: SpeechRequest):
        if body.response_format == "aac":
            raise ApiError(400, "response_format aac is not written here: use mp3, opus, flac, wav or pcm",
                           code="unsupported_format")
        def checked():
            plain_text(body.model_dump(), "the request")
            check_say(body.input)
            studio.voice(body.voice)  # a bad voice is answered before the queue

        await asyncio.to_thread(checked)  # off the event loop: /healthz answers meanwhile
        audio, fmt, notes = await studio.queue.run(lambda: studio.speech(body))
        headers = {"X-Soundstorm-Warnings": " | ".join(notes)[:1000]} if notes else {}
        return Response(audio, media_type=MEDIA_TYPES[fmt], headers=headers)

    @app.post("/v1/dialogue")
    async def dialogue(body: DialogueRequest):
        checked = await asyncio.to_thread(studio.check_dialogue, body)
        answer = await studio.queue.run(lambda: studio.dialogue(body, *checked))
        if body.stems or body.timings or body.check:
            return json_answer(answer)
        return Response(answer["audio"], media_type=MEDIA_TYPES[answer["format"]])

    @app.post("/v1/jobs", status_code=202)
    async def submit(body: DialogueRequest):
        checked = await asyncio.to_thread(studio.check_dialogue, body)
        if studio.queue.waiting >= limits.queue:
            raise ApiError(429, "the render queue is full: try again shortly", "rate_limit_error", "queue_full")
        job = studio.new_job()

        def progress(stage: str, done: int, total: int) -> None:
            job.state, job.stage, job.done, job.total = "rendering", stage, done, total

        async def run():
            try:
                answer = await studio.queue.run(lambda: studio.dialogue(body, *checked, progress))
                job.result, job.state = json_answer(answer), "done"
            except ApiError as exc:
                job.error, job.state = exc.body()["error"], "failed"
            except SoundstormError as exc:
                job.error, job.state = error_of(exc).body()["error"], "failed"
            except Exception as exc:  # noqa: BLE001 - said in the job, as a 500 would be
                job.error, job.state = internal_error(exc).body()["error"], "failed"

        job.task = asyncio.create_task(run())  # kept, so that it is not collected before it ends
        return {"id": job.id, "state": job.state}

    @app.get("/v1/jobs/{job_id}")
    async def poll(job_id: str):
        job = studio.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job '{job_id}' (finished jobs are kept for a while only)", code="no_job")
        return job.to_dict()

    @app.post("/v1/script/check")
    async def check(body: ScriptRequest):
        # the very check /v1/dialogue runs: what it says ok to, a render takes
        script, _, _ = await asyncio.to_thread(studio.check_dialogue, DialogueRequest(script=body.script))
        return {"ok": True, "speakers": script.speakers, "turns": len(script.turns),
                "voices": dict(script.voices)}

    @app.get("/v1/voices")
    async def voices():
        return {"voices": studio.list_voices()}

    @app.post("/v1/voices", status_code=201)
    async def add(request: Request, name: str, text: str | None = None, replace: bool = False):
        from starlette.requests import ClientDisconnect

        from soundstorm.io.named_voices import add_voice, check_name

        plain_text([name, text], "the voice's name or text")
        check_name(name)
        kind = request.headers.get("content-type", "").lower()
        if not kind.startswith(UPLOAD_TYPES):
            raise ApiError(415, "the body must be the voice's audio file, sent as audio/* or "
                           "application/octet-stream", code="unsupported_media_type")
        if name in {v.name for v in studio.synth.voices} or name in OPENAI_VOICES:
            raise ApiError(400, f"'{name}' names a bundled voice or one of OpenAI's: choose another "
                           "(replace=true replaces only your own voices)", code="name_taken")
        data = bytearray()
        try:
            async for chunk in request.stream():
                data += chunk
                if len(data) > limits.max_upload_bytes:
                    raise ApiError(413, f"the voice file is over {limits.max_upload_bytes} bytes",
                                   code="upload_too_large")
        except ClientDisconnect:  # a malformed chunked body, or a client gone mid-upload
            raise ApiError(400, "the upload ended early or its chunked encoding is malformed",
                           code="bad_body") from None
        if not data:
            raise ApiError(400, "the body must be the voice's audio file (wav, flac, ogg, mp3)", code="empty_upload")
        voice = await asyncio.to_thread(add_voice, name, bytes(data), text, replace)
        return {"name": voice.name, "kind": "named", "text": voice.text}

    @app.delete("/v1/voices/{name}")
    async def remove(name: str):
        from soundstorm.io.named_voices import find_voice, remove_voice

        plain_text(name, "the voice's name")
        if find_voice(name) is None:
            raise ApiError(404, f"there is no named voice '{name}' (bundled voices cannot be removed)",
                           code="voice_not_found")
        remove_voice(name)
        return {"removed": name}

    return app


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address this machine cannot listen on (unknown host, port in use)."""
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(host: str, port: int, checkpoint: str | None, device: str, limits: ServerLimits = ServerLimits()):
    """Load the models once and serve until Ctrl-C."""
    import sys

    import uvicorn

    from soundstorm.chain.synthesize import Synthesizer

    if not 0 < port < 65536:
        raise InputError(f"--port {port}: a port is in 1-65535")
    check_address(host, port)  # before the models load: a taken port or unknown host is said at once
    synthesizer = Synthesizer.from_checkpoint(checkpoint, device=device)
    app = create_app(synthesizer, limits, allowed_hosts(host))
    shown = f"[{host}]" if ":" in host else host
    print(f"soundstorm serving bundle '{synthesizer.bundle.name}' on http://{shown}:{port} (studio at /, "
          "Ctrl-C stops)", file=sys.stderr)
    if host not in LOOPBACK:
        print(f"warning: listening on {host}: anyone who can reach this machine can render speech and store "
              "voices here (no authentication)", file=sys.stderr)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
