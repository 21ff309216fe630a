"""The `soundstorm` command line: a thin door onto the library.

Each command parses its flags, calls one library function and prints. Errors of
the `SoundstormError` family (and click's usage errors) cross one boundary,
`_Boundary.main`, that turns them into one line on stderr and a non-zero exit;
a traceback is shown only with `--debug` or SOUNDSTORM_DEBUG=1.

torch and transformers are imported inside the commands that need them, never
at module import, so `soundstorm --help` answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from soundstorm import __version__
from soundstorm.base.errors import InputError, SoundstormError

_debug = os.environ.get("SOUNDSTORM_DEBUG", "") not in ("", "0")


def _fail_line(message: str, code: int) -> int:
    # Plain print, not rich: rich would wrap a long message over several lines.
    print(f"error: {message}", file=sys.stderr)
    return code


class _Boundary(TyperGroup):
    """The one place where errors become a message and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global _debug
        argv = list(sys.argv[1:] if args is None else args)
        _debug = _debug or "--debug" in argv
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0
            if code == 130:  # typer turns Ctrl-C into a silent Exit(130) and returns its code
                code = _fail_line("interrupted", 130)
        except click.exceptions.NoArgsIsHelpError as exc:
            # click built the help when it raised: typer's rich help printed itself then (and left
            # the message empty); plain click's help is the message. Asking for it again printed it twice.
            if exc.format_message().strip():
                print(exc.format_message())
            code = 0
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            code = _fail_line(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            code = _fail_line(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            code = _fail_line("interrupted", 130)
        except SoundstormError as exc:
            if _debug:
                raise
            code = _fail_line(str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, said plainly
            if _debug:
                raise
            code = _fail_line(
                f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for a traceback", 70
            )
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=_Boundary,
    help="Text and two-speaker dialogue to speech, fast, with SoundStorm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
checkpoints_app = typer.Typer(
    cls=TyperGroup, help="List, verify and fetch model bundles.", no_args_is_help=True
)
app.add_typer(checkpoints_app, name="checkpoints")
voices_app = typer.Typer(cls=TyperGroup, invoke_without_command=True, no_args_is_help=False)
app.add_typer(voices_app, name="voices")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Decoding(str, Enum):
    auto = "auto"
    paper = "paper"
    posterior = "posterior"


class Precision(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


# Shared options, one definition each (as the `hf` CLI does).
OutputOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Output audio; format from the extension: .wav, .flac, .ogg.")
]
SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed", min=0, max=2**63 - 1, help="Random seed: same seed, input and device give the same audio."
    ),
]
DeviceOpt = Annotated[
    Device, typer.Option("--device", help="Where to run: auto picks cuda, then mps, then cpu.")
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        help="Bundle name from checkpoints.yaml or a bundle folder [env: SOUNDSTORM_CHECKPOINT].",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]


def _version(value: bool) -> None:
    if value:
        print(f"soundstorm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Text and two-speaker dialogue to speech, fast, with SoundStorm."""


def _bundle(checkpoint: str | None):
    from soundstorm.bundles.checkpoints import load_registry

    return load_registry().get(checkpoint)


LinesOpt = Annotated[
    Path | None,
    typer.Option("--lines", help="A text file: one output per non-empty line, into -o FOLDER."),
]
PromptOpt = Annotated[
    Path | None,
    typer.Option(
        "--prompt", help="Voice prompt audio (its first seconds are used); a bundled voice otherwise."
    ),
]
PromptTextOpt = Annotated[
    str | None, typer.Option("--prompt-text", help="Transcript of the prompt, so T2S continues it.")
]
PromptSecondsOpt = Annotated[
    float,
    typer.Option(
        "--prompt-seconds", help="Seconds of each voice prompt used, after trimming silence (1-10)."
    ),
]
FrontendOpt = Annotated[
    str,
    typer.Option(
        "--frontend", help="Text to semantic tokens: t2s (the bundle's T5), espeak (espeak-ng guide), auto."
    ),
]
DecodingOpt = Annotated[
    Decoding,
    typer.Option(
        "--decoding",
        help="How SoundStorm's output is rendered: posterior (one pass; its level-1 distribution, through a "
        "decoder tuned on it), paper (iterative sampling of the codes, --iterations), auto (posterior where "
        "the bundle's decoder renders it, unless --iterations or --retries ask for sampling).",
    ),
]
IterationsOpt = Annotated[
    str | None,
    typer.Option("--iterations", help="SoundStorm passes per level, e.g. 16,1,1,1 (the last repeats)."),
]
TemperatureOpt = Annotated[
    float, typer.Option("--temperature", help="SoundStorm sampling temperature (annealed to 0 per level).")
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="SoundStorm's matmuls: auto (bf16 where the device runs it natively: CUDA, CPUs with "
        "AVX512-BF16 or AMX; else fp32), bf16 or fp32.",
    ),
]
Fp32Opt = Annotated[bool, typer.Option("--fp32", help="The same as --precision fp32.")]
TimingsOpt = Annotated[
    Path | None, typer.Option("--timings", help="Also write the turns as subtitles (.srt or .vtt).")
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format", help="A batch's audio format: wav, flac, ogg or mp3 (a single render: -o's extension)."
    ),
]
StereoOpt = Annotated[
    bool,
    typer.Option("--stereo", help="A stereo mix, each speaker panned (S1 slightly left, S2 slightly right)."),
]
PanOpt = Annotated[
    list[str] | None,
    typer.Option("--pan", help="NAME=PAN: a speaker's place, -1 (left) to 1 (right); with --stereo."),
]
StemsOpt = Annotated[
    Path | None,
    typer.Option("--stems", help="Also write one file per speaker into this folder, aligned with the mix."),
]
LoudnessOpt = Annotated[
    float | None,
    typer.Option(
        "--loudness", help="Integrated loudness target, LUFS (EBU R128): -16 podcasts, -23 broadcast."
    ),
]
TruePeakOpt = Annotated[float, typer.Option("--true-peak", help="True-peak ceiling with --loudness, dBTP.")]
CheckOpt = Annotated[
    bool, typer.Option("--check", help="Hear each turn with Whisper tiny.en and report its word recall.")
]
RetriesOpt = Annotated[
    int,
    typer.Option("--retries", help="Re-render turns heard below --check-threshold with up to N other seeds."),
]
ThresholdOpt = Annotated[
    float, typer.Option("--check-threshold", help="Word recall below which a turn is re-rendered (0-1].")
]


