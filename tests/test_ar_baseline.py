"""The autoregressive baseline: the KV cache changes nothing but speed; teacher forcing is causal."""

from __future__ import annotations

import torch

from soundstorm.models.ar_baseline import ARBaseline, ARConfig, ar_loss


def tiny():
    torch.manual_seed(0)
    return ARBaseline(
        ARConfig(levels=2, codebook_size=16, semantic_vocab=8, dim=32, layers=2, heads=2)
    ).eval()


def test_kv_cache_gives_the_same_tokens_as_recomputing():
    model = tiny()
    T, P = 7, 3
    semantic = torch.randint(0, 8, (T,))
    speakers = torch.ones(T, dtype=torch.long)
    prompt = torch.randint(0, 16, (2, P))
    cached, passes = model.generate(semantic, speakers, prompt, temperature=0, use_cache=True)
    plain, _ = model.generate(semantic, speakers, prompt, temperature=0, use_cache=False)
    assert cached.shape == (2, T - P) and passes == (T - P) * 2
    assert torch.equal(cached, plain)
    sampled, _ = model.generate(semantic, speakers, prompt, temperature=1.0, seed=3)
    again, _ = model.generate(semantic, speakers, prompt, temperature=1.0, seed=3)
    assert torch.equal(sampled, again)


def test_greedy_generation_matches_teacher_forcing_argmax():
    # Feeding the generated tokens back through the full causal forward must reproduce each choice.
    model = tiny()
    T = 5
    semantic, speakers = torch.randint(0, 8, (T,)), torch.ones(T, dtype=torch.long)
    codes, _ = model.generate(semantic, speakers, torch.zeros(2, 0, dtype=torch.long), temperature=0)
    logits = model(codes[None], semantic[None], speakers[None])  # [1, N, K]
    assert torch.equal(logits[0].argmax(-1), codes.T.reshape(-1))


def test_loss_skips_prompt_and_padding():
    model = tiny()
    codes = torch.randint(0, 16, (2, 2, 6))
    semantic, speakers = torch.randint(0, 8, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    loss = ar_loss(model, codes, semantic, speakers, torch.tensor([6, 4]), torch.tensor([2, 0]))
    assert torch.isfinite(loss)
    # Changing tokens past an item's length (padding) never changes the loss... except through
    # being inputs of later padded positions, which the loss ignores.
    changed = codes.clone()
    changed[1, :, 5] = (changed[1, :, 5] + 1) % 16
    assert torch.allclose(
        loss, ar_loss(model, changed, semantic, speakers, torch.tensor([6, 4]), torch.tensor([2, 0]))
    )


def test_a_batch_that_is_all_prompt_costs_nothing_and_is_no_nan():
    model = tiny()
    codes = torch.randint(0, 16, (2, 2, 6))
    semantic, speakers = torch.randint(0, 8, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    loss = ar_loss(model, codes, semantic, speakers, torch.tensor([6, 4]), torch.tensor([6, 4]))
    assert loss.item() == 0.0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_each_position_is_read_by_its_own_levels_head():
    # The per-level matmuls equal the definition: position n uses head n % Q, in any order of positions.
    model = tiny()
    hidden = torch.randn(2, 5, 32)
    positions = torch.tensor([7, 2, 3, 0, 5])
    expected = torch.stack(
        [model.norm(hidden[:, i]) @ model.heads[int(p) % 2] for i, p in enumerate(positions)], dim=1
    )
    assert torch.allclose(model.logits(hidden, positions), expected, atol=1e-5)
