"""`soundstorm say` and `soundstorm dialogue`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from soundstorm.base.errors import InputError
from soundstorm.doors.flags import (
    LinesOpt,
    PromptOpt,
    PromptTextOpt,
    RenderFlags,
    parse_voices,
    render_flags,
    run_flags,
    with_flags,
)
from soundstorm.doors.rendering import batch_folder, preflight, refuse_in_batch


@with_flags(RenderFlags, render_flags, run_flags, output=Path("say.wav"))
def say(
    text: Annotated[str | None, typer.Argument(help="The text to speak (or --lines).")] = None,
    lines: LinesOpt = None,
    prompt: PromptOpt = None,
    prompt_text: PromptTextOpt = None,
    *,
    flags: RenderFlags,
) -> None:
    """Speak TEXT in one voice (or each line of --lines)."""
    from soundstorm.chain.plan import VoiceReader, plan_say

    options = flags.options()
    if lines is not None or text is None:
        if lines is None or text is not None:
            raise InputError("give the text to say, or --lines FILE (not both)")
        refuse_in_batch(timings=flags.timings, stems=flags.stems, prompt_text=prompt_text)
        production, _ = flags.production(["S1"], with_stems=False)
        from soundstorm.doors.batch import plan_lines

        out_dir = batch_folder(flags.output, flags.audio_format)
        reader = VoiceReader.for_bundle(flags.checkpoint)
        flags.run_batch(
            plan_lines(lines, out_dir, f".{flags.audio_format}", prompt, flags.seed, options, reader),
            out_dir,
            production,
        )
        return
    plan = plan_say(text, prompt, prompt_text, options, flags.seed, VoiceReader.for_bundle(flags.checkpoint))
    production, stem_paths = flags.production(["S1"])
    synth = preflight(flags, {"the voice prompt": plan.voices["S1"].source}, stem_paths)
    flags.render(lambda progress: synth.render(plan, progress), production, stem_paths)


@with_flags(RenderFlags, render_flags, run_flags, output=Path("dialogue.wav"))
def dialogue(
    scripts: Annotated[
        list[Path],
        typer.Argument(
            help="Dialogue script: [S1] ... [S2] ... turns, optional YAML front matter. Several, or a folder "
            "of .txt scripts: each renders into -o FOLDER."
        ),
    ],
    voice: Annotated[
        list[str] | None,
        typer.Option("--voice", help="NAME=path.wav: the voice of a speaker (overrides the script)."),
    ] = None,
    *,
    flags: RenderFlags,
) -> None:
    """Render a whole dialogue SCRIPT in one pass (or several SCRIPTS, the models loaded once)."""
    from soundstorm.chain.plan import VoiceReader, plan_dialogue
    from soundstorm.chain.script import read_script

    options = flags.options()
    if len(scripts) > 1 or scripts[0].is_dir():
        refuse_in_batch(timings=flags.timings, stems=flags.stems, voice=voice)
        from soundstorm.doors.batch import plan_dialogues

        production, _ = flags.production(None, with_stems=False)
        out_dir = batch_folder(flags.output, flags.audio_format)
        reader = VoiceReader.for_bundle(flags.checkpoint)
        flags.run_batch(
            plan_dialogues(scripts, out_dir, f".{flags.audio_format}", flags.seed, options, reader),
            out_dir,
            production,
        )
        return
    script = scripts[0]
    overrides = parse_voices(voice or [])
    plan = plan_dialogue(
        read_script(script), overrides, options, flags.seed, VoiceReader.for_bundle(flags.checkpoint)
    )
    inputs = {"the script": script} | {f"{s}'s voice": v.source for s, v in plan.voices.items()}
    production, stem_paths = flags.production(plan.speakers)
    synth = preflight(flags, inputs, stem_paths)
    flags.render(lambda progress: synth.render(plan, progress), production, stem_paths)
