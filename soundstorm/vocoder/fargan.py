"""FARGAN through ctypes: LPCNet features of 16 kHz speech, and speech rendered from them.

Shapes: audio [S] float in [-1, 1] at 16 kHz; features [T, 20] at 100 Hz (10 ms frames of 160 samples):
18 cepstral coefficients, the pitch as PitchDNN's log-period code (period = 256 / 2^(code + 1.5) samples)
and the pitch correlation. `synthesize(analyze(x))` is aligned with `x` and as long as it (in whole frames).
"""

from __future__ import annotations

import ctypes
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from soundstorm.base.errors import VocoderError
from soundstorm.vocoder import build

SAMPLE_RATE = 16000
FRAME = 160  # samples per feature frame (10 ms)
NUM_FEATURES = 20
CEPSTRUM = slice(0, 18)
PITCH = 18
CORRELATION = 19
# FARGAN primes on this many frames before it renders the first. Analysis and synthesis together delay
# the speech by DELAY samples (measured on speech's envelope; tests/test_vocoder.py checks the alignment),
# which `synthesize` takes back.
PRIME_FRAMES = 5
DELAY = 250
# Features far outside what the analysis of speech gives (its cepstrum stays within about +-20, the pitch
# code within [-1.5, 1.5] (periods of 32-256 samples), the correlation within [-0.5, 0.5]) are refused:
# FARGAN would turn them into noise or overflow.
LIMITS = {"cepstrum": 40.0, "pitch": (-2.0, 2.0), "correlation": (-1.0, 1.0)}


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    path = build.library_path()
    if not build.is_built():
        raise VocoderError(
            f"the FARGAN vocoder is not built ({path} is missing or stale): run "
            "`python -m soundstorm.vocoder.build` (bash .ci/setup does it)"
        )
    lib = ctypes.CDLL(str(path))
    floats = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
    lib.ss_analyze.argtypes = [floats, ctypes.c_int, floats]
    lib.ss_synthesize.argtypes = [floats, ctypes.c_int, floats]
    lib.ss_analyze.restype = lib.ss_synthesize.restype = ctypes.c_int
    if lib.ss_num_features() != NUM_FEATURES or lib.ss_frame_size() != FRAME:
        raise VocoderError(f"{path} is not the FARGAN bridge this soundstorm expects: rebuild it")
    return lib


def available() -> bool:
    """Whether the vocoder is built and loads."""
    try:
        _library()
    except (VocoderError, OSError):
        return False
    return True


def analyze(audio: np.ndarray) -> np.ndarray:
    """LPCNet features [T, 20] of 16 kHz audio [S]; T = ceil(S / 160) (the end padded with silence)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.isfinite(audio).all():
        raise VocoderError("the audio to analyse holds NaN or infinite samples")
    frames = -(-audio.size // FRAME)
    pcm = np.zeros(frames * FRAME, dtype=np.float32)
    pcm[: audio.size] = np.clip(audio, -1.0, 1.0) * 32768.0
    out = np.zeros((frames, NUM_FEATURES), dtype=np.float32)
    if _library().ss_analyze(pcm, frames, out) != 0:
        raise VocoderError("the feature analysis failed")
    return out


def check_features(features: np.ndarray) -> np.ndarray:
    """Features as float32 [T, 20], or a VocoderError saying what is wrong with them."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != NUM_FEATURES:
        raise VocoderError(f"FARGAN features must be [frames, {NUM_FEATURES}], got {list(features.shape)}")
    if not np.isfinite(features).all():
        raise VocoderError("FARGAN features hold NaN or infinite values")
    if np.abs(features[:, CEPSTRUM]).max(initial=0.0) > LIMITS["cepstrum"]:
        raise VocoderError(f"FARGAN cepstral features beyond +-{LIMITS['cepstrum']:g}")
    for name, column in (("pitch", PITCH), ("correlation", CORRELATION)):
        low, high = LIMITS[name]
        values = features[:, column]
        if values.size and (values.min() < low or values.max() > high):
            raise VocoderError(f"FARGAN {name} features outside [{low:g}, {high:g}]")
    return np.ascontiguousarray(features)


def silence_features(frames: int) -> np.ndarray:
    """What the analysis gives for digital silence: FARGAN renders (near) silence from it."""
    return np.repeat(_silence_frame()[None], frames, axis=0)


@functools.lru_cache(maxsize=1)
def _silence_frame() -> np.ndarray:
    return analyze(np.zeros(FRAME * 8, dtype=np.float32))[-1].copy()


PART_FRAMES = 1500  # 15 s: a longer render is cut into parts of about this length
SEARCH = 150  # frames either side of an even cut where the quietest frame is looked for
WARMUP = 10  # frames a later part renders before its cut, for FARGAN's state to settle
FADE = 4  # frames of cross-fade at a cut (40 ms)


def synthesize(features: np.ndarray) -> np.ndarray:
    """16 kHz audio [T * 160] in [-1, 1] from features [T, 20], aligned with the audio they came from.

    A long render is cut into parts of about `PART_FRAMES` at its quietest frames, rendered side by side
    (one thread each, up to the machine's cores) and cross-faded: the cuts depend on the features alone,
    so the audio does not depend on the number of cores."""
    features = check_features(features)
    frames = features.shape[0]
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    bounds = [0, *cut_points(features), frames]
    spans = [(max(0, a - WARMUP), min(frames, b + FADE)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if len(spans) == 1:
        return _render(features)
    with ThreadPoolExecutor(min(len(spans), os.cpu_count() or 1)) as pool:
        pieces = list(pool.map(lambda span: _render(features[span[0] : span[1]]), spans))
    audio = np.zeros(frames * FRAME, dtype=np.float32)
    fade_in = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, FADE * FRAME))).astype(np.float32)
    for n, ((start, _), piece) in enumerate(zip(spans, pieces, strict=True)):
        first = bounds[n]
        piece = piece[(first - start) * FRAME :].copy()  # from the part's own first frame on
        if n > 0:
            piece[: FADE * FRAME] *= fade_in
        if n < len(spans) - 1:
            piece[-FADE * FRAME :] *= fade_in[::-1]
        audio[first * FRAME : first * FRAME + piece.size] += piece
    return audio


def cut_points(features: np.ndarray) -> list[int]:
    """Where a render of these features is cut: near each multiple of T / parts, the frame of least energy
    (the first cepstral coefficient, a log energy, smoothed over 50 ms)."""
    frames = features.shape[0]
    parts = max(1, round(frames / PART_FRAMES))
    energy = np.convolve(features[:, 0], np.ones(5) / 5, mode="same")
    cuts = []
    for j in range(1, parts):
        target = j * frames // parts
        low, high = max(WARMUP, target - SEARCH), min(frames - FADE - 1, target + SEARCH)
        cuts.append(low + int(np.argmin(energy[low:high])))
    return cuts


def _render(features: np.ndarray) -> np.ndarray:
    """One FARGAN pass over checked features [T, 20]: audio [T * 160], aligned."""
    frames = features.shape[0]
    # FARGAN starts from silence: it primes on silence's features, renders every frame given and, to make
    # up for the delay, a little of silence after them.
    tail = -(-DELAY // FRAME)
    padded = np.concatenate([silence_features(PRIME_FRAMES), features, silence_features(tail)])
    pcm = np.zeros((frames + tail) * FRAME, dtype=np.float32)
    if _library().ss_synthesize(np.ascontiguousarray(padded), padded.shape[0], pcm) != 0:
        raise VocoderError("FARGAN synthesis failed")
    return np.clip(pcm[DELAY : DELAY + frames * FRAME], -1.0, 1.0)
