"""A bidirectional Conformer (Gulati et al. 2020) with rotary positions, for SoundStorm.

Each block: half feed-forward, self-attention, convolution, half feed-forward
(the macaron layout), then a LayerNorm. Padding never leaks: attention masks
padded keys, and padded frames are zeroed before the depthwise convolution,
so a padded batch computes exactly what each item computes alone.

Shapes: B batch, T frames, D width, H heads, Dh = D / H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rotary_tables(length: int, dim: int, device, base: float = 10000.0):
    """cos and sin tables [T, Dh] for rotary position embeddings (Su et al. 2021)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)  # [T, Dh/2]
    angles = torch.cat([angles, angles], dim=-1)  # [T, Dh]
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """Rotate pairs of channels of x [B, H, T, Dh] by position-dependent angles."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, mult * dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(mult * dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, key_mask, cos, sin):
        B, T, D = x.shape
        q, k, v = (
            self.qkv(self.norm(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        )  # 3 x [B, H, T, Dh]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, T], True = attend
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class ConvModule(nn.Module):
    """Pointwise GLU -> depthwise conv -> LayerNorm -> SiLU -> pointwise; padded frames zeroed first."""

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pw_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.mid_norm = nn.LayerNorm(dim)  # not BatchNorm: its statistics would mix items and padding
        self.pw_out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_mask):
        y = F.glu(self.pw_in(self.norm(x)), dim=-1)  # [B, T, D]
        if key_mask is not None:
            y = y.masked_fill(~key_mask[..., None], 0.0)  # padding must not reach real frames
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pw_out(F.silu(self.mid_norm(y))))


class ConformerBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, kernel: int, ff_mult: int, dropout: float, attention_dropout: float
    ):
        super().__init__()
        self.ff1 = FeedForward(dim, ff_mult, dropout)
        self.attn = SelfAttention(dim, heads, attention_dropout)
        self.conv = ConvModule(dim, kernel, dropout)
        self.ff2 = FeedForward(dim, ff_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, key_mask, cos, sin):
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, key_mask, cos, sin)
        x = x + self.conv(x, key_mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    """`attention_dropout` (dropout on the attention weights; None: `dropout`) is apart because on a CPU
    any of it sends attention from the fused kernel to the one that builds the T x T weights: a training
    step at 6000 frames took 4.0 s with it and 2.2 s with dropout elsewhere only (2 cores, bf16)."""

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        kernel: int = 31,
        ff_mult: int = 4,
        dropout: float = 0.0,
        attention_dropout: float | None = None,
    ):
        super().__init__()
        self.head_dim = dim // heads
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, heads, kernel, ff_mult, dropout, attention_dropout) for _ in range(layers)
        )

    def forward(self, x, key_mask=None):
        """x [B, T, D]; key_mask [B, T] True for real frames (None: all real)."""
        cos, sin = rotary_tables(x.shape[1], self.head_dim, x.device)
        for block in self.blocks:
            x = block(x, key_mask, cos, sin)
        if key_mask is not None:
            x = x.masked_fill(~key_mask[..., None], 0.0)
        return x