@dataclass
class RunFlags:
    """The flags of every command that runs the models (`_run_flags` declares them once)."""

    seed: int
    device: Device
    checkpoint: str | None
    quiet: bool
    json_out: bool

    @property
    def silent(self) -> bool:
        """No progress bar and no prose: asked for, or stdout is the JSON summary."""
        return self.quiet or self.json_out

    def load(self):
        """The bundle's chain on the asked device."""
        from soundstorm.chain.synthesize import Synthesizer

        return Synthesizer.from_checkpoint(self.checkpoint, self.device.value)


@dataclass
class RenderFlags(RunFlags):
    """The flags `say` and `dialogue` share besides those (`_render_flags` declares them once)."""

    output: Path
    audio_format: str
    prompt_seconds: float
    frontend: str
    decoding: Decoding
    iterations: str | None
    temperature: float
    precision: Precision
    fp32: bool
    timings: Path | None
    stereo: bool
    pan: list[str] | None
    stems: Path | None
    loudness: float | None
    true_peak: float
    check: bool
    retries: int
    check_threshold: float

    def options(self):
        """The synthesis options these flags ask for, checked."""
        from soundstorm.chain.synthesize import SynthesisOptions

        steps = None
        if self.iterations is not None:
            try:
                steps = tuple(int(n) for n in self.iterations.split(",") if n.strip())
            except ValueError:
                raise InputError(
                    f"--iterations '{self.iterations}': expected whole numbers, e.g. 16,1,1,1"
                ) from None
        return SynthesisOptions(
            prompt_seconds=self.prompt_seconds,
            frontend=self.frontend,
            decoding=Decoding(self.decoding).value,
            iterations=steps,
            temperature=self.temperature,
            precision="fp32" if self.fp32 else Precision(self.precision).value,
            check_turns=self.check,
            retries=self.retries,
            check_threshold=self.check_threshold,
        ).check()

    def production(self, speakers, with_stems: bool = True):
        """(Production, stem paths) for these speakers (None: any), checked before any model loads."""
        stems = self.stems if with_stems else None
        return _production(speakers, self.output, self.stereo, self.pan, stems, self.loudness, self.true_peak)

    def run_batch(self, items, out_dir: Path, production) -> None:
        _run_batch(items, out_dir, production, self.checkpoint, self.device, self.silent, self.json_out)

    def render(self, run, production, stem_paths) -> None:
        _render(run, self.output, self.timings, self.silent, self.json_out, production, stem_paths)


