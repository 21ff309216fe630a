"""Absolute positional encodings for the T5 (`T2SConfig.absolute_positions`), shared by the model and
its token-by-token sampler (`t5_step.py`)."""

from __future__ import annotations

import math

import torch


def sinusoids(length: int, dim: int, device=None) -> torch.Tensor:
    """[length, dim] positional encodings: sines in the first half, cosines in the second, periods from
    2 pi to 2 pi 10^4 (amplitude 1, about that of T5's N(0, 1)-initialised embeddings)."""
    half = dim // 2
    rates = torch.exp(-math.log(10_000.0) * torch.arange(half, device=device) / max(1, half - 1))
    angles = torch.arange(length, device=device)[:, None] * rates[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
