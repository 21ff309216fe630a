"""Voice-perturbed copies of clips: FARGAN re-rendering their features with the pitch moved and the band envelope
stretched, the words and timing kept. The learnt semantic tokenizer reads such copies (`semantic.perturb_voice`) and
the feature codec's decoder can too (`codec.perturb_voice`), so that tokens need not carry the voice that spoke them.
"""

from __future__ import annotations

import numpy as np

SEMITONES = 5.0  # `perturb_voice`: a copy's pitch moves by up to this many semitones either way
WARP = (0.85, 1.18)  # and its band envelope is stretched along the bands by a factor in this range
BANDS = 18  # FARGAN's cepstrum is the orthonormal DCT of 18 log band energies


def _dct() -> np.ndarray:
    """[band, coefficient]: log band energies [T, 18] @ its transpose -> cepstrum; cepstrum @ it -> bands."""
    i, j = np.arange(BANDS)[:, None], np.arange(BANDS)[None]
    scale = np.where(j == 0, np.sqrt(0.5), 1.0) * np.sqrt(2 / BANDS)
    return np.cos((i + 0.5) * j * np.pi / BANDS) * scale


def perturb_voice(features: np.ndarray, semitones: float, warp: float) -> np.ndarray:
    """FARGAN features [N, 20] -> the same with another voice: the pitch (a log2 scale, one unit an octave)
    moved by `semitones`, the log band energies read at band / `warp` (above 1 the formants move up), the
    correlation and the timing unchanged."""
    from soundstorm.vocoder.fargan import CEPSTRUM, LIMITS, PITCH

    out = np.array(features, dtype=np.float32, copy=True)
    out[:, PITCH] = np.clip(out[:, PITCH] + semitones / 12, *LIMITS["pitch"])
    dct = _dct()
    bands = out[:, CEPSTRUM] @ dct.T
    where = np.clip(np.arange(BANDS) / warp, 0, BANDS - 1)
    lo = np.floor(where).astype(int)
    hi, w = np.minimum(lo + 1, BANDS - 1), where - lo
    out[:, CEPSTRUM] = (bands[:, lo] * (1 - w) + bands[:, hi] * w) @ dct
    return out


def voice_perturbed(features: list[np.ndarray], lengths: list[int], seed: int | list[int]) -> list[np.ndarray]:
    """Clips' FARGAN features -> FARGAN's rendering of each with its voice changed at random (`perturb_voice`,
    pitch uniform in +-SEMITONES, warp log-uniform in WARP), cut or padded to each clip's `lengths` samples."""
    from soundstorm.vocoder import fargan

    rng = np.random.default_rng(seed)
    out = []
    for f, n in zip(features, lengths, strict=True):
        shift, warp = rng.uniform(-SEMITONES, SEMITONES), np.exp(rng.uniform(*np.log(WARP)))
        audio = fargan.synthesize(perturb_voice(f, shift, warp))
        out.append(np.pad(audio, (0, max(0, n - len(audio))))[:n].astype(np.float32))
    return out


def perturbed_tokens(tokenizer, features: list[np.ndarray], lengths: list[int], seed: int, batch: int = 32) -> list:
    """The semantic tokens (`tokenizer.tokenize`) of a voice-perturbed copy of each clip (`voice_perturbed` of its
    FARGAN features, `lengths` samples), `batch` clips at a time, batch n perturbed with the seed [seed, n]."""
    out = []
    for n, start in enumerate(range(0, len(features), batch)):
        part = slice(start, start + batch)
        out += tokenizer.tokenize(voice_perturbed(features[part], lengths[part], [seed, n]))
    return out