def _run_flags(
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    checkpoint: CheckpointOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The flags of every command that runs the models, listed last in its `--help`."""


def _render_flags(
    output: OutputOpt = Path("out.wav"),
    audio_format: FormatOpt = "wav",
    prompt_seconds: PromptSecondsOpt = 4.0,
    frontend: FrontendOpt = "auto",
    decoding: DecodingOpt = Decoding.auto,
    iterations: IterationsOpt = None,
    temperature: TemperatureOpt = 1.0,
    precision: PrecisionOpt = Precision.auto,
    fp32: Fp32Opt = False,
    timings: TimingsOpt = None,
    stereo: StereoOpt = False,
    pan: PanOpt = None,
    stems: StemsOpt = None,
    loudness: LoudnessOpt = None,
    true_peak: TruePeakOpt = -1.0,
    check: CheckOpt = False,
    retries: RetriesOpt = 0,
    check_threshold: ThresholdOpt = 0.8,
) -> None:
    """The flags of `say` and `dialogue`, listed after each command's own."""


def _with_flags(kind, *templates, **defaults):
    """Give a command the flags the `templates` declare: typer sees them in its signature, the command
    gets them as one `flags` of dataclass `kind` (and its own parameters as they are). `defaults`
    replace a template's defaults for this command."""

    def wrap(command):
        shared = [
            p.replace(default=defaults[p.name]) if p.name in defaults else p
            for template in templates
            for p in inspect.signature(template, eval_str=True).parameters.values()
        ]
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "flags"]

        @functools.wraps(command)
        def run(**given):
            flags = kind(**{p.name: given.pop(p.name) for p in shared})
            return command(**given, flags=flags)

        del run.__wrapped__  # typer reads the signature below, not the command's
        run.__signature__ = inspect.Signature(own + shared)
        run.__annotations__ = {p.name: p.annotation for p in own + shared}
        return run

    return wrap


def _preflight(flags: RenderFlags, inputs: dict, stems=None):
    """Check every path before any model loads (a bad input fails in a second), then load the bundle.

    `inputs`: label -> path of every file the command reads (the script, voice prompts); `stems`:
    speaker -> the path of its stem."""
    from soundstorm.chain.prompts import load_prompt_audio
    from soundstorm.chain.semantic import SAMPLE_RATE
    from soundstorm.io.audio import check_output_path, check_outputs_apart

    outputs = {"the output": flags.output, "the timings file": flags.timings}
    outputs |= {f"{s}'s stem": path for s, path in (stems or {}).items()}
    check_outputs_apart(outputs, inputs)
    check_output_path(flags.output)
    if flags.timings is not None:
        from soundstorm.io.subtitles import check_subtitle_path

        check_subtitle_path(flags.timings)
    for label, path in inputs.items():
        if path is not None and label != "the script":
            load_prompt_audio(_prompt_file(path, flags.checkpoint), SAMPLE_RATE)
    return flags.load()


def _production(speakers, output: Path, stereo, pan, stems, loudness, true_peak):
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


def _render(run, output: Path, timings: Path | None, quiet: bool, json_out: bool, production, stem_paths):
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
        "duration_s": round(result.duration_s, 3),
        "sample_rate": result.sample_rate,
        "seed": result.seed,
        "device": result.device,
        "precision": result.precision,
        "decoding": result.decoding,
        "frontend": result.frontend,
        "timings_s": result.timings,
        "rtf": round(result.rtf, 4),
        "peak_memory_mb": result.peak_memory_mb,
        "forward_passes": result.forward_passes,
        "turns": [
            {"speaker": t.speaker, "text": t.text, "start_s": t.start_s, "end_s": t.end_s}
            for t in result.turns
        ],
    }
    if result.checks is not None:
        summary["checks"] = [c.to_dict() for c in result.checks]
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


