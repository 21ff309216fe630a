"""The command line's flags, each declared once: the shared options, the enums they take, and the
dataclasses (`RunFlags`, `RenderFlags`) a command receives them as (`with_flags`)."""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from soundstorm.base.errors import InputError


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
    """The flags of every command that runs the models (`run_flags` declares them once)."""

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
    """The flags `say` and `dialogue` share besides those (`render_flags` declares them once)."""

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
        from soundstorm.doors.rendering import production_of

        return production_of(speakers, self.output, self.stereo, self.pan, stems, self.loudness, self.true_peak)

    def run_batch(self, items, out_dir: Path, production) -> None:
        from soundstorm.doors.rendering import run_batch

        run_batch(items, out_dir, production, self.checkpoint, self.device, self.silent, self.json_out)

    def render(self, run, production, stem_paths) -> None:
        from soundstorm.doors.rendering import render_and_report

        render_and_report(run, self.output, self.timings, self.silent, self.json_out, production, stem_paths)


def run_flags(
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    checkpoint: CheckpointOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The flags of every command that runs the models, listed last in its `--help`."""


def render_flags(
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


def with_flags(kind, *templates, **defaults):
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


def bundle_of(checkpoint: str | None):
    from soundstorm.bundles.checkpoints import load_registry

    return load_registry().get(checkpoint)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def parse_voices(pairs: list[str]) -> dict[str, Path]:
    voices = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip().isidentifier() or not path.strip():
            raise InputError(f"--voice '{pair}': expected NAME=path.wav with NAME an identifier")
        voices[name.strip()] = Path(path.strip())
    return voices


def parse_durations(value: str) -> list[float]:
    try:
        durations = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"--durations '{value}': expected numbers of seconds, e.g. 5,10,20,30") from exc
    if not durations or any(not 0 < d <= 120 for d in durations):
        raise InputError(f"--durations '{value}': each duration must be in (0, 120] seconds")
    return durations
