"""What `say` and `dialogue` do around the library: every path checked before a model loads, the
production settings, the render written atomically and reported, batches with the models loaded once."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from soundstorm.base.errors import InputError


def preflight(flags, inputs: dict, stems=None):
    """Check every output before any model loads (a bad one fails in a second), then load the bundle.

    `inputs`: label -> path of every file the command reads (the script, voice prompts: the plan has
    read them), none of which an output may be; `stems`: speaker -> the path of its stem."""
    from soundstorm.io.audio import check_output_path, check_outputs_apart

    outputs = {"the output": flags.output, "the timings file": flags.timings}
    outputs |= {f"{s}'s stem": path for s, path in (stems or {}).items()}
    check_outputs_apart(outputs, inputs)
    check_output_path(flags.output)
    if flags.timings is not None:
        from soundstorm.io.subtitles import check_subtitle_path

        check_subtitle_path(flags.timings)
    return flags.load()


def production_of(speakers, output: Path, stereo, pan, stems, loudness, true_peak):
    """The production settings, checked, and where each speaker's stem goes (before any model loads)."""
    from soundstorm.io.audio import check_output_path
    from soundstorm.io.production import Production

    pans = {}
    for item in pan or []:
        name, sep, value = item.partition("=")
        try:
            pans[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--pan '{item}': expected NAME=PAN with PAN a number in [-1, 1]") from None
        if not sep or not name.strip().isidentifier():
            raise InputError(f"--pan '{item}': expected NAME=PAN with NAME a speaker")
    production = Production(stereo, pans, stems is not None, loudness, true_peak).check(speakers)
    if stems is None:
        return production, {}
    if stems.exists() and not stems.is_dir():
        raise InputError(f"--stems '{stems}': not a folder")
    if not stems.exists() and not stems.parent.is_dir():
        raise InputError(f"--stems '{stems}': its parent folder does not exist")
    paths = {s: stems / f"{output.stem}.{s}{output.suffix}" for s in speakers}
    if stems.is_dir():
        for path in paths.values():
            check_output_path(path)
    return production, paths


def render_and_report(run, output: Path, timings: Path | None, quiet: bool, json_out: bool, production, stem_paths):
    """Run a synthesis with a progress bar, produce it (stems, stereo, loudness), write it atomically, report."""
    from soundstorm.doors.progress import stage_progress
    from soundstorm.io.audio import write_audio
    from soundstorm.io.production import produce

    with stage_progress(quiet) as progress:
        result = run(progress)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    produced = produce(result.audio, result.turns, result.sample_rate, production)
    if stem_paths:
        next(iter(stem_paths.values())).parent.mkdir(exist_ok=True)
    for speaker, path in stem_paths.items():
        write_audio(path, produced.stems[speaker], result.sample_rate)
    with contextlib.ExitStack() as staged:  # the subtitles replace theirs only once the audio is written
        if timings is not None:
            from soundstorm.io.subtitles import staged_subtitles

            staged.enter_context(staged_subtitles(timings, result.turns))
        write_audio(output, produced.mix, result.sample_rate)
    summary = {
        "output": str(output),
        "channels": 2 if produced.mix.ndim == 2 else 1,
        "loudness": produced.loudness,
        "stems": {s: str(p) for s, p in stem_paths.items()},
    } | result.report()
    if json_out:
        print(json.dumps(summary))
    elif not quiet:
        for c in result.checks or []:
            tries = f" (best of {c.tries} tries)" if c.tries > 1 else ""
            print(f"turn {c.turn + 1} [{c.speaker}]: {c.recall:.0%} of the words heard{tries}: {c.heard!r}")
        print(
            f"wrote {output}: {result.duration_s:.1f} s of audio in {result.timings['total']:.1f} s "
            f"(RTF {result.rtf:.3f}, {result.device} {result.precision}, {result.decoding} decoding; models loaded in "
            f"{result.timings['load']:.1f} s)"
        )


def refuse_in_batch(**given) -> None:
    named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
    if named:
        raise InputError(f"{', '.join(named)} apply to one render; not to a batch")


def batch_folder(output: Path, audio_format: str) -> Path:
    """A batch's -o: a folder (made if its parent exists), not an audio file; its format is known."""
    from soundstorm.io.audio import output_format

    output_format(f"item.{audio_format}")
    if output.suffix and not output.is_dir():
        raise InputError(f"-o '{output}': a batch renders into a folder; give one (e.g. -o out/)")
    if output.exists() and not output.is_dir():
        raise InputError(f"-o '{output}': not a folder")
    if not output.exists() and not output.parent.is_dir():
        raise InputError(f"-o '{output}': its parent folder does not exist")
    output.mkdir(exist_ok=True)
    return output


def run_batch(items, out_dir: Path, production, checkpoint, device, quiet: bool, json_out: bool) -> None:
    """Render every item that passed its checks with the models loaded once; report each failure in one
    line and go on; exit 5 when any item failed."""
    from soundstorm.base.errors import BatchError
    from soundstorm.chain.synthesize import Synthesizer
    from soundstorm.doors.batch import render_items
    from soundstorm.doors.progress import stage_progress

    for item in items:
        if item.error:
            print(f"error: {item.error}", file=sys.stderr)
    runnable = any(not i.error for i in items)
    synth = Synthesizer.from_checkpoint(checkpoint, device.value) if runnable else None
    with stage_progress(quiet or not runnable) as report:
        rows = render_items(items, synth, production, report, lambda m: print(f"error: {m}", file=sys.stderr))
    failed = [i for i in items if i.error]
    if json_out:
        print(json.dumps({"items": rows, "failed": len(failed)}))
    elif not quiet:
        print(f"rendered {len(items) - len(failed)} of {len(items)} into {out_dir}")
    if failed:
        raise BatchError(f"{len(failed)} of {len(items)} items failed (each said above)")
