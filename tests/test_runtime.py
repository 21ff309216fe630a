"""runtime.py: device resolution, precision and seeding."""

from __future__ import annotations

import pytest
import torch

from soundstorm.base import runtime
from soundstorm.base.errors import InputError
from soundstorm.base.runtime import native_bf16, resolve_device, resolve_precision, seed_everything


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


def test_auto_precision_follows_the_hardware(monkeypatch):
    """auto is bf16 only where the CPU has native bf16 (faked both ways through torch's feature probe)."""
    cpu = torch.device("cpu")
    for features, expected in (
        ({"avx2": True, "avx512_bf16": False, "amx_bf16": False}, "fp32"),
        ({"avx2": True, "avx512_bf16": True, "amx_bf16": False}, "bf16"),
        ({"avx2": True, "avx512_bf16": False, "amx_bf16": True}, "bf16"),
    ):
        monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda f=features: f)
        assert native_bf16(cpu) is (expected == "bf16")
        assert resolve_precision("auto", cpu) == expected
        assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"

    def broken():
        raise RuntimeError("probe gone")

    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", broken)
    assert resolve_precision("auto", cpu) == "fp32"  # unknown hardware: the safe choice
    assert resolve_precision("bf16", torch.device("mps")) == "fp32"  # no bf16 autocast there
    with pytest.raises(InputError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", cpu)


def test_autocast_runs_matmuls_in_the_resolved_precision():
    cpu = torch.device("cpu")
    a = torch.randn(4, 8)
    with runtime.autocast(cpu, "bf16"):
        assert (a @ a.T).dtype == torch.bfloat16
    with runtime.autocast(cpu, "fp32"):
        assert (a @ a.T).dtype == torch.float32
