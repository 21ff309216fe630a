"""The corpus's speakers and how each one is rendered (flite, sox, espeak-ng).

flite's voices are built from real people's recordings and Whisper hears them
well (CER ~0.03); `sox pitch` by 250-400 cents turns one of them into a new
speaker (resemblyzer similarity to its source 0.69-0.81, as far apart as two
real people) while staying intelligible (issue 10's measurements). espeak-ng
adds many accents and variants, less natural. Some speakers of each kind are
held out of all training: they form the test split and the bundled voices.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLITE_BASES = ("awb", "rms", "slt", "kal16")
# (flite voice, sox pitch shift in cents) -> a distinct speaker.
FLITE_SHIFTS = {
    "awb": (-300, 300, 400),
    "rms": (-300, 300, 400),
    "slt": (-400, -300, 300),
    "kal16": (-300, 300),
}
ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
# Held out of train and valid: the test split, and the voices bundled for users.
HELD_OUT = (
    "flite-awb+300",
    "flite-rms-300",
    "flite-slt-300",
    "flite-kal16+300",
    "espeak-en-us+f3",
    "espeak-en-gb+m4",
    "espeak-en-gb-scotland+f2",
    "espeak-en-029+m2",
    "espeak-en-us-nyc+f4",
    "espeak-en-gb-x-rp+m6",
)
TOY_SPEAKERS = ("flite-awb", "flite-slt-300", "espeak-en-us+m1", "flite-rms+300", "espeak-en-gb+m4")
TOY_HELD_OUT = ("flite-slt-300", "espeak-en-gb+m4")


@dataclass(frozen=True)
class Voice:
    """A speaker: engine, base voice, and a sox pitch shift that makes it a new person."""

    name: str
    engine: str  # "flite" | "espeak"
    base: str  # flite voice name, or espeak "accent+variant"
    pitch_cents: int = 0

    def render(
        self, text: str, path: Path, sample_rate: int, stretch: float = 1.0, gain_db: float = -3.0
    ) -> None:
        """Speak `text` into a mono 16-bit wav at `sample_rate` (deterministic)."""
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            if self.engine == "flite":
                cmd = [
                    "flite",
                    "-voice",
                    self.base,
                    "--setf",
                    f"duration_stretch={stretch:.3f}",
                    "-t",
                    text,
                    "-o",
                    str(raw),
                ]
                subprocess.run(cmd, check=True, capture_output=True)
            else:
                speed = str(int(round(165 / stretch)))
                cmd = ["espeak-ng", "-v", self.base, "-s", speed, "-w", str(raw), "--stdin"]
                subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
            effects = (["pitch", str(self.pitch_cents)] if self.pitch_cents else []) + [
                "gain",
                "-n",
                f"{gain_db:.1f}",
            ]
            cmd = [
                "sox",
                "-D",
                "-R",
                str(raw),
                "-r",
                str(sample_rate),
                "-c",
                "1",
                "-b",
                "16",
                str(path),
                *effects,
            ]
            subprocess.run(cmd, check=True, capture_output=True)


def all_voices() -> list[Voice]:
    """Every speaker of the full corpus, in a fixed order."""
    voices = [Voice(f"flite-{b}", "flite", b) for b in FLITE_BASES]
    for base, shifts in FLITE_SHIFTS.items():
        voices += [Voice(f"flite-{base}{c:+d}", "flite", base, c) for c in shifts]
    for i, accent in enumerate(ESPEAK_ACCENTS):
        # Each accent gets a spread of variants (male and female), a different subset per accent.
        picks = [ESPEAK_VARIANTS[(i * 5 + k * 3) % len(ESPEAK_VARIANTS)] for k in range(4)]
        voices += [Voice(f"espeak-{accent}+{v}", "espeak", f"{accent}+{v}") for v in dict.fromkeys(picks)]
    names = {v.name for v in voices}
    # Held-out espeak voices the spread above did not pick (every held-out flite voice is a shift above).
    voices += [Voice(n, "espeak", n.removeprefix("espeak-")) for n in HELD_OUT if n not in names]
    return voices


def select_voices(which: str) -> tuple[list[Voice], set[str]]:
    """(voices, held-out names) for `all` or `toy`."""
    voices = {v.name: v for v in all_voices()}
    if which == "toy":
        return [voices[n] for n in TOY_SPEAKERS], set(TOY_HELD_OUT)
    if which != "all":
        raise ValueError(f"corpus.speakers must be 'all' or 'toy', not '{which}'")
    return list(voices.values()), set(HELD_OUT)
