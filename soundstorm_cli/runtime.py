"""Where and how reproducibly to run: device choice and seeding."""

from __future__ import annotations

import random

from soundstorm_cli.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | None = "auto"):
    """`auto` (or None) -> cuda, then mps, then cpu; an explicit device, `cuda:N` included, must be present."""
    import torch

    name = "auto" if name is None else str(name)
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"unknown device '{name}' (use one of {', '.join(DEVICES)}, or cuda:N)")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if kind == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if kind == "cuda" and not cuda:
        raise InputError(f"--device {name} was asked for, but no CUDA GPU is visible to torch")
    if index and int(index) >= torch.cuda.device_count():
        raise InputError(
            f"--device {name}: torch sees {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
        )
    if kind == "mps" and not mps:
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
