"""Stage 3: the semantic tokenizer (over Whisper tiny.en's encoder) and every item's tokens.

    python -m pipelines semantic --config pipelines/configs/tiny.yaml

Fits K centroids on `semantic.train_hours` of the training split (`semantic.kind`: k-means, or codes learnt
for a feature decoder, `semantic_learnt.py`), saves them as
`semantic/semantic.safetensors`, then tokenizes every item of the corpus in
parts of PART_SIZE items (`semantic/part-NNNN.safetensors`, one array per item
id); finished parts are skipped on a rerun.
"""

from __future__ import annotations

import time

import numpy as np
import soundfile as sf

from pipelines.config import DataConfig
from pipelines.data.manifest import read_manifest
from soundstorm.chain.semantic import (
    SAMPLE_RATE,
    SEMANTIC_RATE,
    SemanticTokenizer,
    WhisperEncoder,
    fit_kmeans,
    pool_to_semantic_rate,
)
from soundstorm.io.audio import resample

PART_SIZE = 256


def _read(path: str) -> np.ndarray:
    """A corpus file at Whisper's 16 kHz, whatever the corpus's rate."""
    data, rate = sf.read(path, dtype="float32")
    return resample(data, rate, SAMPLE_RATE)


def training_clips(config: DataConfig, hours: float) -> tuple[list[dict], list[np.ndarray]]:
    """The first `hours` of the training split: its rows and clips (16 kHz)."""
    rows, clips, total = [], [], 0.0
    for row in read_manifest(config.out_dir, "train"):
        if total >= hours * 3600:
            break
        rows.append(row)
        clips.append(_read(row["path"]))
        total += row["duration_s"]
    return rows, clips


def training_features(config: DataConfig, encoder: WhisperEncoder, hours: float):
    """The first `hours` of the training split: its rows, clips (16 kHz) and 25 Hz encoder features."""
    rows, clips = training_clips(config, hours)
    return rows, clips, encoded(encoder, clips)


def encoded(encoder: WhisperEncoder, clips: list[np.ndarray]) -> list[np.ndarray]:
    """16 kHz clips -> their 25 Hz encoder features [T, D]."""
    features = []
    for i in range(0, len(clips), 64):
        batch = clips[i : i + 64]
        frames = encoder.encode(batch)
        features += [pool_to_semantic_rate(f, len(c)) for f, c in zip(frames, batch, strict=True)]
    return features


def fit(config: DataConfig, encoder: WhisperEncoder) -> dict:
    if config.semantic.kind not in ("kmeans", "learnt"):
        raise SystemExit(f"error: semantic.kind: kmeans or learnt, got {config.semantic.kind!r}")
    rows, clips = training_clips(config, config.semantic.train_hours)
    hours = sum(r["duration_s"] for r in rows) / 3600
    stats = {"kind": config.semantic.kind, "fit_hours": round(hours, 3)}
    if config.semantic.kind == "learnt":  # it chooses what the encoder reads
        return stats | _fit_learnt(config, rows, clips, encoder)
    features = encoded(encoder, clips)
    stats["fit_frames"] = int(sum(len(f) for f in features))
    stacked = np.concatenate(features).astype(np.float32)
    tokenizer = fit_kmeans(stacked, config.semantic.clusters, config.semantic.iterations, config.seed)
    return stats | {"tokenizer": tokenizer}


def _fit_learnt(config: DataConfig, rows: list[dict], clips: list[np.ndarray], encoder: WhisperEncoder) -> dict:
    import torch

    from pipelines.data.perturbed_voices import voice_perturbed
    from pipelines.stages.feature_codec import voice_sources
    from pipelines.stages.semantic_learnt import fit_learnt
    from soundstorm.vocoder import fargan

    s = config.semantic
    torch.set_num_threads(max(1, s.threads))
    ids = [r["id"] for r in rows]
    sources = voice_sources(ids, {r["id"]: r for r in rows})
    targets = [fargan.analyze(c) for c in clips]
    # what the tokenizer reads: the clips, or with perturb_voice the same words in a changed voice
    read = voice_perturbed(targets, [len(c) for c in clips], config.seed) if s.perturb_voice else clips
    features = encoded(encoder, read)
    tokenizer, losses, usage = fit_learnt(
        features, targets, sources, s.clusters, s.learnt_width, s.learnt_steps, config.seed
    )
    fit_frames = int(sum(len(f) for f in features))
    stats = {"fit_frames": fit_frames, "tokenizer": tokenizer, "probe_loss": losses}
    return stats | {"perturb_voice": s.perturb_voice} | usage


def run(config: DataConfig, progress=None) -> dict:
    from safetensors.numpy import save_file

    out = config.out_dir / "semantic"
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    encoder = WhisperEncoder(config.semantic.whisper_model, threads=2)
    centroids = out / "semantic.safetensors"
    stats: dict = {}
    if centroids.exists():
        tokenizer = SemanticTokenizer.load(centroids, encoder)
    else:
        fitted = fit(config, encoder)
        tokenizer = fitted.pop("tokenizer")
        tokenizer.save(centroids)
        stats.update(fitted)
    stats["fit_wall_s"] = round(time.time() - started, 1)
    if tokenizer.learnt != (config.semantic.kind == "learnt"):
        raise SystemExit(
            f"error: {centroids} holds a {'learnt' if tokenizer.learnt else 'k-means'} tokenizer, the config asks"
            f" for semantic.kind {config.semantic.kind!r}: remove the semantic folder to fit it anew"
        )
    tokenizer.encoder = encoder
    rows = read_manifest(config.out_dir)
    parts = range(0, len(rows), PART_SIZE)
    tokens_total = 0
    for n, start in enumerate(parts):
        path = out / f"part-{n:04d}.safetensors"
        chunk = rows[start : start + PART_SIZE]
        if not path.exists():
            tokens = tokenizer.tokenize([_read(r["path"]) for r in chunk])
            tmp = path.with_suffix(".tmp")
            save_file({r["id"]: t.astype(np.int16) for r, t in zip(chunk, tokens, strict=True)}, str(tmp))
            tmp.rename(path)
        tokens_total += sum(int(np.ceil(r["duration_s"] * SEMANTIC_RATE)) for r in chunk)
        if progress:
            progress(n + 1, len(parts))
    stats.update(
        {
            "clusters": tokenizer.num_tokens,
            "learnt": tokenizer.learnt,
            "items": len(rows),
            "tokens_approx": tokens_total,
            "parts": len(parts),
            "wall_s": round(time.time() - started, 1),
        }
    )
    return stats
