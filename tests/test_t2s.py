"""models/t2s.py with a tiny random-init T5: the cap, seeds, batching, turn boundaries."""

from __future__ import annotations

import pytest

from soundstorm_cli.models.t2s import T2S, T2SConfig

TINY = T2SConfig(
    text_vocab=40,
    semantic_vocab=16,
    d_model=32,
    d_ff=64,
    heads=4,
    encoder_layers=1,
    decoder_layers=1,
    dropout=0.0,
    max_frames_per_piece=3.0,
)


@pytest.fixture(scope="module")
def t2s():
    return T2S.random_init(TINY, seed=0)


TEXTS = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]


def test_generation_stops_at_the_cap(t2s):
    for text, out in zip(TEXTS, t2s.generate(TEXTS, temperature=1.0, seed=1), strict=True):
        assert len(out.semantic) + len(out.turn_starts) < t2s.cap(text) <= 3 * len(text) + 1
        assert all(0 <= s < TINY.semantic_vocab for s in out.semantic)


def test_same_seed_same_tokens(t2s):
    a = t2s.generate(TEXTS, prompt_semantic=[1, 2, 3], seed=7)
    b = t2s.generate(TEXTS, prompt_semantic=[1, 2, 3], seed=7)
    c = t2s.generate(TEXTS, prompt_semantic=[1, 2, 3], seed=8)
    assert [o.semantic for o in a] == [o.semantic for o in b]
    assert [o.semantic for o in a] != [o.semantic for o in c]


def test_batched_equals_one_by_one(t2s):
    batch = t2s.generate(TEXTS, seed=3)
    for b, text in enumerate(TEXTS):
        assert t2s.generate([text], seed=3 + b)[0] == batch[b]


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_turn_boundaries_are_monotonic_and_one_per_turn(t2s, turns):
    text = list(range(5, 5 + 4 * turns))
    for seed in range(5):
        out = t2s.generate([text], turns=[turns], seed=seed, temperature=1.0)[0]
        assert len(out.turn_starts) == turns
        assert out.turn_starts[0] == 0
        assert out.turn_starts == sorted(out.turn_starts)
