"""models/t2s.py with a tiny random-init T5: the cap, the floor, seeds, batching, turn boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_t2s_config

from soundstorm.models.t2s import END, T2S

TINY = tiny_t2s_config()


@pytest.fixture(scope="module")
def t2s():
    return T2S.random_init(TINY, seed=0)


TEXTS = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]


def _end_biased(bias: float) -> T2S:
    """A tiny T2S whose `end` logit gets `bias` added (1e4: always wants to end; -1e4: never)."""
    model = T2S.random_init(TINY, seed=0)
    head = model.model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[END] = bias
    model.model.lm_head = biased
    return model


def test_generation_stops_at_the_cap(t2s):
    for text, out in zip(TEXTS, t2s.generate(TEXTS, temperature=1.0, seed=1), strict=True):
        assert len(out.semantic) + len(out.turn_starts) < t2s.cap(text) <= 3 * len(text) + 1
        assert all(0 <= s < TINY.semantic_vocab for s in out.semantic)


def test_an_eager_end_waits_for_the_floor():
    """A model that always wants `end` at once still speaks floor(text) tokens, and stops there."""
    eager = _end_biased(1e4)
    for text, out in zip(TEXTS, eager.generate(TEXTS, temperature=1.0, seed=1), strict=True):
        assert len(out.semantic) == eager.floor(text) == int(TINY.min_frames_per_piece * len(text))
        assert not out.capped
    dialogue = eager.generate([TEXTS[2]], turns=[2], seed=1)[0]  # its turns come before any end
    assert len(dialogue.turn_starts) == 2
    assert len(dialogue.semantic) + 2 >= eager.floor(TEXTS[2], 2)


def test_the_prompts_transcript_counts_for_neither_floor_nor_cap():
    """With a prompt transcript before the text, only the text to speak sets the floor and the cap
    (counting the transcript made outputs ~1.4x too long: the floor forced frames for words never said)."""
    eager = _end_biased(1e4)  # ends as soon as the floor lets it
    transcript, text = [20, 21, 22, 23, 24, 25, 26, 27, 3], [5, 6, 7]
    (out,) = eager.generate(
        [transcript + text], prompt_semantic=[1, 2], seed=1, prompt_pieces=len(transcript)
    )
    assert len(out.semantic) == eager.floor(text) == int(TINY.min_frames_per_piece * len(text))
    (counted,) = eager.generate([transcript + text], prompt_semantic=[1, 2], seed=1)
    assert len(counted.semantic) == eager.floor(transcript + text) > len(out.semantic)
    silent = _end_biased(-1e4)  # never wants to end: stops at the text's own cap
    (capped,) = silent.generate([transcript + text], seed=1, prompt_pieces=len(transcript))
    assert capped.capped and len(capped.semantic) + 1 == silent.cap(text)


def test_the_floor_stays_under_the_cap(t2s):
    for pieces in range(0, 30):
        text = list(range(5, 5 + pieces))
        for turns in (0, 1, 3):
            assert t2s.floor(text, turns) < t2s.cap(text, turns) - 1


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_stepper_samples_what_generate_samples(seed):
    """T5Stepper (token by token, its own cache) against `transformers`' `generate()` on the same weights,
    guards, temperature, top-k and seed: the same tokens, and each step's logits equal to float rounding."""
    from transformers import LogitsProcessorList

    from soundstorm.models.t2s import TURN, _Guards
    from soundstorm.models.t5_step import T5Stepper

    t2s = T2S.random_init(TINY, seed=seed)
    text, prefix, turns = [5, 6, 7, 8, 9, 10], [0, 3 + seed, 4], 2
    cap, floor = t2s.cap(text, turns), t2s.floor(text, turns)
    for temperature, top_k in ((1.0, None), (0.8, 5), (0.0, None)):
        guards = _Guards(TINY, len(prefix), [turns], [cap], [floor])
        torch.manual_seed(seed)
        reference = t2s.model.generate(
            input_ids=torch.tensor([t2s.input_ids(text)]),
            decoder_input_ids=torch.tensor([prefix]),
            max_new_tokens=cap,
            do_sample=temperature > 0,
            temperature=max(temperature, 1e-5),
            top_k=top_k,
            logits_processor=LogitsProcessorList([guards]),
            use_cache=True,
        )[0, len(prefix) :].tolist()
        torch.manual_seed(seed)
        stepped = T5Stepper(t2s.model).sample(
            t2s.input_ids(text), prefix, cap, guards.stepper(), END, temperature, top_k
        )
        assert stepped == reference
        assert stepped.count(TURN) == turns and stepped[0] == TURN
    # the logits of a whole forced sequence, step by step, against one teacher-forced forward pass
    sequence = prefix + stepped
    seen = []
    T5Stepper(t2s.model).sample(
        t2s.input_ids(text), sequence, 1, lambda scores, *_: seen.append(scores.clone()), END, 0.0
    )
    with torch.no_grad():
        logits = t2s.model(
            input_ids=torch.tensor([t2s.input_ids(text)]), decoder_input_ids=torch.tensor([sequence])
        ).logits[0, -1]
    assert torch.allclose(seen[0], logits, atol=1e-5)


