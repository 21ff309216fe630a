"""semantic.py: rate mapping, window packing, pooling, k-means; content on real speech."""

from __future__ import annotations

import dataclasses
import json
import shutil

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


def _two_latents(clips: int, frames: int, seed: int):
    """Whisper-like features [T, 31] of two hidden streams held for 10 frames at a time: `loud`, of four values,
    drives 30 dimensions (most of the geometry), `quiet`, of two, one; FARGAN-like targets [4T, 20] depend on
    `quiet` alone."""
    rng = np.random.default_rng(seed)
    whisper, targets, quiets = [], [], []
    for _ in range(clips):
        loud = rng.integers(0, 4, frames // 10).repeat(10) * 2 - 3
        quiet = rng.integers(0, 2, frames // 10).repeat(10) * 2 - 1
        x = np.concatenate([np.repeat(3.0 * loud[:, None], 30, 1), quiet[:, None] * 0.5], 1)
        whisper.append((x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32))
        y = np.repeat(quiet[:, None] * np.linspace(1, 2, 20)[None], 4, 0)  # 4 FARGAN frames per 25 Hz frame
        targets.append((y + 0.05 * rng.standard_normal(y.shape)).astype(np.float32))
        quiets.append(quiet)
    return whisper, targets, quiets


def _purity(tokens: np.ndarray, labels: np.ndarray) -> float:
    """The share of frames whose token's majority label is their own: 1 when the tokens tell the labels."""
    return sum(np.unique(labels[tokens == t], return_counts=True)[1].max() for t in set(tokens)) / len(tokens)


def test_learnt_tokens_keep_what_the_decoder_needs_where_kmeans_keeps_the_geometry():
    from pipelines.stages.semantic_learnt import fit_learnt

    whisper, targets, quiets = _two_latents(12, 200, seed=0)
    torch.manual_seed(0)
    tokenizer, losses, usage = fit_learnt(
        whisper, targets, [[i] for i in range(12)], codes=4, width=32, steps=300, seed=0, log_every=100
    )
    assert tokenizer.learnt and tokenizer.num_tokens == 4 and usage["codes_used"] >= 2
    assert losses[-1] < 0.5 * losses[0]
    test, _, labels = _two_latents(3, 200, seed=1)
    learnt = np.concatenate([tokenizer.assign(w) for w in test])
    kmeans = fit_kmeans(np.concatenate(whisper), 4, 10, seed=0)
    geometric = np.concatenate([kmeans.assign(w) for w in test])
    assert _purity(learnt, np.concatenate(labels)) > 0.95
    assert _purity(geometric, np.concatenate(labels)) < 0.8  # k-means spends its 4 codes on the loud stream


def test_a_learnt_tokenizer_saves_and_loads_its_projection(tmp_path):
    from soundstorm.chain.semantic import SemanticTokenizer

    rng = np.random.default_rng(0)
    projection = {
        "w1": rng.standard_normal((16, 6)).astype(np.float32),
        "b1": rng.standard_normal(16).astype(np.float32),
        "w2": rng.standard_normal((4, 16)).astype(np.float32),
        "b2": rng.standard_normal(4).astype(np.float32),
    }
    tokenizer = SemanticTokenizer(
        mean=np.zeros(6, np.float32), std=np.ones(6, np.float32),
        centroids=rng.standard_normal((5, 4)).astype(np.float32), projection=projection,
    )
    features = rng.standard_normal((30, 6)).astype(np.float32)
    z = torch.nn.functional.gelu(torch.from_numpy(features @ projection["w1"].T + projection["b1"]))
    z = z.numpy() @ projection["w2"].T + projection["b2"]
    nearest = ((z[:, None] - tokenizer.centroids[None]) ** 2).sum(-1).argmin(1)
    assert tokenizer.assign(features).tolist() == nearest.tolist()
    tokenizer.save(tmp_path / "semantic.safetensors")
    loaded = SemanticTokenizer.load(tmp_path / "semantic.safetensors")
    assert loaded.learnt and loaded.assign(features).tolist() == nearest.tolist()
    # k-means tokenizers stay as they were: no projection, centroids in the features' space
    plain = SemanticTokenizer(mean=tokenizer.mean, std=tokenizer.std, centroids=features[:3])
    plain.save(tmp_path / "plain.safetensors")
    assert not SemanticTokenizer.load(tmp_path / "plain.safetensors").learnt
    # centroids of the wrong width for the projection: one clear error
    tokenizer.centroids = tokenizer.centroids[:, :3]
    tokenizer.save(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="centroids of width 3"):
        SemanticTokenizer.load(tmp_path / "bad.safetensors")


def test_padding_takes_no_part_in_the_learnt_codebook():
    from pipelines.stages.semantic_learnt import LearntQuantizer

    quantizer = LearntQuantizer(features=3, codes=4, width=8, seed=0).train()
    x = torch.randn(2, 10, 3)
    x[1, 6:] = float("nan")
    out = quantizer(x)
    assert torch.isfinite(out).all() and torch.isfinite(quantizer.commitment_loss)
    # every code starts on a real frame, none on padding
    real = quantizer.mlp(x[~x.isnan().any(-1)]).detach()
    assert all(torch.cdist(code[None], real).min() < 1e-4 for code in quantizer.book) or quantizer.steps == 1
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in quantizer.mlp.parameters())


def test_the_semantic_stage_learns_its_tokens_on_the_toy_corpus(tmp_path):
    from pipelines.__main__ import main as pipelines_main
    from pipelines.data.manifest import read_manifest
    from pipelines.stages.shards import load_semantic
    from soundstorm.chain.semantic import SemanticTokenizer

    out = tmp_path / "toy"
    base = ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(out), "--quiet"]
    assert pipelines_main(["corpus", *base]) == 0
    learnt = ["--set", "semantic.kind=learnt", "--set", "semantic.learnt_steps=3", "--set", "semantic.learnt_width=16"]
    assert pipelines_main(["semantic", *base, *learnt]) == 0
    tokenizer = SemanticTokenizer.load(out / "semantic" / "semantic.safetensors")
    assert tokenizer.learnt and tokenizer.num_tokens == 8 and tokenizer.centroids.shape == (8, 16)
    tokens = load_semantic(out / "semantic")
    assert set(tokens) == {r["id"] for r in read_manifest(out)}
    assert all(0 <= t.min() and t.max() < 8 for t in tokens.values())
    # the folder holds a learnt tokenizer: a rerun asking for k-means is refused, not silently mixed
    with pytest.raises(SystemExit, match="holds a learnt tokenizer"):
        pipelines_main(["semantic", *base])
    shutil.copytree(out / "corpus", tmp_path / "other" / "corpus")  # a data set with its corpus, no tokenizer yet
    with pytest.raises(SystemExit, match="semantic.kind: kmeans or learnt"):
        pipelines_main(["semantic", *base, "--out-dir", str(tmp_path / "other"), "--set", "semantic.kind=vq"])
    # fitted on voice-perturbed copies of the clips: a tokenizer of the same shape, and the stage says so
    shutil.rmtree(out / "semantic")
    assert pipelines_main(["semantic", *base, *learnt, "--set", "semantic.perturb_voice=true"]) == 0
    assert SemanticTokenizer.load(out / "semantic" / "semantic.safetensors").centroids.shape == (8, 16)
    assert json.loads((out / "stages.json").read_text())["semantic"]["perturb_voice"] is True


