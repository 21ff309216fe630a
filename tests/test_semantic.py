"""semantic.py: rate mapping, window packing, pooling, k-means; content on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundstorm_cli.errors import CheckpointError
from soundstorm_cli.semantic import (
    SEMANTIC_HOP,
    WINDOW,
    WhisperEncoder,
    fit_kmeans,
    frame_ratio,
    pool_to_semantic_rate,
    semantic_frames,
    semantic_to_codec,
)


def test_rates_must_divide():
    assert frame_ratio(50) == 2 and frame_ratio(75) == 3
    with pytest.raises(CheckpointError, match="not a multiple"):
        frame_ratio(40)


def test_semantic_to_codec_repeats_and_fits_the_length():
    tokens = torch.tensor([[1, 2, 3]])
    assert semantic_to_codec(tokens, 2).tolist() == [[1, 1, 2, 2, 3, 3]]
    assert semantic_to_codec(tokens, 2, codec_frames=5).tolist() == [[1, 1, 2, 2, 3]]
    assert semantic_to_codec(tokens, 3, codec_frames=10).tolist() == [[1, 1, 1, 2, 2, 2, 3, 3, 3, 3]]


def test_frame_counts():
    assert semantic_frames(SEMANTIC_HOP) == 1 and semantic_frames(SEMANTIC_HOP + 1) == 2
    frames = np.arange(10, dtype=np.float32)[:, None].repeat(3, 1)  # 10 frames at 50 Hz
    pooled = pool_to_semantic_rate(frames, 5 * SEMANTIC_HOP)
    assert pooled.shape == (5, 3) and pooled[0, 0] == 0.5 and pooled[4, 0] == 8.5


def test_packing_keeps_clips_in_windows_on_frame_boundaries():
    lengths = [16000 * 7, 16000 * 12, 16000 * 9, 16000 * 40, 500]
    plan = WhisperEncoder._pack(lengths)
    assert len(plan) == 4 + 1 + 1  # the 40 s clip is cut in two pieces
    pieces = [min(WINDOW, n - s) for n in lengths for s in range(0, n, WINDOW)]
    for (_window, offset), size in zip(plan, pieces, strict=True):
        assert offset % SEMANTIC_HOP == 0 and offset + size <= WINDOW
    spans = {}
    for (window, offset), size in zip(plan, pieces, strict=True):
        for other in spans.get(window, []):
            assert offset >= other[1] or offset + size <= other[0]  # no overlap
        spans.setdefault(window, []).append((offset, offset + size))


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    data = np.concatenate([c + rng.normal(0, 0.1, (200, 2)) for c in centres]).astype(np.float32)
    tokenizer = fit_kmeans(data, 3, 10, seed=0)
    labels = tokenizer.assign(data)
    assert len(set(labels[:200])) == len(set(labels[200:400])) == len(set(labels[400:])) == 1
    assert len(set(labels)) == 3
