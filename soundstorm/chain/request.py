"""What a render is asked and what it gives: the options (`SynthesisOptions`), the checks a request passes
before any model loads (`check_say`, `check_script`, the caps on text and pauses), the segments a script
is spoken in, and the result (`Synthesis`, its turns' times)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from soundstorm.base.errors import InputError, ScriptError
from soundstorm.base.runtime import PRECISIONS
from soundstorm.base.validate import check_temperature
from soundstorm.chain.frontends import FRONTENDS
from soundstorm.chain.prompts import MAX_PROMPT_TEXT_CHARS, check_prompt_seconds
from soundstorm.chain.script import Pause, Script, Turn, script_error
from soundstorm.chain.text import MAX_SPEAKERS, READS, normalize, quoted

# Caps on what one render may ask for, counted on what is spoken (issue 24): text once numbers and symbols
# are spelled out ('%' is 'percent'), pauses, and a prompt's transcript (at most 10 s of it is used).
MAX_SPOKEN_CHARS = 20000  # about 20 minutes of speech: beyond this, split the script
# ...and, before any of that work, on the text as written (issue 48): spelling out only lengthens text that
# speaks, so five times the spoken cap leaves room for spaces, markup and emoji, and bounds what a hostile
# text can cost the normaliser.
MAX_TEXT_CHARS = 5 * MAX_SPOKEN_CHARS
MAX_PAUSE_TOTAL_S = 600.0

# How SoundStorm's output reaches the codec: auto (posterior where the bundle's decoder renders it, unless
# --iterations or --retries ask for sampled codes); paper (iterative, confidence-based decoding of the codes);
# posterior (one pass: level 1's distribution, rendered by a decoder tuned on it).
DECODINGS = ("auto", "paper", "posterior")


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-call settings; None means the bundle's default."""

    prompt_seconds: float = 4.0  # the first seconds of speech of each voice prompt (1-10)
    frontend: str = "auto"  # auto: the bundle's choice; t2s; espeak
    decoding: str = "auto"  # one of DECODINGS
    iterations: tuple[int, ...] | None = None  # SoundStorm passes per level (paper: 16, 1, 1, ...)
    temperature: float = 1.0  # SoundStorm sampling temperature, annealed to 0 within a level
    t2s_temperature: float = 0.8
    t2s_top_k: int = 50
    precision: str = "auto"  # SoundStorm's matmuls: auto (bf16 where the device runs it natively), bf16, fp32
    overlap_s: float = 2.0  # windowed decoding: frames of the previous window given as prompt
    turn_gap_s: float = 0.3  # silence between two turns (the corpus's dialogues have 0.15-0.6 s)
    check_turns: bool = False  # hear every turn with Whisper and report its word recall (`turncheck.py`)
    retries: int = 0  # re-render turns heard below `check_threshold` with up to this many other seeds
    check_threshold: float = 0.8

    def check(self) -> SynthesisOptions:
        check_prompt_seconds(self.prompt_seconds)
        if self.frontend not in FRONTENDS:
            raise InputError(f"front end '{self.frontend}': use one of {', '.join(FRONTENDS)}")
        if self.decoding not in DECODINGS:
            raise InputError(f"decoding '{self.decoding}': use one of {', '.join(DECODINGS)}")
        if self.decoding == "posterior" and (self.iterations is not None or self.retries):
            raise InputError(
                "posterior decoding is one pass with no draws: --iterations and --retries need paper"
            )
        if self.precision not in PRECISIONS:
            raise InputError(f"precision '{self.precision}': use one of {', '.join(PRECISIONS)}")
        check_temperature(self.temperature)
        check_temperature(self.t2s_temperature, "T2S temperature")
        if self.t2s_top_k < 1:
            raise InputError("top-k must be >= 1")
        if self.iterations is not None and (
            not self.iterations or any(not 1 <= n <= 256 for n in self.iterations)
        ):
            raise InputError("iterations: each level needs 1-256 passes")
        if not 0 <= self.turn_gap_s <= 5:
            raise InputError("the gap between turns must be in [0, 5] seconds")
        if not 0 <= self.overlap_s <= 10:
            raise InputError("overlap must be in [0, 10] seconds")
        from soundstorm.chain.turncheck import check_retry_options

        check_retry_options(self.retries, self.check_threshold)
        return self

    @property
    def checking(self) -> bool:
        return self.check_turns or self.retries > 0


@dataclass(frozen=True)
class TurnTiming:
    speaker: str
    text: str
    start_s: float
    end_s: float


