"""Where and how reproducibly to run: device choice and seeding."""

from __future__ import annotations

import random

from soundstorm_cli.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """`auto` -> cuda, then mps, then cpu; an explicit device must be present."""
    import torch

    if name not in DEVICES:
        raise InputError(f"unknown device '{name}' (use one of {', '.join(DEVICES)})")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        raise InputError("--device cuda was asked for, but no CUDA GPU is visible to torch")
    if name == "mps" and not mps:
        raise InputError("--device mps was asked for, but MPS is not available")
    return torch.device(name)


def seed_everything(seed: int):
    """Seed python, numpy and torch; returns a torch.Generator seeded the same way."""
    import numpy as np
    import torch

    if not 0 <= seed < 2**63:
        raise InputError(f"--seed {seed}: must be in [0, 2**63)")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
