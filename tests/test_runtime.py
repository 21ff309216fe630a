"""runtime.py: device resolution and seeding."""

from __future__ import annotations

import pytest
import torch

from soundstorm_cli.errors import InputError
from soundstorm_cli.runtime import resolve_device, seed_everything


def test_auto_resolves_to_an_available_device():
    device = resolve_device("auto")
    assert device.type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu").type == "cpu"


def test_unknown_or_absent_devices_are_refused():
    with pytest.raises(InputError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_same_seed_same_draws():
    a = torch.rand(4, generator=seed_everything(7))
    b = torch.rand(4, generator=seed_everything(7))
    c = torch.rand(4, generator=seed_everything(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