@dataclass
class Synthesis:
    """What `say` and `dialogue` return."""

    audio: np.ndarray  # mono float32 [S]
    sample_rate: int
    turns: list[TurnTiming]
    timings: dict[str, float]
    seed: int
    device: str
    frontend: str
    precision: str = "fp32"  # what SoundStorm ran in: bf16 or fp32
    decoding: str = "paper"  # how SoundStorm's output was rendered: paper or posterior
    forward_passes: int = 0
    peak_memory_mb: float = 0.0
    warnings: list[str] = field(default_factory=list)
    checks: list | None = None  # a TurnCheck per turn, with --check or --retries

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Wall time of the synthesis (models already loaded) over the audio's duration."""
        return self.timings["total"] / max(self.duration_s, 1e-9)

    def report(self) -> dict:
        """What a render says about itself, as JSON: the CLI's `--json`, a batch's rows and the server's
        answers all give these fields (and add their own: files, loudness)."""
        out = {
            "duration_s": round(self.duration_s, 3),
            "sample_rate": self.sample_rate,
            "seed": self.seed,
            "device": self.device,
            "precision": self.precision,
            "decoding": self.decoding,
            "frontend": self.frontend,
            "timings_s": self.timings,
            "rtf": round(self.rtf, 4),
            "peak_memory_mb": self.peak_memory_mb,
            "forward_passes": self.forward_passes,
            "turns": [{"speaker": t.speaker, "text": t.text, "start_s": t.start_s, "end_s": t.end_s}
                      for t in self.turns],
            "warnings": list(self.warnings),
        }
        if self.checks is not None:
            out["checks"] = [c.to_dict() for c in self.checks]
        return out


@dataclass(frozen=True)
class Segment:
    """A stretch of one turn between pauses; the unit the front ends render."""

    turn: int
    speaker: str
    text: str
    pause_after_s: float


def segments_of(turns: list[Turn], turn_gap_s: float = 0.0) -> list[Segment]:
    """The segments of a script's turns; `turn_gap_s` of silence closes every turn but the last."""
    out: list[Segment] = []
    for index, turn in enumerate(turns):
        pending_pause = 0.0
        for part in turn.parts:
            if isinstance(part, Pause):
                if out and out[-1].turn == index:
                    out[-1] = dataclasses.replace(out[-1], pause_after_s=out[-1].pause_after_s + part.seconds)
                else:
                    pending_pause += part.seconds
            else:
                if pending_pause and out:  # a pause opening a turn lengthens the gap before it
                    out[-1] = dataclasses.replace(
                        out[-1], pause_after_s=out[-1].pause_after_s + pending_pause
                    )
                pending_pause = 0.0
                out.append(Segment(index, turn.speaker, part, 0.0))
        if turn_gap_s and index + 1 < len(turns) and out and out[-1].turn == index:
            out[-1] = dataclasses.replace(out[-1], pause_after_s=out[-1].pause_after_s + turn_gap_s)
    return out


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def check_say(text: str, prompt_text: str | None = None) -> None:
    """Refuse, before any model loads, a `say` request that cannot or should not be rendered."""
    for what, given in (("the text", text), ("the prompt's transcript", prompt_text or "")):
        if len(given) > MAX_TEXT_CHARS:
            raise InputError(f"{what} is {len(given)} characters long (at most {MAX_TEXT_CHARS}); split it")
    if not text.strip():
        raise InputError("the text to say is empty")
    spoken = normalize(text)
    if len(spoken) > MAX_SPOKEN_CHARS:
        raise InputError(
            f"the text speaks {len(spoken)} characters once numbers and symbols are spelled out "
            f"(at most {MAX_SPOKEN_CHARS}, about 20 minutes); split it"
        )
    if not any(c.isalpha() for c in spoken):
        raise InputError(f"nothing to speak in {quoted(text)}: {READS}")
    transcript = len(normalize(prompt_text)) if prompt_text is not None else 0
    if transcript > MAX_PROMPT_TEXT_CHARS:
        raise InputError(
            f"the prompt's transcript has {transcript} characters to speak; at most "
            f"{MAX_PROMPT_TEXT_CHARS} (only the prompt's first seconds are used: give their transcript)"
        )


def check_script(script: Script) -> None:
    """Refuse, before any model loads, a script that cannot or should not be rendered in one call."""
    if len(script.speakers) > MAX_SPEAKERS:
        raise ScriptError(
            f"{script.source}: {len(script.speakers)} speakers; at most {MAX_SPEAKERS} per script"
        )
    written = sum(len(turn.text) for turn in script.turns)
    if written > MAX_TEXT_CHARS:
        raise ScriptError(
            f"{script.source}: the turns hold {written} characters (at most {MAX_TEXT_CHARS} in one render); "
            "split it"
        )
    spoken = 0
    for turn in script.turns:
        words = normalize(turn.text)
        if not any(c.isalpha() for c in words):
            raise script_error(
                script, turn, f"[{turn.speaker}] has nothing to speak in {quoted(turn.text)}: {READS}"
            )
        spoken += len(words)
    if spoken > MAX_SPOKEN_CHARS:
        raise ScriptError(
            f"{script.source}: the script speaks {spoken} characters once numbers and symbols are spelled "
            f"out (at most {MAX_SPOKEN_CHARS}, about 20 minutes, in one render); split it"
        )
    paused = sum(p.seconds for t in script.turns for p in t.parts if isinstance(p, Pause))
    if paused > MAX_PAUSE_TOTAL_S:
        raise ScriptError(
            f"{script.source}: the pauses add up to {paused:g} s (at most {MAX_PAUSE_TOTAL_S:g} s in one render)"
        )