def test_soundstorm_starts_on_new_tokens_with_the_old_tokens_embeddings():
    from pipelines.stages.soundstorm_init import carried_embedding, cooccurrence

    old = [np.array([3, 3, 1, 2, 1, 2, 0]), np.array([3, 0])]
    new = [np.array([0, 0, 1, 1, 1, 1, 2]), np.array([0])]  # shorter: only the common frames count
    counts = cooccurrence(old, new, old_vocab=4, new_vocab=4)
    assert counts[0].tolist() == [0, 0, 0, 3] and counts[1].tolist() == [0, 2, 2, 0] and counts[3].sum() == 0
    embedding = torch.arange(5 * 2, dtype=torch.float32).reshape(5, 2)  # 4 tokens and the padding row
    carried = carried_embedding(embedding, counts)
    assert carried.shape == (5, 2)
    assert torch.equal(carried[0], embedding[3])  # always on old token 3
    assert torch.allclose(carried[1], (embedding[1] + embedding[2]) / 2)  # half on 1, half on 2
    assert torch.equal(carried[2], embedding[0])
    assert torch.allclose(carried[3], embedding[:4].mean(0))  # never seen: the mean of them all
    assert torch.equal(carried[4], embedding[4])  # the padding row kept


def test_the_ar_baseline_and_the_t5_are_carried_onto_new_tokens_too(tmp_path):
    """soundstorm_init --model: the AR baseline's semantic embedding carried as SoundStorm's; the T5's rows of the
    semantic tokens in its tied vocabulary carried (what it reads and what it predicts), its text rows and every
    other weight unchanged; a T5 started from that folder (`t2s.init_from`) holds those weights; a model that
    reads another number of tokens is refused."""
    from conftest import tiny_t2s_config

    from pipelines.stages.soundstorm_init import carry, cooccurrence
    from pipelines.stages.t2s import save_shipped, start_from
    from soundstorm.bundles.checkpoints import save_model_folder
    from soundstorm.models.ar_baseline import ARBaseline, ARConfig, load_ar_baseline
    from soundstorm.models.t2s import FIRST_SEMANTIC, T2S, load_t2s

    rng = np.random.default_rng(0)
    old = [rng.integers(0, 16, 200)]
    new = [(old[0] * 5 + 3) % 16]  # a renaming: new token j always meets one old token
    counts = cooccurrence(old, new, 16, 16)
    partner = counts.argmax(1)

    torch.manual_seed(0)
    ar = ARBaseline(ARConfig(levels=2, codebook_size=16, semantic_vocab=16, dim=32, layers=2, heads=2))
    save_model_folder(tmp_path / "ar", ar.state_dict(), dataclasses.asdict(ar.config))
    carry("ar_baseline", tmp_path / "ar", tmp_path / "ar_new", counts, old_vocab=16)
    moved = load_ar_baseline(tmp_path / "ar_new")
    before, after = ar.semantic_embedding.weight, moved.semantic_embedding.weight
    assert torch.equal(after[:16], before[torch.from_numpy(partner)]) and torch.equal(after[16], before[16])
    assert torch.equal(moved.token_embedding.weight, ar.token_embedding.weight)

    t2s = T2S.random_init(tiny_t2s_config(), seed=0)
    (tmp_path / "t2s").mkdir()
    save_shipped(t2s.model, t2s.config, tmp_path / "t2s")
    carry("t2s", tmp_path / "t2s", tmp_path / "t2s_new", counts, old_vocab=16)
    carried = load_t2s(tmp_path / "t2s_new")
    was, now = t2s.model.get_input_embeddings().weight, carried.model.get_input_embeddings().weight
    span = slice(FIRST_SEMANTIC, FIRST_SEMANTIC + 16)
    assert torch.equal(now[span], was[span][torch.from_numpy(partner)])
    assert torch.equal(now[: FIRST_SEMANTIC], was[: FIRST_SEMANTIC]) and torch.equal(now[16 + FIRST_SEMANTIC :], was[16 + FIRST_SEMANTIC :])
    assert torch.equal(carried.model.get_output_embeddings().weight, now)  # tied: it predicts the new tokens too
    fresh = T2S.random_init(tiny_t2s_config(), seed=1)
    start_from(fresh.model, tmp_path / "t2s_new")
    assert torch.equal(fresh.model.get_input_embeddings().weight, now)
    with pytest.raises(SystemExit, match="t2s.init_from"):
        start_from(T2S.random_init(dataclasses.replace(tiny_t2s_config(), d_model=16, d_ff=32), seed=0).model, tmp_path / "t2s_new")
    with pytest.raises(ValueError, match="reads 16 semantic tokens, the old tokenizer makes 8"):
        carry("ar_baseline", tmp_path / "ar", tmp_path / "x", counts[:8, :8], old_vocab=8)


