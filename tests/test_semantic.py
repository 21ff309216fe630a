"""semantic.py: rate mapping, window packing, pooling, k-means; content on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundstorm.base.errors import CheckpointError
from soundstorm.chain.semantic import (
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


def _dedup(tokens):
    return [t for i, t in enumerate(tokens) if i == 0 or t != tokens[i - 1]]


@pytest.mark.slow
def test_tokens_carry_content_not_voice(tmp_path):
    """Held-out speakers: the same sentence by two speakers is closer than two sentences by one (issue 10)."""
    import itertools
    import shutil

    import soundfile as sf

    from pipelines.data.synthetic_voices import select_voices
    from soundstorm.bundles.checkpoints import component_path, load_registry
    from soundstorm.chain.semantic import SemanticTokenizer
    from soundstorm.measures.evaluate import edit_distance

    if not all(shutil.which(t) for t in ("flite", "espeak-ng", "sox")):
        pytest.fail("flite, espeak-ng and sox are needed (installed by .ci/setup)")
    bundle = load_registry().get("tiny")
    tokenizer = SemanticTokenizer.load(component_path(bundle, "semantic") / "semantic.safetensors")
    voices = {v.name: v for v in select_voices("all")[0]}
    speakers = ["flite-awb+300", "espeak-en-gb+m4", "flite-slt-300"]
    sentences = [
        "The old bridge was closed for repairs until the end of March.",
        "She bought three apples and a loaf of bread at the market.",
        "Why did the meeting start so late this morning?",
    ]
    clips = {}
    for s, text in enumerate(sentences):
        for v in speakers:
            path = tmp_path / f"{s}_{v}.wav"
            voices[v].render(text, path, 16000)
            clips[(s, v)] = sf.read(path, dtype="float32")[0]
    keys = list(clips)
    tokens = {
        k: _dedup(t.tolist()) for k, t in zip(keys, tokenizer.tokenize([clips[k] for k in keys]), strict=True)
    }

    def distance(a, b):
        return edit_distance(tokens[a], tokens[b]) / max(len(tokens[a]), len(tokens[b]))

    same = np.mean(
        [distance((s, a), (s, b)) for s in range(3) for a, b in itertools.combinations(speakers, 2)]
    )
    different = np.mean(
        [distance((s1, v), (s2, v)) for v in speakers for s1, s2 in itertools.combinations(range(3), 2)]
    )
    assert same + 0.15 < different, (same, different)
