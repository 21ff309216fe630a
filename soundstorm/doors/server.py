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
checked once, by the CLI's own plan step (`chain/plan.py`: caps, speakers, voices), before they queue; no
request can name a file on the server: voices are names, scripts' voices too.
"""

from __future__ import annotations

import asyncio

from fastapi import Request  # module level: the endpoints' annotations are resolved here

from soundstorm.base.errors import InputError, SoundstormError
from soundstorm.doors.service import (  # noqa: F401 (ApiError, RenderQueue, ServerLimits: the tests' and callers' names)
    LOOPBACK,
    LOOPBACK_HOSTS,
    MEDIA_TYPES,
    OPENAI_VOICES,
    SAFE_METHODS,
    UPLOAD_TYPES,
    ApiError,
    DialogueRequest,
    RenderQueue,
    ScriptRequest,
    ServerLimits,
    SpeechRequest,
    Studio,
    allowed_hosts,
    cross_origin,
    error_of,
    internal_error,
    json_answer,
    plain_text,
)


def create_app(synthesizer, limits: ServerLimits = ServerLimits(), hosts=LOOPBACK_HOSTS):
    """The FastAPI app serving one loaded `Synthesizer`, answering requests sent to `hosts` only."""
    from fastapi import FastAPI
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    studio = Studio(synthesizer, limits)
    # no /docs: its page loads its script from a CDN (broken offline; online, a foreign script with the
    # run of an unauthenticated API). The schema stays at /openapi.json.
    app = FastAPI(title="soundstorm", docs_url=None, redoc_url=None)
    app.state.studio = studio
    _guard(app, limits)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))  # outermost: checked first
    _error_answers(app)
    _page_routes(app, studio)
    _render_routes(app, studio, limits)
    _voice_routes(app, studio, limits)
    return app


def _guard(app, limits: ServerLimits) -> None:
    """Refuse, before any route: another site's page writing here, and bodies without or over their cap."""
    from fastapi.responses import JSONResponse

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


def _error_answers(app) -> None:
    """Every error as `{"error": {"message", "type", "code"}}` with its status; a bug as a 500 with an id."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

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


def _page_routes(app, studio: Studio) -> None:
    """The studio page and the health check."""
    from fastapi.responses import HTMLResponse

    @app.get("/", response_class=HTMLResponse)
    async def page():
        from soundstorm.bundles.checkpoints import ASSETS

        return HTMLResponse((ASSETS / "studio.html").read_text(encoding="utf-8"))

    @app.get("/healthz")
    async def health():
        return {"status": "ok", "bundle": studio.synth.bundle.name, "queued": studio.queue.waiting,
                "rendering": studio.queue.running}


def _render_routes(app, studio: Studio, limits: ServerLimits) -> None:
    """OpenAI's speech endpoint, dialogues (at once or as polled jobs) and the script check."""
    from fastapi.responses import Response

    @app.post("/v1/audio/speech")
    async def speech(body: SpeechRequest):
        if body.response_format == "aac":
            raise ApiError(400, "response_format aac is not written here: use mp3, opus, flac, wav or pcm",
                           code="unsupported_format")
        plan = await asyncio.to_thread(studio.plan_speech, body)  # off the event loop: /healthz answers
        audio, fmt, notes = await studio.queue.run(lambda: studio.speech(body, plan))
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
        plan, _ = await asyncio.to_thread(studio.check_dialogue, DialogueRequest(script=body.script))
        return {"ok": True, "speakers": plan.speakers, "turns": len(plan.turns),
                "voices": {s: v.name for s, v in plan.voices.items()}}


def _voice_routes(app, studio: Studio, limits: ServerLimits) -> None:
    """The bundle's and the user's named voices: list, upload, remove."""
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
