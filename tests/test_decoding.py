"""decoding.py: schedule, filters, and the decoding loop on a random-init model."""

from __future__ import annotations

import pytest
import torch

from soundstorm.base.errors import InputError
from soundstorm.chain.decoding import DecodingOptions, decode, filter_logits, masked_count
from soundstorm.models.soundstorm import SoundStorm, SoundStormConfig

TINY = SoundStormConfig(
    levels=3, codebook_size=16, semantic_vocab=10, dim=32, layers=2, heads=2, conv_kernel=5, dropout=0.0
)
OPTIONS = DecodingOptions(iterations=(4, 2, 1), seed=3)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SoundStorm(TINY).eval()


def _inputs(B=3, T=12, lengths=(12, 9, 5)):
    g = torch.Generator().manual_seed(1)
    semantic = torch.randint(0, 10, (B, T), generator=g)
    speakers = torch.ones(B, T, dtype=torch.long)
    prompt = torch.randint(0, 16, (B, 3, T), generator=g)
    return semantic, speakers, torch.tensor(lengths), prompt


def test_cosine_schedule_hand_worked():
    total = torch.tensor([10])
    # ceil(10 * cos(pi/2 * k/4)) for k = 1, 2, 3 -> 10, 8, 4; the last iteration leaves none
    assert [int(masked_count(total, i, 4)) for i in range(4)] == [10, 8, 4, 0]
    assert int(masked_count(total, 0, 1)) == 0


def test_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[True, False, False, True]]
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = ~torch.isinf(filter_logits(probs, None, 0.7))
    assert kept.tolist() == [[True, True, False, False]]


def test_every_token_filled_prompt_unchanged_and_passes_counted(model):
    semantic, speakers, lengths, prompt = _inputs()
    prompt_lengths = torch.tensor([4, 0, 2])
    result = decode(model, semantic, speakers, lengths, prompt, prompt_lengths, OPTIONS)
    assert result.forward_passes == sum(OPTIONS.iterations) == 7
    codes = result.codes
    for b, (n, p) in enumerate(zip(lengths.tolist(), prompt_lengths.tolist(), strict=True)):
        assert (codes[b, :, :n] < TINY.codebook_size).all(), "every non-prompt token filled"
        assert torch.equal(codes[b, :, :p], prompt[b, :, :p]), "prompt unchanged"


def test_same_seed_same_tokens_and_different_seed_differs(model):
    semantic, speakers, lengths, prompt = _inputs()
    a = decode(model, semantic, speakers, lengths, options=OPTIONS).codes
    b = decode(model, semantic, speakers, lengths, options=OPTIONS).codes
    c = decode(
        model, semantic, speakers, lengths, options=DecodingOptions(iterations=(4, 2, 1), seed=4)
    ).codes
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batch_equals_one_by_one(model):
    semantic, speakers, lengths, prompt = _inputs()
    prompt_lengths = torch.tensor([3, 1, 0])
    batch = decode(model, semantic, speakers, lengths, prompt, prompt_lengths, OPTIONS).codes
    for b, n in enumerate(lengths.tolist()):
        alone = decode(
            model,
            semantic[b : b + 1, :n],
            speakers[b : b + 1, :n],
            lengths[b : b + 1],
            prompt[b : b + 1, :, :n],
            prompt_lengths[b : b + 1],
            OPTIONS,
            seeds=[OPTIONS.seed + b],
        ).codes
        assert torch.equal(batch[b, :, :n], alone[0])


def test_kept_tokens_never_change_and_finer_levels_wait(model, monkeypatch):
    """Record the codes the model sees at every pass: revealed tokens stay; finer levels stay masked."""
    semantic, speakers, lengths, prompt = _inputs(B=1, T=10, lengths=(10,))
    seen = []
    original = model.hidden

    def spy(codes, *args):
        seen.append(codes.clone())
        return original(codes, *args)

    monkeypatch.setattr(model, "hidden", spy)
    result = decode(model, semantic, speakers, lengths, options=OPTIONS)
    level_of_pass = [0] * 4 + [1] * 2 + [2]
    for before, after, level in zip(seen, seen[1:] + [result.codes], level_of_pass, strict=True):
        revealed = before != TINY.mask_id
        assert torch.equal(after[revealed], before[revealed])
        assert (before[:, level + 1 :] == TINY.mask_id).all()
    # the first level reveals gradually: 10 masked -> 10, 8, 4, 0 still masked after each pass
    masked_level0 = [int((s[:, 0] == TINY.mask_id).sum()) for s in seen[:4]] + [
        int((result.codes[:, 0] == TINY.mask_id).sum())
    ]
    assert masked_level0 == [10, 10, 8, 4, 0]


def test_bad_options_are_refused(model):
    semantic, speakers, lengths, _ = _inputs()
    with pytest.raises(InputError):
        decode(model, semantic, speakers, lengths, options=DecodingOptions(iterations=(4, 0, 1)))
    with pytest.raises(InputError):
        decode(model, semantic, speakers, lengths, options=DecodingOptions(iterations=(4, 1)))
    with pytest.raises(InputError):
        decode(model, semantic, speakers, lengths, options=DecodingOptions(iterations=(1, 1, 1), top_p=0.0))


