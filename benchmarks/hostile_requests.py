"""Hostile text against the normaliser and the server: `python benchmarks/hostile_requests.py [--mb 1]`.

1. `text.normalize` of `--mb` megabytes (UTF-8) of spaces, commas, emoji, digits and other runs that made
   regular expressions backtrack: the seconds each took.
2. `soundstorm serve` (the shipped bundle, on a free loopback port): the largest body it accepts (12 MiB)
   of each kind sent to `/v1/script/check` and `/v1/audio/speech`, while a second client polls
   `/healthz` every 50 ms: how long the request took, its status, and the slowest `/healthz` answer.
Prints JSON. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time

KINDS = {
    "spaces": " ",
    "commas": ",",
    "emoji": "\U0001f600",
    "digits": "7",
    "comma runs in numbers": "1,,",
    "times": "1:00 a.m. ",
    "short turns": "[S1] a\n",
}


def text_of(kind: str, size: int) -> str:
    unit = KINDS[kind]
    return unit * (size // len(unit.encode()))


def normalisation(mb: float) -> dict:
    from soundstorm.chain.text import normalize

    out = {}
    for kind in KINDS:
        text = text_of(kind, int(mb * 2**20))
        started = time.perf_counter()
        normalize(text)
        out[kind] = round(time.perf_counter() - started, 3)
    return out


def server_under_load() -> dict:
    import httpx
    import uvicorn

    from soundstorm.chain.synthesize import Synthesizer
    from soundstorm.doors.server import ServerLimits, create_app
    from soundstorm.io.textfiles import SCRIPT_LIMIT

    limits = ServerLimits()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Synthesizer.from_checkpoint(None), limits),
            host="127.0.0.1",
            port=port,
            log_level="error",
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base, out = f"http://127.0.0.1:{port}", {}
    room = limits.max_body_bytes - 64  # the JSON around the text
    try:
        for kind in KINDS:
            # the largest body, and the largest script the server parses (the CLI's 2 MiB script cap)
            for path, field, size in (
                ("/v1/script/check", "script", room),
                ("/v1/script/check", "script", SCRIPT_LIMIT - 64),
                ("/v1/audio/speech", "input", room),
            ):
                text = text_of(kind, size)
                if field == "script" and not text.startswith("["):
                    text = "[S1] " + text[5:]
                body = json.dumps({field: text}).encode()
                while len(body) > size:  # JSON escapes some characters (an emoji in 12 bytes, a newline in 2)
                    text = text[: int(len(text) * size / len(body)) - 8]
                    body = json.dumps({field: text}).encode()
                result = {}

                def send(body=body, path=path, result=result):
                    with httpx.Client(timeout=600) as http:
                        started = time.perf_counter()
                        response = http.post(
                            base + path, content=body, headers={"content-type": "application/json"}
                        )
                        result["status"], result["seconds"] = (
                            response.status_code,
                            time.perf_counter() - started,
                        )

                worker = threading.Thread(target=send)
                worker.start()
                waits = []
                with httpx.Client(timeout=600) as http:
                    while worker.is_alive():
                        started = time.perf_counter()
                        http.get(base + "/healthz")
                        waits.append(time.perf_counter() - started)
                        time.sleep(0.05)
                worker.join()
                out[f"{path} {kind} {len(body) / 2**20:.1f} MiB"] = {
                    "body_bytes": len(body),
                    "status": result["status"],
                    "seconds": round(result["seconds"], 2),
                    "healthz_max_s": round(max(waits), 3) if waits else None,
                    "healthz_polls": len(waits),
                }
    finally:
        server.should_exit = True
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--no-server", action="store_true")
    args = parser.parse_args()
    report = {"normalize_s": normalisation(args.mb)}
    if not args.no_server:
        report["server"] = server_under_load()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