def test_a_perturbed_voice_moves_the_pitch_and_the_formants_and_nothing_else():
    from pipelines.data.perturbed_voices import BANDS, _dct, perturb_voice
    from soundstorm.vocoder.fargan import CORRELATION, PITCH

    rng = np.random.default_rng(0)
    bands = np.exp(-0.5 * ((np.arange(BANDS) - 6.0) / 1.5) ** 2)[None].repeat(40, 0) * 8  # a formant at band 6
    features = np.zeros((40, 20), np.float32)
    features[:, :BANDS] = bands @ _dct()
    features[:, PITCH] = rng.uniform(-0.5, 0.5, 40)
    features[:, CORRELATION] = rng.uniform(-0.3, 0.4, 40)
    same = perturb_voice(features, 0.0, 1.0)
    np.testing.assert_allclose(same, features, atol=1e-4)
    up = perturb_voice(features, 12.0, 1.2)
    np.testing.assert_allclose(up[:, PITCH], features[:, PITCH] + 1.0, atol=1e-5)  # an octave
    np.testing.assert_array_equal(up[:, CORRELATION], features[:, CORRELATION])
    assert (up[:, :BANDS] @ _dct().T).argmax(1).min() > 6  # the formant moved up
    down = perturb_voice(features, -3.0, 0.85)
    assert (down[:, :BANDS] @ _dct().T).argmax(1).max() < 6
    assert np.all(down[:, PITCH] < features[:, PITCH])
    assert perturb_voice(np.full((3, 20), 1.9, np.float32), 12.0, 1.0)[:, PITCH].max() <= 2.0  # FARGAN's limit


def test_voice_perturbed_copies_keep_each_clips_length_and_follow_the_seed():
    from pipelines.data.perturbed_voices import voice_perturbed
    from soundstorm.vocoder import fargan

    t = np.arange(8000) / 16000
    clips = [0.3 * np.sin(2 * np.pi * 150 * t * (1 + 0.1 * t)), 0.2 * np.sin(2 * np.pi * 220 * t[:5000])]
    features = [fargan.analyze(c.astype(np.float32)) for c in clips]
    lengths = [len(c) for c in clips]
    a, b = voice_perturbed(features, lengths, 1), voice_perturbed(features, lengths, 1)
    assert [len(x) for x in a] == lengths and all(np.isfinite(x).all() and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    other = voice_perturbed(features, lengths, 2)
    assert not np.allclose(a[0], other[0])
