"""Stage 4 with `codec.kind: feature`: the FARGAN feature codec, residual k-means over the vocoder's features.

    python -m pipelines codec --config pipelines/configs/fargan.yaml
    python -m pipelines.evaluations.codec --config ... --natural-corpus CORPUS   # its resynthesis, held-out voices

Reads the training audio the frame codec would (`data.manifest.load_training_audio`), analyses it into
FARGAN's 10 ms features, stacks them in pairs (one 20 ms codec frame: 40 numbers), normalises each number by
the set's mean and deviation and weights the pitch code and correlation (`codec.pitch_weight`,
`codec.correlation_weight`: the quantiser's distance then cares for them as much as the ear does), then fits
`codec.model.levels` codebooks of `codec.model.codebook_size` vectors one after another, each by k-means
(`codec.kmeans_iterations` Lloyd iterations on `codec.kmeans_frames` frames drawn from the set, seeded) on
what the levels before left. Empty clusters are reseeded from random frames. Writes `codec/config.json`,
`codec/model.safetensors` (the codebooks and the normalisation: 1.3 MB at 8 x 1024) and
`codec/train_stats.json` (each level's residual RMS), a folder `load_codec` reads.

Fitted on 2.8 h (1.6 h natural) in 5 minutes of one core; its resynthesis of 50 held-out natural utterances
(2026-12-06, 2-core Xeon, docs/history/2026-12-06.md): 8 levels CER 0.069 (originals 0.045), similarity to
the original 0.936; 4 levels 0.139, 0.893.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from pipelines.config import DataConfig
from soundstorm.models.feature_codec import STACK, FeatureCodec, FeatureCodecConfig, nearest
from soundstorm.vocoder.fargan import CORRELATION, NUM_FEATURES, PITCH


def feature_weights(pitch: float, correlation: float) -> torch.Tensor:
    """The per-number weights of a stacked codec frame [STACK * 20]."""
    weights = torch.ones(STACK, NUM_FEATURES)
    weights[:, PITCH], weights[:, CORRELATION] = pitch, correlation
    return weights.reshape(-1)


def kmeans(x: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """k centroids [k, D] of `x` [N, D] by Lloyd's iterations from k distinct random frames; a cluster left
    empty takes a random frame."""
    centroids = x[torch.randperm(len(x), generator=generator)[:k]].clone()
    for _ in range(iterations):
        index = nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, index, x)
        counts = torch.bincount(index, minlength=k).float()
        spare = x[torch.randint(len(x), (k,), generator=generator)]
        centroids = torch.where((counts == 0)[:, None], spare, sums / counts.clamp_min(1)[:, None])
    return centroids


def fit(frames: torch.Tensor, config: FeatureCodecConfig, weights: torch.Tensor, iterations: int,
        sample: int, seed: int) -> tuple[FeatureCodec, list[float]]:
    """A FeatureCodec fitted on stacked frames [N, D] (FARGAN units): its normalisation, weights and
    codebooks; and the residual RMS after each level (in the weighted space)."""
    if len(frames) < config.codebook_size:
        raise SystemExit(
            f"error: {len(frames)} codec frames of training audio, fewer than the {config.codebook_size} "
            "vectors of a codebook"
        )
    generator = torch.Generator().manual_seed(seed)
    model = FeatureCodec(config)
    model.mean.copy_(frames.mean(0))
    model.std.copy_(frames.std(0).clamp_min(1e-3))
    model.weights.copy_(weights)
    chosen = torch.randperm(len(frames), generator=generator)[:sample]
    residual = (frames[chosen] - model.mean) / model.std * model.weights
    rms = []
    for level in range(config.levels):
        book = kmeans(residual, config.codebook_size, iterations, generator)
        residual = residual - book[nearest(residual, book)]
        model.codebooks[level].copy_(book)
        rms.append(round(residual.pow(2).mean().sqrt().item(), 4))
    return model, rms


def training_frames(clips: list[np.ndarray]) -> torch.Tensor:
    """int16 clips -> their FARGAN features stacked into codec frames [N, D] (an odd last frame dropped)."""
    from soundstorm.vocoder import fargan

    out = []
    for clip in clips:
        features = fargan.analyze(clip.astype(np.float32) / 32768)
        frames = len(features) // STACK
        out.append(torch.from_numpy(features[: frames * STACK].reshape(frames, STACK * NUM_FEATURES)))
    return torch.cat(out)


def run(config: DataConfig, progress=None) -> dict:
    from safetensors.torch import save_file

    from pipelines.data.manifest import TRAIN_HOURS, load_training_audio

    c = config.codec
    out = config.out_dir / "codec"
    out.mkdir(parents=True, exist_ok=True)
    done = out / "train_stats.json"
    model_config = FeatureCodecConfig(
        sample_rate=config.sample_rate, levels=c.model.levels, codebook_size=c.model.codebook_size
    )
    if config.sample_rate != 16000:
        raise SystemExit("error: the feature codec needs 16 kHz audio (FARGAN's rate)")
    settings = {
        "kind": "feature",
        "levels": c.model.levels,
        "codebook_size": c.model.codebook_size,
        "pitch_weight": c.pitch_weight,
        "correlation_weight": c.correlation_weight,
        "kmeans_iterations": c.kmeans_iterations,
        "kmeans_frames": c.kmeans_frames,
    }
    if done.exists() and json.loads(done.read_text()).get("settings") == settings:
        return json.loads(done.read_text())
    torch.set_num_threads(max(1, c.threads))
    started = time.time()
    frames = training_frames(load_training_audio(config, TRAIN_HOURS))
    weights = feature_weights(c.pitch_weight, c.correlation_weight)
    model, rms = fit(frames, model_config, weights, c.kmeans_iterations, c.kmeans_frames, config.seed)
    (out / "config.json").write_text(json.dumps(model_config.to_dict(), indent=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    stats = {
        "settings": settings,
        "frames": len(frames),
        "hours": round(len(frames) / 50 / 3600, 2),
        "residual_rms": rms,
        "wall_s": round(time.time() - started, 1),
    }
    done.write_text(json.dumps(stats, indent=1))
    if progress:
        progress(1, 1)
    return stats