def test_the_diagonal_penalty_is_zero_on_the_diagonal_and_grows_off_it():
    from pipelines.stages.t2s import diagonal_penalty

    weights = diagonal_penalty(torch.tensor([4.0, 2.0]), torch.tensor([8.0, 3.0]), 4, 8, sigma=0.4)
    assert weights.shape == (2, 8, 4)
    assert torch.all(weights[0, 2 * torch.arange(4), torch.arange(4)] == 0)  # t/T == n/N
    row = weights[0, 0]  # the first decoder position: cheapest at the first text position
    assert torch.all(row[1:] > row[:-1])
    assert torch.all(weights[1, 3:] == 0) and torch.all(weights[1, :, 2:] == 0)  # padding costs nothing
    assert torch.all((weights >= 0) & (weights < 1))


def _attention(dec: int, enc: int, diagonal: bool) -> torch.Tensor:
    if diagonal:
        a = torch.zeros(1, 4, dec, enc)
        a[0, :, torch.arange(dec), torch.arange(dec) * enc // dec] = 1
    else:
        a = torch.zeros(1, 4, dec, enc)
        a[0, :, torch.arange(dec), enc - 1 - torch.arange(dec) * enc // dec] = 1
    return a


def test_guided_attention_prefers_a_monotonic_alignment_and_ignores_other_heads():
    from pipelines.stages.t2s import guided_attention_loss

    batch = {
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "decoder_input_ids": torch.tensor([[0] + [7] * 9]),
    }
    diagonal = guided_attention_loss((_attention(10, 5, True),) * 2, batch, sigma=0.4, heads=2)
    reverse = guided_attention_loss((_attention(10, 5, False),) * 2, batch, sigma=0.4, heads=2)
    assert 0 <= float(diagonal) < 0.05 < float(reverse) < 1
    mixed = _attention(10, 5, True)
    mixed[:, 2:] = _attention(10, 5, False)[:, 2:]  # heads 3 and 4 are free to look anywhere
    assert torch.isclose(guided_attention_loss((mixed,), batch, 0.4, heads=2), diagonal)
    assert guided_attention_loss((mixed,), batch, 0.4, heads=None) > diagonal


def test_guided_attention_trains_the_cross_attention_towards_the_diagonal():
    """A tiny T5's cross-attention, trained on the penalty alone for a few steps, moves onto the diagonal."""
    from pipelines.stages.t2s import guided_attention_loss

    model = T2S.random_init(TINY, seed=0).model.train()
    model.set_attn_implementation("eager")  # as the T2S stage does when the penalty is on
    batch = {
        "input_ids": torch.randint(TINY.text_offset, TINY.vocab_size, (2, 12)),
        "attention_mask": torch.ones(2, 12, dtype=torch.long),
        "decoder_input_ids": torch.cat(
            [torch.zeros(2, 1, dtype=torch.long), torch.randint(3, 50, (2, 29))], 1
        ),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(**batch, output_attentions=True)
        loss = guided_attention_loss(out.cross_attentions, batch, 0.4, heads=2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_the_stepper_adds_the_absolute_positions_the_model_was_trained_with():
    """`absolute_positions`: the stepper's logits at each decoder position equal a teacher-forced forward
    pass through `with_positions`, and differ from the same weights without them."""
    import dataclasses

    from soundstorm.models.t2s import with_positions
    from soundstorm.models.t5_step import T5Stepper

    config = dataclasses.replace(TINY, absolute_positions=True)
    t2s = T2S.random_init(config, seed=3)
    assert t2s.stepper.positions
    text, sequence = t2s.input_ids([5, 6, 7, 8, 9, 10]), [0, 4, 9, 2, 7, 7, 11]
    with torch.no_grad():
        batch = {"input_ids": torch.tensor([text]), "decoder_input_ids": torch.tensor([sequence])}
        forward = t2s.model(**with_positions(t2s.model, batch)).logits[0]
        plain = t2s.model(**batch).logits[0]
    stepper = T5Stepper(t2s.model, positions=True)
    for length in (1, 4, len(sequence)):
        seen: list[torch.Tensor] = []
        stepper.sample(
            text, sequence[:length], 1, lambda scores, *_, into=seen: into.append(scores.clone()), END, 0.0
        )
        assert torch.allclose(seen[0], forward[length - 1], atol=1e-5)
        assert not torch.allclose(seen[0], plain[length - 1], atol=1e-5)


def test_length_guards_fit_the_frames_per_piece_of_the_training_singles():
    from types import SimpleNamespace

    from pipelines.stages.t2s import length_guards

    rng = np.random.default_rng(0)
    singles = [
        {"kind": "single", "semantic": (0, int(n * r)), "text_ids": (0, int(n))}
        for n, r in zip(rng.integers(20, 80, 300), rng.uniform(1.2, 2.0, 300), strict=True)
    ]
    dialogue = {"kind": "dialogue", "semantic": (0, 5000), "text_ids": (0, 10)}  # ignored: pauses, turns
    guards = length_guards(SimpleNamespace(items=[*singles, dialogue]))
    ratios = [r["semantic"][1] / r["text_ids"][1] for r in singles]
    assert 0.5 * min(ratios) <= guards["min_frames_per_piece"] < min(ratios)
    assert max(ratios) < guards["max_frames_per_piece"] <= 2 * max(ratios)
    assert length_guards(SimpleNamespace(items=[dialogue])) == {}  # nothing to fit: the defaults stay