@app.command()
@_with_flags(RenderFlags, _render_flags, _run_flags, output=Path("say.wav"))
def say(
    text: Annotated[str | None, typer.Argument(help="The text to speak (or --lines).")] = None,
    lines: LinesOpt = None,
    prompt: PromptOpt = None,
    prompt_text: PromptTextOpt = None,
    *,
    flags: RenderFlags,
) -> None:
    """Speak TEXT in one voice (or each line of --lines)."""
    from soundstorm.chain.synthesize import check_say

    options = flags.options()
    if lines is not None or text is None:
        if lines is None or text is not None:
            raise InputError("give the text to say, or --lines FILE (not both)")
        _refuse_in_batch(timings=flags.timings, stems=flags.stems, prompt_text=prompt_text)
        production, _ = flags.production(["S1"], with_stems=False)
        from soundstorm.doors.batch import plan_lines

        out_dir = _batch_folder(flags.output, flags.audio_format)
        flags.run_batch(
            plan_lines(lines, out_dir, f".{flags.audio_format}", prompt, flags.seed, options),
            out_dir,
            production,
        )
        return
    check_say(text, prompt_text)
    production, stem_paths = flags.production(["S1"])
    synth = _preflight(flags, {"the voice prompt": prompt}, stem_paths)
    flags.render(
        lambda progress: synth.say(text, prompt, prompt_text, flags.seed, options, progress),
        production,
        stem_paths,
    )


@app.command()
@_with_flags(RenderFlags, _render_flags, _run_flags, output=Path("dialogue.wav"))
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
    from soundstorm.chain.script import read_script
    from soundstorm.chain.synthesize import check_script

    if len(scripts) > 1 or scripts[0].is_dir():
        _refuse_in_batch(timings=flags.timings, stems=flags.stems, voice=voice)
        from soundstorm.doors.batch import plan_dialogues

        options = flags.options()
        production, _ = flags.production(None, with_stems=False)
        out_dir = _batch_folder(flags.output, flags.audio_format)
        flags.run_batch(
            plan_dialogues(scripts, out_dir, f".{flags.audio_format}", flags.seed, options),
            out_dir,
            production,
        )
        return
    script = scripts[0]
    parsed = read_script(script)
    check_script(parsed)
    overrides = _parse_voices(voice or [])
    options = flags.options()
    unknown = sorted(set(overrides) - set(parsed.speakers))
    if unknown:
        raise InputError(
            f"--voice given for {', '.join(unknown)}, who has no turn (speakers: {', '.join(parsed.speakers)})"
        )
    inputs = {"the script": script} | {
        f"{s}'s voice": overrides.get(s) or parsed.voice_path(s) for s in parsed.speakers
    }
    production, stem_paths = flags.production(parsed.speakers)
    synth = _preflight(flags, inputs, stem_paths)
    flags.render(
        lambda progress: synth.dialogue(parsed, overrides, flags.seed, options, progress),
        production,
        stem_paths,
    )


def _refuse_in_batch(**given) -> None:
    named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
    if named:
        raise InputError(f"{', '.join(named)} apply to one render; not to a batch")


def _batch_folder(output: Path, audio_format: str) -> Path:
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


def _run_batch(items, out_dir: Path, production, checkpoint, device, quiet: bool, json_out: bool) -> None:
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


def _prompt_file(source, checkpoint) -> Path:
    """A prompt argument's file: itself, or the file of a named voice (the user's, then the bundle's)."""
    from soundstorm.base.errors import AudioError
    from soundstorm.io.named_voices import is_bare_name, resolve_prompt

    resolved = resolve_prompt(source)
    if isinstance(resolved, Path) and not resolved.exists() and is_bare_name(source):
        from soundstorm.bundles.checkpoints import component_path
        from soundstorm.chain.prompts import bundled_voices

        bundle = _bundle(checkpoint)
        found = bundled_voices(component_path(bundle, "voices")) if "voices" in bundle.components else []
        resolved = resolve_prompt(source, found)
        if isinstance(resolved, Path):
            raise AudioError(
                f"'{source}' is neither an audio file nor a voice name (`soundstorm voices` lists them)"
            )
    return getattr(resolved, "path", resolved)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _parse_voices(pairs: list[str]) -> dict[str, Path]:
    voices = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip().isidentifier() or not path.strip():
            raise InputError(f"--voice '{pair}': expected NAME=path.wav with NAME an identifier")
        voices[name.strip()] = Path(path.strip())
    return voices


def _parse_durations(value: str) -> list[float]:
    try:
        durations = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"--durations '{value}': expected numbers of seconds, e.g. 5,10,20,30") from exc
    if not durations or any(not 0 < d <= 120 for d in durations):
        raise InputError(f"--durations '{value}': each duration must be in (0, 120] seconds")
    return durations


def _against_ar_baseline(synth, without_weights: str, quiet: bool, run):
    """`run(ar_model, weights, progress)` with the bundle's AR baseline (a random-init one of the same size,
    with a warning that says `without_weights`, where the bundle has none) under one progress bar."""
    from soundstorm.doors.progress import stage_progress
    from soundstorm.measures.bench import ar_baseline_of

    ar_model, weights = ar_baseline_of(synth, without_weights, _warn)
    with stage_progress(quiet) as progress:
        return run(ar_model, weights, progress)


