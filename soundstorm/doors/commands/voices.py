"""`soundstorm voices`: the user's named voices and the bundle's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from soundstorm.doors.flags import CheckpointOpt, JsonOpt, bundle_of

app = typer.Typer(cls=TyperGroup, invoke_without_command=True, no_args_is_help=False)


@app.callback()
def voices(ctx: typer.Context, checkpoint: CheckpointOpt = None, json_out: JsonOpt = False) -> None:
    """The voices a name stands for, wherever a prompt file is taken: yours, then the bundle's."""
    if ctx.invoked_subcommand is None:
        voices_list(checkpoint, json_out)


@app.command("list")
def voices_list(checkpoint: CheckpointOpt = None, json_out: JsonOpt = False) -> None:
    """Your named voices and the bundle's (held-out speakers, never trained on)."""
    from soundstorm.bundles.checkpoints import component_path
    from soundstorm.chain.prompts import bundled_voices
    from soundstorm.io.named_voices import list_voices

    bundle = bundle_of(checkpoint)
    bundle.require("voices", command="`voices`")
    rows = [("user", v) for v in list_voices()]
    rows += [("bundled", v) for v in bundled_voices(component_path(bundle, "voices"))]
    if json_out:
        print(json.dumps([{"name": v.name, "kind": k, "path": str(v.path), "text": v.text} for k, v in rows]))
        return
    for kind, v in rows:
        print(f"{v.name}\t{kind}\t{v.path}")


@app.command("add")
def voices_add(
    name: Annotated[str, typer.Argument(help="The voice's name: letters, digits, '_' or '-'.")],
    audio: Annotated[Path, typer.Argument(help="Audio of the voice; its first 10 s of speech are kept.")],
    text: Annotated[str | None, typer.Option("--text", help="What is said in those seconds.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a voice of that name.")] = False,
) -> None:
    """Keep a voice under NAME, for --prompt NAME, --voice S1=NAME and scripts' front matter."""
    from soundstorm.io.named_voices import add_voice

    voice = add_voice(name, audio, text, replace)
    print(f"added voice '{voice.name}': {voice.path}")


@app.command("remove")
def voices_remove(name: Annotated[str, typer.Argument(help="The voice to remove.")]) -> None:
    """Forget a named voice of yours."""
    from soundstorm.io.named_voices import remove_voice

    remove_voice(name)
    print(f"removed voice '{name}'")
