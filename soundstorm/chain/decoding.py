"""SoundStorm decoding: MaskGIT-style confidence-based parallel decoding, level by level.

Levels go coarse to fine; level q gets `iterations[q]` forward passes (paper:
16 on the first level, 1 on each other). At iteration i of n, a cosine schedule
says how many of the level's tokens stay masked: ceil(N * cos(pi/2 * (i+1)/n)),
zero at the last iteration. Tokens are sampled at every masked position
(temperature annealed towards zero, top-k / top-p optional, the last iteration
of a level greedy); confidence is the probability of the sampled token, plus
Gumbel noise annealed to zero; the least confident stay masked for the next
iteration. Prompt tokens and kept tokens never change; finer levels stay masked
while a level is decoded, as in training.

Shapes: B batch, Q levels, T frames, K codebook size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from soundstorm.base.errors import InputError
from soundstorm.base.validate import check_temperature


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode; validated once by `check`."""

    iterations: tuple[int, ...] = (16, 1, 1, 1, 1, 1, 1, 1)  # the paper's (`paper(levels)`) for 8 levels
    temperature: float = 1.0  # at the first iteration of a level; annealed linearly to 0
    confidence_noise: float = 1.0  # scale of the Gumbel noise added to confidences, annealed to 0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    @classmethod
    def paper(cls, levels: int, **settings) -> DecodingOptions:
        """The paper's schedule for `levels` levels: 16 passes on the first, 1 on each finer one."""
        return cls(iterations=(PAPER_LEVEL1_PASSES,) + (1,) * (levels - 1), **settings)

    def check(self, levels: int) -> DecodingOptions:
        if len(self.iterations) < levels or any(n < 1 for n in self.iterations[:levels]):
            raise InputError(
                f"iterations must give at least 1 per level for {levels} levels, got {self.iterations}"
            )
        check_temperature(self.temperature)
        if self.confidence_noise < 0:
            raise InputError("confidence noise must be >= 0")
        if self.top_k is not None and self.top_k < 1:
            raise InputError("top-k must be >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError("top-p must be in (0, 1]")
        return self


PAPER_LEVEL1_PASSES = 16
OVERLAP_S = 2.0  # windowed decoding: seconds of the previous window given as prompt (at most a quarter)


@dataclass
class DecodingResult:
    codes: torch.Tensor  # [B, Q, T] from `decode`; [Q, T] of the target from `decode_long`, `decode_prompted`
    forward_passes: int
    per_level_passes: list[int] = field(default_factory=list)  # summed over windows
    windows: int = 1


@dataclass(frozen=True)
class PromptTokens:
    """One speaker's voice prompt as SoundStorm takes it: codes [Q, P], semantic tokens at the codec rate
    [P], and the speaker's label on the speaker track (1-based)."""

    codes: torch.Tensor
    semantic: torch.Tensor
    label: int


def overlap_frames(window: int, frame_rate: int, overlap_s: float = OVERLAP_S) -> int:
    """Frames of the previous window given as prompt to the next: `overlap_s`, at most a quarter window."""
    return min(int(overlap_s * frame_rate), window // 4)


def masked_count(total, iteration: int, iterations: int):
    """Tokens still masked after `iteration` (0-based) of `iterations`: the cosine schedule."""
    ratio = math.cos(math.pi / 2 * (iteration + 1) / iterations)
    return torch.ceil(total.float() * ratio).long() if iteration + 1 < iterations else torch.zeros_like(total)


def filter_logits(logits, top_k: int | None, top_p: float | None):
    """Keep the top-k and/or the smallest top-p nucleus; the rest get -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _sample(logits, temperature: float, options: DecodingOptions, generator):
    """Tokens [T] and their probabilities for one item's logits [T, K]."""
    logits = filter_logits(logits.float(), options.top_k, options.top_p)
    if temperature <= 0:
        tokens = logits.argmax(-1)
        probs = logits.softmax(-1)
    else:
        probs = (logits / temperature).softmax(-1)
        tokens = torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)[:, 0]
    return tokens, probs.gather(-1, tokens[:, None])[:, 0]


def _choose(logits, masked, length: int, temperature: float, noise: float, options, generator):
    """Sample one item's tokens [T] and confidences [T] (+inf where not masked)."""
    T = logits.shape[0]
    tokens = torch.zeros(T, dtype=torch.long, device=logits.device)
    confidence = torch.full((T,), float("inf"), device=logits.device)
    if length == 0:
        return tokens, confidence
    sampled, probs = _sample(logits[:length], temperature, options, generator)
    score = probs.clamp_min(1e-30).log()
    if noise > 0:
        uniform = torch.rand(length, generator=generator).to(logits.device).clamp(1e-9, 1 - 1e-9)
        score = score + noise * -torch.log(-torch.log(uniform))
    tokens[:length] = sampled
    confidence[:length] = score
    return tokens, confidence.masked_fill(~masked, float("inf"))


@torch.no_grad()
def decode(
    model,
    semantic,
    speakers,
    lengths,
    prompt_codes=None,
    prompt_lengths=None,
    options: DecodingOptions = DecodingOptions(),
    seeds: list[int] | None = None,
    on_level=None,
) -> DecodingResult:
    """Fill every non-prompt token of [B, Q, T].

    semantic, speakers: [B, T] at the codec frame rate; lengths [B]; prompt_codes
    [B, Q, T] holding the prompt in frames < prompt_lengths[b] (other frames ignored).
    Item b draws from its own generator seeded `seeds[b]` (default: options.seed + b),
    so a batch decodes exactly as its items would one by one. `on_level(q)` is
    called when level q is done (progress reporting).
    """
    config = model.config
    options.check(config.levels)
    B, T = semantic.shape
    device = semantic.device
    seeds = seeds if seeds is not None else [options.seed + b for b in range(B)]
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    lengths = torch.as_tensor(lengths, device=device)
    frames = torch.arange(T, device=device)[None]
    valid = frames < lengths[:, None]  # [B, T]
    if prompt_lengths is None:
        prompt_lengths = torch.zeros(B, dtype=torch.long, device=device)
    in_prompt = frames < torch.as_tensor(prompt_lengths, device=device)[:, None]
    key_mask = None if bool(valid.all()) else valid  # no padding: attention without a mask is faster
    codes = torch.full((B, config.levels, T), config.mask_id, dtype=torch.long, device=device)
    if prompt_codes is not None:
        codes = torch.where(in_prompt[:, None, :], prompt_codes.to(device), codes)
    passes, per_level = 0, []
    for level in range(config.levels):
        n = options.iterations[level]
        masked = valid & ~in_prompt  # [B, T]: everything of this level but the prompt starts masked
        total = masked.sum(dim=1)  # [B]
        for i in range(n):
            progress, last = i / n, i + 1 == n
            temperature = 0.0 if last else options.temperature * (1 - progress)
            noise = 0.0 if last else options.confidence_noise * (1 - progress)
            logits = model.level_logits(model.hidden(codes, semantic, speakers, key_mask), level)  # [B, T, K]
            passes += 1
            picks = [
                _choose(logits[b], masked[b], int(lengths[b]), temperature, noise, options, generators[b])
                for b in range(B)
            ]
            tokens = torch.stack([p[0] for p in picks])  # [B, T]
            confidence = torch.stack([p[1] for p in picks])  # [B, T], +inf where fixed
            # The least confident of the masked positions stay masked; the rest are revealed and kept.
            rank = confidence.argsort(dim=1, stable=True).argsort(dim=1)  # 0 = least confident
            still_masked = masked & (rank < masked_count(total, i, n)[:, None])
            reveal = masked & ~still_masked
            codes[:, level] = torch.where(reveal, tokens, codes[:, level])
            masked = still_masked
        per_level.append(n)
        if on_level is not None:
            on_level(level)
    return DecodingResult(codes=codes, forward_passes=passes, per_level_passes=per_level)


@torch.no_grad()
def decode_long(
    model,
    semantic,
    speakers,
    prompt_codes,
    prompt_semantic,
    prompt_speakers,
    window: int,
    overlap: int,
    options: DecodingOptions = DecodingOptions(),
) -> DecodingResult:
    """Decode one item longer than the model's trained window, window by window.

    semantic, speakers: [T] of the target; prompt_*: the voice prompt(s) [Q, P], [P], [P].
    Each window is [voice prompt, tail of what is already decoded (`overlap` frames), new frames]:
    the tail is given as prompt, so a window continues the previous one's tokens exactly where it
    stopped and the codes join without a seam; the codec then decodes the whole sequence at once.
    """
    Q, P = prompt_codes.shape
    T = semantic.shape[0]
    step = window - P - overlap
    if step < 1:
        raise InputError(f"window {window} must exceed the prompt ({P}) plus overlap ({overlap}) frames")
    out = torch.full((Q, T), model.config.mask_id, dtype=torch.long, device=prompt_codes.device)
    done, passes, windows, per_level = 0, 0, 0, [0] * model.config.levels
    while done < T:
        tail = min(overlap, done)
        new = min(step, T - done)
        span = slice(done - tail, done + new)
        codes = torch.cat([prompt_codes, out[:, span]], dim=1)[None]  # [1, Q, P + tail + new]
        sem = torch.cat([prompt_semantic, semantic[span]])[None]
        spk = torch.cat([prompt_speakers, speakers[span]])[None]
        n = codes.shape[-1]
        result = decode(
            model,
            sem,
            spk,
            torch.tensor([n]),
            codes,
            torch.tensor([P + tail]),
            dataclasses.replace(options, seed=options.seed + windows),
        )
        out[:, done : done + new] = result.codes[0, :, P + tail :]
        passes += result.forward_passes
        per_level = [a + b for a, b in zip(per_level, result.per_level_passes, strict=True)]
        done += new
        windows += 1
    return DecodingResult(codes=out, forward_passes=passes, per_level_passes=per_level, windows=windows)


def _prompt_block(prompts: list[PromptTokens], T: int, window: int, device):
    """The voice prompts as one block before a target of T frames: (windowed, codes [Q, P], semantic [P],
    speaker track [P]). Past the window each prompt is cut so that together they take at most half of it."""
    windowed = sum(p.codes.shape[1] for p in prompts) + T > window
    keep = (window // 2) // len(prompts) if windowed else None
    p_codes = torch.cat([p.codes[:, :keep] for p in prompts], dim=1).to(device)  # [Q, P]
    p_sem = torch.cat([p.semantic[: p.codes[:, :keep].shape[1]] for p in prompts]).to(device)  # [P]
    p_track = torch.cat(
        [torch.full((p.codes[:, :keep].shape[1],), p.label, dtype=torch.long) for p in prompts]
    ).to(device)
    return windowed, p_codes, p_sem, p_track


@torch.no_grad()
def decode_prompted(
    model,
    semantic,
    speakers,
    prompts: list[PromptTokens],
    options: DecodingOptions,
    overlap: int,
    on_level=None,
) -> DecodingResult:
    """The one decoding entry of the chain, its evaluation and its benchmarks: [prompts | target] -> the
    target's codes [Q, T].

    semantic, speakers: [T] of the target at the codec rate. When the prompts and the target fit the
    model's window, one call of `decode`; otherwise window by window (`decode_long`, `overlap` frames
    carried over), each prompt then cut so that together they take at most half a window.
    """
    window, device, T = model.config.window, semantic.device, semantic.shape[0]
    windowed, p_codes, p_sem, p_track = _prompt_block(prompts, T, window, device)
    if windowed:
        return decode_long(model, semantic, speakers, p_codes, p_sem, p_track, window, overlap, options)
    Q, P = p_codes.shape
    result = decode(
        model,
        torch.cat([p_sem, semantic])[None],
        torch.cat([p_track, speakers])[None],
        torch.tensor([P + T], device=device),
        torch.cat([p_codes, torch.zeros(Q, T, dtype=torch.long, device=device)], dim=1)[None],
        torch.tensor([P], device=device),
        options,
        on_level=on_level,
    )
    return dataclasses.replace(result, codes=result.codes[0, :, P:])


def _posterior_pass(model, p_codes, p_sem, p_track, semantic, speakers):
    """One forward pass over [prompt | target with every code hidden]: level 1's distribution [T, K]."""
    Q, T = p_codes.shape[0], semantic.shape[0]
    hidden_codes = torch.full((Q, T), model.config.mask_id, dtype=torch.long, device=semantic.device)
    hidden = model.hidden(
        torch.cat([p_codes, hidden_codes], dim=1)[None],
        torch.cat([p_sem, semantic])[None],
        torch.cat([p_track, speakers])[None],
    )
    return model.level_logits(hidden, 0)[0, p_codes.shape[1] :].float().softmax(-1)


@torch.no_grad()
def first_level_posterior(model, semantic, speakers, prompts: list[PromptTokens], context: int = 100):
    """SoundStorm's level-1 distribution [T, K] with every code of the target hidden (the first pass of
    `decode`), and the passes run: what a decoder that `renders_posterior` turns into audio. No sampling,
    so no seed.

    semantic, speakers: [T] of the target at the codec rate. Past the model's window, the prompts are cut
    to half a window together (as in `decode_prompted`) and the target goes window by window, each with
    `context` frames of semantic tokens on either side that it reads and does not keep.
    """
    window, T = model.config.window, semantic.shape[0]
    windowed, p_codes, p_sem, p_track = _prompt_block(prompts, T, window, semantic.device)
    if not windowed:
        return _posterior_pass(model, p_codes, p_sem, p_track, semantic, speakers), 1
    span = window - p_codes.shape[1]
    context = min(context, span // 4)
    step = span - 2 * context
    pieces, passes = [], 0
    for start in range(0, T, step):
        lo, hi = max(0, start - context), min(T, start + step + context)
        probs = _posterior_pass(model, p_codes, p_sem, p_track, semantic[lo:hi], speakers[lo:hi])
        pieces.append(probs[start - lo : start - lo + min(step, T - start)])
        passes += 1
    return torch.cat(pieces), passes
