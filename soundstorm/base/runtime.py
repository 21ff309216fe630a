"""Where and how reproducibly to run: device choice and seeding."""

from __future__ import annotations

import random

from soundstorm.base.errors import InputError

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


PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16(device) -> bool:
    """Whether `device` runs bf16 matmuls natively: a CUDA GPU that supports them, or a CPU with AVX512-BF16
    or AMX. Elsewhere bf16 is emulated and slower than fp32: on a 2-core AVX2-only EPYC (2026-12-01) the
    28 s example took 78.8 s of synthesis in bf16 and 16.1 s in fp32."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:  # torch's own CPU feature probe (cpuinfo); private, so any change of it means "not known"
        features = torch._C._cpu._get_cpu_capability()
        return bool(features.get("avx512_bf16") or features.get("amx_bf16"))
    except Exception:
        return False


def resolve_precision(name: str, device) -> str:
    """`auto` -> bf16 where the device runs it natively, else fp32; `bf16` and `fp32` as asked (bf16 only
    on a CPU or a CUDA GPU, the devices with a bf16 autocast)."""
    if name not in PRECISIONS:
        raise InputError(f"unknown precision '{name}' (use one of {', '.join(PRECISIONS)})")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name if device.type in ("cpu", "cuda") else "fp32"


def autocast(device, precision: str):
    """The autocast context for a resolved precision ("bf16" or "fp32") on `device`."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
