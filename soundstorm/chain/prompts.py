"""Voice prompts: any readable audio, trimmed of silence, cut to its first seconds, tokenized.

A prompt gives SoundStorm its unmasked prefix (codec codes and semantic tokens, as
in training) and, with its transcript, gives T2S a prefix to continue. Bundled
voices are clips of the corpus's held-out speakers shipped with a bundle
(`voices/voices.json`: name -> file and transcript).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundstorm.base.errors import AudioError, CheckpointError, InputError
from soundstorm.io.audio import read_audio
from soundstorm.io.textfiles import read_json

# The voice prompt that bench, eval and the pipelines' evaluations give: 3 s, as in the paper.
REFERENCE_PROMPT_S = 3.0
MIN_PROMPT_S = 1.0
MAX_PROMPT_S = 10.0
MAX_PROMPT_TEXT_CHARS = 1000  # a prompt's transcript: only its first seconds are used
PROMPT_READ_S = 60.0  # of a prompt file, only this much is read: the speech in it is trimmed and cut
_FRAME_S = 0.02
_SILENCE_DB = -40.0  # frames this far below the loudest frame count as silence


@dataclass
class VoicePrompt:
    """A voice: its audio (cut), codec codes [Q, P] at the codec rate, 25 Hz semantic tokens."""

    name: str
    samples: np.ndarray
    codes: object  # torch.LongTensor [Q, P]
    semantic: np.ndarray  # [P25]
    text: str | None = None


def trim_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop leading and trailing silence (frames 40 dB under the loudest), keeping 50 ms margins."""
    hop = max(1, int(_FRAME_S * sample_rate))
    frames = len(samples) // hop
    if frames == 0:
        return samples[:0]
    # float64: a float file's samples may be huge (1e20), and their squares overflow float32
    rms = np.sqrt((samples[: frames * hop].astype(np.float64).reshape(frames, hop) ** 2).mean(axis=1) + 1e-12)
    loudest = rms.max()
    if loudest < 1e-4:  # about -80 dBFS: nothing there
        return samples[:0]
    voiced = np.flatnonzero(20 * np.log10(rms / loudest) > _SILENCE_DB)
    margin = int(0.05 * sample_rate)
    start = max(0, voiced[0] * hop - margin)
    end = min(len(samples), (voiced[-1] + 1) * hop + margin)
    return samples[start:end]


def check_prompt_seconds(seconds: float) -> float:
    if not MIN_PROMPT_S <= seconds <= MAX_PROMPT_S:
        raise InputError(
            f"prompt length {seconds:g} s: must be in [{MIN_PROMPT_S:g}, {MAX_PROMPT_S:g}] seconds"
        )
    return seconds


def load_prompt_audio(
    path: str | Path | bytes, sample_rate: int, seconds: float | None = None, warnings: list[str] | None = None
) -> np.ndarray:
    """The speech of an audio file (its first `seconds`, if given) at `sample_rate`; errors say what is wrong.
    A float file far beyond full scale (samples of 3e25) is scaled down to it, with a line in `warnings`."""
    audio = read_audio(path, sample_rate=sample_rate, max_seconds=PROMPT_READ_S)
    path = "the upload" if isinstance(path, bytes) else path
    if audio.peak_in_file > 1.0 and warnings is not None:
        warnings.append(
            f"voice prompt '{path}' peaks at {audio.peak_in_file:.3g}, beyond full scale (1.0): "
            "it was scaled down to full scale"
        )
    speech = trim_silence(audio.samples, sample_rate)
    if len(speech) == 0:
        raise AudioError(
            f"voice prompt '{path}' is silent (in its first {PROMPT_READ_S:g} s, all that is read)"
        )
    if len(speech) < MIN_PROMPT_S * sample_rate:
        raise AudioError(
            f"voice prompt '{path}' holds {len(speech) / sample_rate:.2f} s of speech; at least {MIN_PROMPT_S:g} s is needed"
        )
    return speech if seconds is None else speech[: int(seconds * sample_rate)]


@dataclass(frozen=True)
class BundledVoice:
    name: str
    path: Path
    text: str | None


def bundled_voices(folder: Path | None) -> list[BundledVoice]:
    """The voices a bundle ships (`voices.json` in its voices component), in their listed order."""
    if folder is None or not (folder / "voices.json").is_file():
        return []
    entries = read_json(folder / "voices.json", CheckpointError, "voice list")
    try:
        voices = [BundledVoice(str(e["name"]), folder / str(e["file"]), e.get("text")) for e in entries]
    except (TypeError, KeyError, AttributeError):
        raise CheckpointError(
            f"voice list '{folder / 'voices.json'}' must be a list of {{name, file, text}} entries"
        ) from None
    for voice in voices:  # a file of the component itself, so that it is one the registry hashed
        if voice.path.parent != folder or voice.path.name in ("", ".", ".."):
            raise CheckpointError(
                f"voice list '{folder / 'voices.json'}': '{voice.path.name}' is not in its folder"
            )
    return voices
