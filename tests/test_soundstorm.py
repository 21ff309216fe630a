"""models/soundstorm.py: the paper's training mask (section 3.2), padding, overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.models.soundstorm import SoundStorm, SoundStormConfig, soundstorm_loss, soundstorm_mask

TINY = SoundStormConfig(
    levels=3, codebook_size=16, semantic_vocab=10, dim=32, layers=2, heads=2, conv_kernel=5, dropout=0.0
)
MASK = TINY.mask_id


def _codes(B=4, Q=3, T=20, seed=0):
    return torch.randint(0, 16, (B, Q, T), generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lengths=st.lists(st.integers(1, 30), min_size=1, max_size=5))
def test_mask_invariants(seed, lengths):
    B, Q, T = len(lengths), 3, max(lengths)
    codes = _codes(B, Q, T, seed)
    drawn = soundstorm_mask(codes, torch.tensor(lengths), MASK, torch.Generator().manual_seed(seed))
    for b, length in enumerate(lengths):
        t, q = int(drawn.prompt_end[b]), int(drawn.level[b])
        masked = drawn.codes[b] == MASK  # [Q, T]
        assert 0 <= t < length and 0 <= q < Q
        assert not masked[:, :t].any(), "prompt frames are never masked"
        assert not masked[:, length:].any(), "padding is never masked"
        assert masked[q + 1 :, t:length].all(), "finer levels are masked from t on"
        assert not masked[:q].any(), "coarser levels are given"
        assert torch.equal(masked[q], drawn.loss_mask[b]), (
            "the loss covers exactly the masked tokens of level q"
        )
        assert drawn.loss_mask[b].sum() >= 1, "at least one masked token"
        unmasked = ~masked
        assert torch.equal(drawn.codes[b][unmasked], codes[b][unmasked])


def test_level_prompt_and_ratio_follow_the_paper():
    """q ~ U{1..Q} and t ~ U{0..T-1} (chi-square), p = cos(u) with u ~ U[0, pi/2] (KS)."""
    from scipy import stats

    n, Q, T = 6000, 3, 10
    drawn = soundstorm_mask(_codes(n, Q, T), torch.full((n,), T), MASK, torch.Generator().manual_seed(1))
    counts = np.bincount(drawn.level.numpy(), minlength=Q)
    assert stats.chisquare(counts).pvalue > 0.01
    assert stats.chisquare(np.bincount(drawn.prompt_end.numpy(), minlength=T)).pvalue > 0.01
    u = np.arccos(drawn.ratio.numpy().clip(-1, 1))
    assert stats.kstest(u, "uniform", args=(0, math.pi / 2)).pvalue > 0.01
    # and the share of masked frames at level q follows p
    target = (torch.arange(T)[None] >= drawn.prompt_end[:, None]).sum(1).float()
    share = drawn.loss_mask.sum(1).float() / target
    big = target >= 8
    assert abs(float(share[big].mean() - drawn.ratio[big].mean())) < 0.03


def test_padding_never_leaks_batch_equals_one_by_one():
    torch.manual_seed(0)
    model = SoundStorm(TINY).eval()
    lengths = [20, 13, 7]
    codes = _codes(3, 3, 20)
    semantic = torch.randint(0, 10, (3, 20))
    speakers = torch.randint(0, 3, (3, 20))
    key_mask = torch.arange(20)[None] < torch.tensor(lengths)[:, None]
    # garbage in the padding must change nothing
    codes_noisy, semantic_noisy = codes.clone(), semantic.clone()
    for b, n in enumerate(lengths):
        codes_noisy[b, :, n:] = 15 - codes[b, :, n:]
        semantic_noisy[b, n:] = 9 - semantic[b, n:]
    batch = model(codes_noisy, semantic_noisy, speakers, 1, key_mask)
    for b, n in enumerate(lengths):
        alone = model(codes[b : b + 1, :, :n], semantic[b : b + 1, :n], speakers[b : b + 1, :n], 1)
        torch.testing.assert_close(batch[b, :n], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("dropout", "attention_dropout", "varies"),
    [(0.0, None, False), (0.0, 0.5, True), (0.5, 0.0, True), (0.5, None, True)],
)
def test_attention_dropout_is_its_own_rate(dropout, attention_dropout, varies):
    import dataclasses

    from soundstorm.models.conformer import FeedForward, SelfAttention

    config = dataclasses.replace(TINY, dropout=dropout, attention_dropout=attention_dropout)
    torch.manual_seed(0)
    model = SoundStorm(config).train()
    attention = {m.dropout for m in model.modules() if isinstance(m, SelfAttention)}
    feed_forward = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert attention == {dropout if attention_dropout is None else attention_dropout}
    assert feed_forward == {dropout} and any(isinstance(m, FeedForward) for m in model.modules())
    codes, semantic, speakers = _codes(2, 3, 20), torch.randint(0, 10, (2, 20)), torch.ones(2, 20).long()
    twice = [model(codes, semantic, speakers, 1) for _ in range(2)]
    assert (not torch.equal(*twice)) == varies
    model.eval()
    torch.testing.assert_close(model(codes, semantic, speakers, 1), model(codes, semantic, speakers, 1))


def test_per_item_level_heads():
    torch.manual_seed(0)
    model = SoundStorm(TINY).eval()
    hidden = torch.randn(2, 5, TINY.dim)
    per_item = model.level_logits(hidden, torch.tensor([0, 2]))
    torch.testing.assert_close(per_item[0], model.level_logits(hidden[:1], 0)[0])
    torch.testing.assert_close(per_item[1], model.level_logits(hidden[1:], 2)[0])


@pytest.mark.slow
def test_a_tiny_model_overfits_a_handful_of_sequences():
    """The paper's mask lets a model learn; random-only masking famously cannot (issue 4)."""
    torch.manual_seed(0)
    config = SoundStormConfig(
        levels=2, codebook_size=8, semantic_vocab=8, dim=64, layers=2, heads=4, conv_kernel=3, dropout=0.0
    )
    model = SoundStorm(config)
    B, T = 4, 16
    semantic = torch.randint(0, 8, (B, T))
    # codes are a function of the semantic token and the level, as a codec's would be of the content
    codes = torch.stack([(semantic * 3 + 1) % 8, (semantic * 5 + 2) % 8], dim=1)
    batch = {
        "codes": codes,
        "semantic": semantic,
        "speakers": torch.zeros(B, T, dtype=torch.long),
        "lengths": torch.full((B,), T),
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        loss, _, _ = soundstorm_loss(model, batch, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for _ in range(20):
            loss, drawn, logits = soundstorm_loss(model, batch, generator)
            target = codes.gather(1, drawn.level[:, None, None].expand(-1, 1, T))[:, 0]
            correct += int((logits.argmax(-1) == target)[drawn.loss_mask].sum())
            total += int(drawn.loss_mask.sum())
    assert correct / total > 0.95


@pytest.mark.slow
def test_a_masked_frame_learns_from_its_visible_neighbours():
    """Level 0 holds runs of 5 equal codes, level 1 and the semantic track are noise: only the
    neighbours tell a masked level-0 code. The paper's mask and loss must teach that (the shipped
    model, on speech, has barely begun to: see docs/history/)."""
    torch.manual_seed(0)
    config = SoundStormConfig(
        levels=2, codebook_size=64, semantic_vocab=16, dim=64, layers=2, heads=2, conv_kernel=15, dropout=0.0
    )
    model = SoundStorm(config)
    rng = torch.Generator().manual_seed(1)

    def batch(B=16, T=100):
        runs = torch.randint(0, 64, (B, T // 5), generator=rng).repeat_interleave(5, dim=1)
        return {
            "codes": torch.stack([runs, torch.randint(0, 64, (B, T), generator=rng)], dim=1),
            "semantic": torch.randint(0, 16, (B, T), generator=rng),
            "speakers": torch.ones(B, T, dtype=torch.long),
            "lengths": torch.full((B,), T),
        }

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(600):
        loss, _, _ = soundstorm_loss(model, batch(), rng)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    test = batch()
    hidden_codes = test["codes"].clone()
    masked = torch.rand(16, 100, generator=rng) < 0.2
    hidden_codes[:, 0] = hidden_codes[:, 0].masked_fill(masked, config.mask_id)
    hidden_codes[:, 1] = config.mask_id
    with torch.no_grad():
        logits = model(hidden_codes, test["semantic"], test["speakers"], 0)
    accuracy = float((logits.argmax(-1) == test["codes"][:, 0])[masked].float().mean())
    assert accuracy > 0.6, accuracy  # chance: 1/64


@pytest.mark.parametrize("lengths", [[5], [1, 4]])
def test_loss_is_finite_for_short_items(lengths):
    model = SoundStorm(TINY)
    T = max(lengths)
    batch = {
        "codes": _codes(len(lengths), 3, T),
        "semantic": torch.zeros(len(lengths), T, dtype=torch.long),
        "speakers": torch.zeros(len(lengths), T, dtype=torch.long),
        "lengths": torch.tensor(lengths),
    }
    loss, _, _ = soundstorm_loss(model, batch)
    assert torch.isfinite(loss)