def test_long_items_decode_window_by_window(model):
    from soundstorm.chain.decoding import decode_long

    g = torch.Generator().manual_seed(5)
    T, P = 30, 4
    semantic = torch.randint(0, 10, (T,), generator=g)
    speakers = torch.ones(T, dtype=torch.long)
    prompt = torch.randint(0, 16, (3, P), generator=g)
    options = DecodingOptions(iterations=(2, 1, 1), seed=1)
    result = decode_long(
        model, semantic, speakers, prompt, semantic[:P], speakers[:P], window=14, overlap=3, options=options
    )
    assert result.codes.shape == (3, T)
    assert (result.codes < TINY.codebook_size).all()
    windows = result.windows
    assert windows == -(-T // (14 - P - 3))  # ceil(30 / 7) = 5 windows
    assert result.per_level_passes == [windows * n for n in options.iterations]
    assert result.forward_passes == windows * sum(options.iterations)
    again = decode_long(
        model, semantic, speakers, prompt, semantic[:P], speakers[:P], window=14, overlap=3, options=options
    )
    assert torch.equal(result.codes, again.codes)
    with pytest.raises(InputError):
        decode_long(
            model,
            semantic,
            speakers,
            prompt,
            semantic[:P],
            speakers[:P],
            window=7,
            overlap=3,
            options=options,
        )


def test_the_paper_schedule():
    assert DecodingOptions.paper(4, seed=2) == DecodingOptions(iterations=(16, 1, 1, 1), seed=2)
    assert DecodingOptions.paper(1).iterations == (16,)


def test_decode_prompted_is_one_decode_within_the_window_and_windows_past_it(model):
    """The chain's one entry: [prompts | target] decodes exactly as a hand-assembled `decode` call when
    it fits the window, and window by window (prompts cut to half a window in all) when it does not."""
    from dataclasses import replace

    from soundstorm.chain.decoding import PromptTokens, decode_long, decode_prompted

    g = torch.Generator().manual_seed(7)
    T, P1, P2 = 10, 3, 4
    semantic = torch.randint(0, 10, (P1 + P2 + T,), generator=g)
    track = torch.tensor([1] * P1 + [2] * P2 + [1, 2] * (T // 2))
    c1, c2 = torch.randint(0, 16, (3, P1), generator=g), torch.randint(0, 16, (3, P2), generator=g)
    prompts = [PromptTokens(c1, semantic[:P1], 1), PromptTokens(c2, semantic[P1 : P1 + P2], 2)]
    options = DecodingOptions(iterations=(3, 1, 1), seed=4)
    got = decode_prompted(model, semantic[P1 + P2 :], track[P1 + P2 :], prompts, options, overlap=2)
    given = torch.cat([c1, c2, torch.zeros(3, T, dtype=torch.long)], dim=1)[None]
    by_hand = decode(
        model, semantic[None], track[None], torch.tensor([P1 + P2 + T]), given, torch.tensor([7]), options
    )
    assert got.codes.shape == (3, T) and torch.equal(got.codes, by_hand.codes[0, :, P1 + P2 :])
    assert got.windows == 1 and got.per_level_passes == [3, 1, 1]

    small = replace(model.config, window=14)  # 7 prompt frames + 10 > 14: windowed, prompts cut to 3 each
    model.config = small
    long = decode_prompted(model, semantic[P1 + P2 :], track[P1 + P2 :], prompts, options, overlap=2)
    cut = torch.cat([c1[:, :3], c2[:, :3]], dim=1)
    p_sem = torch.cat([semantic[:3], semantic[P1 : P1 + 3]])
    expected = decode_long(
        model,
        semantic[P1 + P2 :],
        track[P1 + P2 :],
        cut,
        p_sem,
        torch.tensor([1, 1, 1, 2, 2, 2]),
        14,
        2,
        options,
    )
    assert long.windows > 1 and torch.equal(long.codes, expected.codes)


def _prompted_target(seed: int, T: int, P: int = 4):
    """A 3-level prompt of P frames and a target of T frames: (target semantic [T], track [T], prompt)."""
    from soundstorm.chain.decoding import PromptTokens

    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, 10, (P + T,), generator=g)
    prompt = PromptTokens(torch.randint(0, 16, (3, P), generator=g), semantic[:P], 1)
    return semantic[P:], torch.ones(T, dtype=torch.long), prompt


def test_the_posterior_is_the_first_pass_whose_argmax_one_greedy_pass_keeps(model):
    """`first_level_posterior` is level 1's distribution with every target code hidden: rows sum to one,
    no seed enters it, and a single (greedy) level-1 pass of `decode_prompted` keeps its argmax."""
    from soundstorm.chain.decoding import decode_prompted, first_level_posterior

    T = 11
    semantic, track, prompt = _prompted_target(5, T)
    probs, passes = first_level_posterior(model, semantic, track, [prompt])
    assert probs.shape == (T, 16) and passes == 1
    assert torch.allclose(probs.sum(-1), torch.ones(T), atol=1e-5) and (probs >= 0).all()
    again, _ = first_level_posterior(model, semantic, track, [prompt])
    assert torch.equal(probs, again)
    one_pass = decode_prompted(model, semantic, track, [prompt], DecodingOptions((1, 1, 1), seed=9), 2)
    assert torch.equal(one_pass.codes[0], probs.argmax(-1))


def test_the_posterior_goes_window_by_window_past_the_window(model):
    """Past the window each piece reads semantic context on both sides and keeps only its own frames:
    every frame comes out once, as a distribution, from one pass a window."""
    from dataclasses import replace

    from soundstorm.chain.decoding import first_level_posterior

    T = 40
    semantic, track, prompt = _prompted_target(6, T)
    whole, _ = first_level_posterior(model, semantic, track, [prompt])
    model.config = replace(model.config, window=24)  # the 4 prompt frames leave 20 a window
    pieces, passes = first_level_posterior(model, semantic, track, [prompt], context=5)
    assert pieces.shape == (T, 16) and passes == 4  # 10 new frames a window (20 - 2 x 5 of context)
    assert torch.allclose(pieces.sum(-1), torch.ones(T), atol=1e-5)
    assert not torch.allclose(pieces, whole)  # the windows read less than the whole