def _print_report(report, json_out: bool, table) -> None:
    """A report as one JSON line, or as its rich table."""
    if json_out:
        print(json.dumps(report.to_dict()))
        return
    from rich.console import Console

    Console().print(table(report))


@app.command()
@_with_flags(RunFlags, _run_flags)
def bench(
    durations: Annotated[
        str, typer.Option("--durations", help="Comma-separated durations in seconds.")
    ] = "5,10,20,30",
    runs: Annotated[
        int, typer.Option("--runs", min=1, max=100, help="Timed runs per point (median reported).")
    ] = 3,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write time vs duration as a PNG.")] = None,
    precision: PrecisionOpt = Precision.auto,
    fp32: Fp32Opt = False,
    *,
    flags: RunFlags,
) -> None:
    """Time SoundStorm against the autoregressive baseline on the same input."""
    from soundstorm.measures.bench import bench_table, plot_bench, run_bench

    seconds = _parse_durations(durations)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot '{plot}': the plot is a .png file")
    synth = flags.load()

    def timed(ar_model, weights, progress):
        weights += "" if weights == "trained" else ", timing only"
        chosen = "fp32" if fp32 else Precision(precision).value
        return run_bench(synth, ar_model, weights, seconds, runs, chosen, flags.seed, progress)

    report = _against_ar_baseline(synth, "timing a random-init one of the same size", flags.silent, timed)
    if plot is not None:
        plot_bench(report, plot)
    _print_report(report, flags.json_out, bench_table)


@app.command()
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


@app.command("eval")
@_with_flags(RunFlags, _run_flags)
def evaluate(
    test_set: Annotated[
        Path | None,
        typer.Option(
            "--test-set", help="Folder of NAME.wav + NAME.txt pairs; the bundle's held-out set otherwise."
        ),
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write one row per utterance and system.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate the first N utterances.")
    ] = None,
    asr_model: Annotated[
        str | None, typer.Option("--asr-model", help="faster-whisper model name or folder (default tiny.en).")
    ] = None,
    *,
    flags: RunFlags,
) -> None:
    """The paper's quality table: intelligibility, voice similarity, consistency."""
    from soundstorm.bundles.checkpoints import component_path
    from soundstorm.measures.quality import evaluate as run_eval
    from soundstorm.measures.quality import quality_table, read_test_set, write_csv

    if test_set is not None and not test_set.is_dir():
        raise InputError(f"--test-set '{test_set}' is not a folder")
    if csv is not None and (csv.is_dir() or not csv.parent.is_dir() or not os.access(csv.parent, os.W_OK)):
        raise InputError(f"--csv '{csv}': not a file in an existing, writable folder")
    synth = flags.load()
    if test_set is None:
        synth.bundle.require("testset", command="`eval` without --test-set")
        test_set = component_path(synth.bundle, "testset")
    items = read_test_set(test_set, limit)
    report = _against_ar_baseline(
        synth,
        "its row is of a random-init one",
        flags.silent,
        lambda ar_model, weights, progress: run_eval(
            synth, ar_model, weights, items, flags.seed, asr_model, progress
        ),
    )
    if csv is not None:
        write_csv(report, csv)
    _print_report(report, flags.json_out, quality_table)


@voices_app.callback()
def voices(ctx: typer.Context, checkpoint: CheckpointOpt = None, json_out: JsonOpt = False) -> None:
    """The voices a name stands for, wherever a prompt file is taken: yours, then the bundle's."""
    if ctx.invoked_subcommand is None:
        voices_list(checkpoint, json_out)


@voices_app.command("list")
def voices_list(checkpoint: CheckpointOpt = None, json_out: JsonOpt = False) -> None:
    """Your named voices and the bundle's (held-out speakers, never trained on)."""
    from soundstorm.bundles.checkpoints import component_path
    from soundstorm.chain.prompts import bundled_voices
    from soundstorm.io.named_voices import list_voices

    bundle = _bundle(checkpoint)
    bundle.require("voices", command="`voices`")
    rows = [("user", v) for v in list_voices()]
    rows += [("bundled", v) for v in bundled_voices(component_path(bundle, "voices"))]
    if json_out:
        print(json.dumps([{"name": v.name, "kind": k, "path": str(v.path), "text": v.text} for k, v in rows]))
        return
    for kind, v in rows:
        print(f"{v.name}\t{kind}\t{v.path}")


