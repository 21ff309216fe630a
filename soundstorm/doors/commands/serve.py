"""`soundstorm serve`: the local server (doors/server.py) from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from soundstorm.doors.flags import CheckpointOpt, Device, DeviceOpt


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 127.0.0.1 keeps the server to this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    checkpoint: CheckpointOpt = None,
    device: DeviceOpt = Device.auto,
    queue: Annotated[int, typer.Option("--queue", min=1, max=256, help="Renders that may wait; more get 429.")] = 8,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1.0, help="Seconds a request may wait and render.")
    ] = 300.0,
) -> None:
    """Serve OpenAI's speech endpoint, a dialogue endpoint and the studio page (Ctrl-C stops)."""
    from soundstorm.doors.server import ServerLimits
    from soundstorm.doors.server import serve as run_server

    run_server(host, port, checkpoint, Device(device).value, ServerLimits(queue=queue, timeout_s=timeout))
