"""The autoregressive baseline SoundStorm is measured against (AudioLM-style acoustic generation).

A decoder-only Transformer of SoundStorm's width and depth predicts the codec's
RVQ tokens one at a time, frame by frame and, within a frame, level by level
(the flattened order of AudioLM's acoustic stages and of VALL-E's... coarse-to-fine
within each frame). It sees the same conditioning as SoundStorm: the voice
prompt's codes as a teacher-forced prefix, and the semantic token and speaker
label of the frame each position belongs to (added to its input, so that the
baseline needs no attention-learned alignment and trains on the same budget).
Generation uses a KV cache: one token per forward pass, T x Q passes for T
frames, against SoundStorm's sum of iterations per level.

Shapes: B batch, T frames, Q levels, N = T x Q flattened positions, D width, H heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundstorm.models.conformer import apply_rotary, rotary_tables


@dataclass
class ARConfig:
    levels: int = 4
    codebook_size: int = 1024
    semantic_vocab: int = 512
    max_speakers: int = 8
    dim: int = 256
    layers: int = 6
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.0

    @property
    def bos_id(self) -> int:
        """The input token at position 0 (nothing before it)."""
        return self.levels * self.codebook_size


class CausalBlock(nn.Module):
    """Pre-norm causal self-attention (rotary, SDPA, optional KV cache) and a feed-forward."""

    def __init__(self, c: ARConfig):
        super().__init__()
        self.heads = c.heads
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim, bias=False)
        self.out = nn.Linear(c.dim, c.dim)
        self.ff = nn.Sequential(
            nn.Linear(c.dim, c.ff_mult * c.dim),
            nn.GELU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.ff_mult * c.dim, c.dim),
        )

    def forward(self, x, cos, sin, cache: dict | None = None):
        B, N, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # [B, H, N, Dh]
        causal = True
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                causal = N > 1  # one new query attends to every cached key
            cache["k"], cache["v"] = k, v
        if causal and k.shape[2] != N:
            raise ValueError("a multi-token step on a non-empty cache is not supported")
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # [B, H, N, Dh]
        x = x + self.out(attended.transpose(1, 2).reshape(B, N, D))
        return x + self.ff(self.norm2(x))


class ARBaseline(nn.Module):
    def __init__(self, config: ARConfig):
        super().__init__()
        self.config = c = config
        self.token_embedding = nn.Embedding(c.levels * c.codebook_size + 1, c.dim)  # + BOS
        self.level_embedding = nn.Embedding(c.levels, c.dim)
        self.semantic_embedding = nn.Embedding(c.semantic_vocab + 1, c.dim)
        self.speaker_embedding = nn.Embedding(c.max_speakers + 1, c.dim)
        self.blocks = nn.ModuleList(CausalBlock(c) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)
        self.heads = nn.Parameter(torch.randn(c.levels, c.dim, c.codebook_size) / math.sqrt(c.dim))

    def flat_inputs(self, codes):
        """codes [B, Q, T] -> input ids [B, N]: BOS, then each token (level-offset) shifted by one."""
        B, Q, T = codes.shape
        ids = codes + torch.arange(Q, device=codes.device)[None, :, None] * self.config.codebook_size
        ids = ids.transpose(1, 2).reshape(B, T * Q)  # frame-major: t0q0, t0q1, ..., t1q0, ...
        bos = torch.full((B, 1), self.config.bos_id, dtype=torch.long, device=codes.device)
        return torch.cat([bos, ids[:, :-1]], dim=1)

    def embed(self, ids, positions, semantic, speakers):
        """ids [B, n] at flattened `positions` [n]; semantic, speakers [B, T] per frame -> [B, n, D]."""
        Q = self.config.levels
        frames = positions // Q
        return (
            self.token_embedding(ids)
            + self.level_embedding(positions % Q)[None]
            + self.semantic_embedding(semantic[:, frames])
            + self.speaker_embedding(speakers[:, frames])
        )

    def logits(self, hidden, positions):
        """hidden [B, n, D] at `positions` [n] -> [B, n, K], each position with its level's head.

        One matmul per level over that level's positions: gathering a [D, K] head per position
        would build an n x D x K tensor (gigabytes for a training batch).
        """
        hidden = self.norm(hidden)
        levels = positions % self.config.levels
        per_level = {q: hidden[:, levels == q] @ self.heads[q] for q in levels.unique().tolist()}
        dtype = next(iter(per_level.values())).dtype  # bf16 under autocast
        out = hidden.new_empty(*hidden.shape[:2], self.config.codebook_size, dtype=dtype)
        for q, part in per_level.items():
            out[:, levels == q] = part
        return out

    def forward(self, codes, semantic, speakers):
        """Teacher forcing: logits [B, N, K] of every flattened token given the ones before it."""
        ids = self.flat_inputs(codes)
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embed(ids, positions, semantic, speakers)
        cos, sin = rotary_tables(ids.shape[1], x.shape[-1] // self.config.heads, x.device)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.logits(x, positions)

    def _run(self, ids, positions, semantic, speakers, caches, tables):
        x = self.embed(ids, positions, semantic, speakers)
        cos, sin = tables[0][positions], tables[1][positions]
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block(x, cos, sin, cache)
        return self.logits(x[:, -1:], positions[-1:])[:, 0]  # [B, K]

    @torch.no_grad()
    def generate(
        self,
        semantic,
        speakers,
        prompt_codes,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
        use_cache: bool = True,
    ):
        """Codes [Q, T - P] after a prompt [Q, P]; semantic, speakers [T] cover prompt and target.

        Returns (codes, forward passes). Greedy when temperature is 0. Without the cache every
        step recomputes the whole prefix: the same tokens, far slower (tested).
        """
        Q, P = prompt_codes.shape
        T = semantic.shape[0]
        device = semantic.device
        semantic, speakers = semantic[None], speakers[None]
        generator = torch.Generator().manual_seed(seed)
        inputs = self.flat_inputs(
            torch.cat([prompt_codes, torch.zeros(Q, T - P, dtype=torch.long, device=device)], dim=1)[None]
        )[0]  # [N]: inputs[n] = token n - 1 (BOS first); right up to the prompt's end, filled as we go
        total, first = T * Q, P * Q
        caches = [{} for _ in self.blocks] if use_cache else [None] * len(self.blocks)
        tables = rotary_tables(total, self.config.dim // self.config.heads, device)  # once, not per token
        out = []
        for n in range(first, total):  # position n predicts token n (level n % Q of frame n // Q)
            start = 0 if (n == first or not use_cache) else n
            fresh = torch.arange(start, n + 1, device=device)
            if not use_cache:
                caches = [None] * len(self.blocks)
            logits = self._run(inputs[fresh][None], fresh, semantic, speakers, caches, tables)
            code = _sample(logits[0].float(), temperature, top_k, generator)
            out.append(code)
            if n + 1 < total:
                inputs[n + 1] = code + (n % Q) * self.config.codebook_size
        passes = len(out)
        codes = torch.tensor(out, dtype=torch.long, device=device).view(T - P, Q).T  # [Q, T - P]
        return codes, passes


def _sample(logits, temperature: float, top_k: int | None, generator) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = (logits / temperature).softmax(-1).cpu()
    return int(torch.multinomial(probs, 1, generator=generator))


def ar_targets(codes, lengths, prompt_lengths):
    """Flattened targets [B, N] and the positions that count [B, N]: after the prompt, before the padding."""
    B, Q, T = codes.shape
    targets = codes.transpose(1, 2).reshape(B, T * Q)
    frames = torch.arange(T * Q, device=codes.device)[None] // Q
    return targets, (frames >= prompt_lengths[:, None]) & (frames < lengths[:, None])


def ar_loss(model: ARBaseline, codes, semantic, speakers, lengths, prompt_lengths):
    """Cross-entropy on the flattened tokens after the prompt and before the padding; a batch whose prompts
    cover all its tokens has nothing to learn: 0 (with a graph, so the training step is the same)."""
    logits = model(codes, semantic, speakers)  # [B, N, K]
    targets, keep = ar_targets(codes, lengths, prompt_lengths)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep].float(), targets[keep])


def load_ar_baseline(folder, device: str = "cpu") -> ARBaseline:
    """Build from `config.json`, load `model.safetensors` (never pickle), in fp32, eval mode."""
    from soundstorm.bundles.checkpoints import load_model_folder

    return load_model_folder(folder, lambda raw: ARBaseline(ARConfig(**raw)), "AR baseline", device)