@voices_app.command("add")
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


@voices_app.command("remove")
def voices_remove(name: Annotated[str, typer.Argument(help="The voice to remove.")]) -> None:
    """Forget a named voice of yours."""
    from soundstorm.io.named_voices import remove_voice

    remove_voice(name)
    print(f"removed voice '{name}'")


@checkpoints_app.command("list")
def checkpoints_list(json_out: JsonOpt = False) -> None:
    """Every bundle of the registry, with its components and facts."""
    from soundstorm.bundles.checkpoints import COMPONENT_KINDS, load_registry

    registry = load_registry()
    rows = []
    for name in registry.names():
        bundle = registry.bundles[name]
        facts = bundle.facts
        rows.append(
            {
                "name": name,
                "default": name == registry.default,
                "components": {
                    k: bundle.components[k].source for k in COMPONENT_KINDS if k in bundle.components
                },
                "sample_rate": facts.get("sample_rate"),
                "frame_rate": facts.get("codec_frame_rate"),
                "levels": facts.get("levels"),
                "description": bundle.description,
            }
        )
    if json_out:
        print(json.dumps({"registry": str(registry.path), "bundles": rows}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bundles in {registry.path}")
    for column in ("name", "components", "sample rate", "frame rate", "levels"):
        table.add_column(column)
    for row in rows:
        comps = ", ".join(f"{k} ({v})" for k, v in row["components"].items()) or "[dim]none yet[/dim]"
        label = row["name"] + (" [bold](default)[/bold]" if row["default"] else "")
        table.add_row(label, comps, f"{row['sample_rate']} Hz", f"{row['frame_rate']} Hz", str(row["levels"]))
    Console().print(table)


@checkpoints_app.command("verify")
def checkpoints_verify(
    name: Annotated[str | None, typer.Argument(help="Bundle to verify; all bundles otherwise.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Hash every file of a bundle (or all); exit 1 on any mismatch or missing file."""
    from soundstorm.bundles.checkpoints import load_registry, verify_bundle

    registry = load_registry()
    bundles = [registry.get(name)] if name else [registry.bundles[n] for n in registry.names()]
    checks = [check for bundle in bundles for check in verify_bundle(bundle)]
    if json_out:
        print(
            json.dumps(
                [
                    {"bundle": c.bundle, "component": c.component, "path": str(c.path), "status": c.status}
                    for c in checks
                ]
            )
        )
    else:
        for c in checks:
            print(
                f"{c.status:12s} {c.bundle}/{c.component}: {c.path}",
                file=sys.stderr if c.failed else sys.stdout,
            )
        if not checks:
            print("no files to verify: the chosen bundles have no components yet")
    failed = [c for c in checks if c.failed]
    if failed:
        raise SoundstormError(
            f"{len(failed)} of {len(checks)} files failed verification (first: {failed[0].path})"
        )


@checkpoints_app.command("fetch")
def checkpoints_fetch(
    name: Annotated[str, typer.Argument(help="Bundle whose hub components to download.")],
) -> None:
    """Download a bundle's hub-hosted components into the cache (needs a network)."""
    from soundstorm.bundles.checkpoints import component_path, load_registry

    bundle = load_registry().get(name)
    for kind in bundle.components:
        print(f"{kind}: {component_path(bundle, kind, command='fetch')}")


@checkpoints_app.command("import-encodec")
def checkpoints_import_encodec(
    path: Annotated[
        Path, typer.Argument(help="The original EnCodec checkpoint, e.g. encodec_24khz-d7cc33bc.th.")
    ],
    bundle: Annotated[str, typer.Option("--bundle", help="Bundle whose codec it becomes.")] = "encodec-24khz",
    out: Annotated[Path | None, typer.Option("--out", help="Write the converted model here instead.")] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Expected sha256 (else the name's prefix).")
    ] = None,
) -> None:
    """Convert the `encodec` package's checkpoint (.th) into the Hugging Face form the bundle loads."""
    from soundstorm.bundles.checkpoints import load_registry
    from soundstorm.bundles.encodec_import import import_encodec

    target = out
    if target is None:
        chosen = load_registry().get(bundle)
        chosen.require("codec", command="import-encodec")
        target = chosen.components["codec"].folder
    folder = import_encodec(path, target, sha256=sha256)
    print(f"imported {path} -> {folder}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
