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
    for name in ("tpu", "", "cpu:0", "cuda:x", "cuda:-1", "mps:0"):
        with pytest.raises(InputError, match="unknown device"):
            resolve_device(name)
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(InputError, match="no CUDA GPU"):
                resolve_device(name)


def test_a_numbered_gpu_must_exist(monkeypatch):
    """With one GPU (faked: the check reads torch.cuda), cuda:0 is it and cuda:1 is refused."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(InputError, match="sees 1 CUDA GPU"):
        resolve_device("cuda:1")


def test_none_means_auto():
    assert resolve_device(None) == resolve_device("auto")


def test_same_seed_same_draws():
    a = torch.rand(4, generator=seed_everything(7))
    b = torch.rand(4, generator=seed_everything(7))
    c = torch.rand(4, generator=seed_everything(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
