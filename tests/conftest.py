"""Shared fixtures: tiny models built in code, generated audio, a CLI runner."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from soundstorm_cli.cli import app


def sine(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine [T] or [T, C] of `seconds` at `rate` (each channel a little louder)."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels == 1:
        return wave
    return np.stack([wave * (0.5 + 0.25 * c) for c in range(channels)], axis=1)


@pytest.fixture
def wav_file(tmp_path):
    """A 1 s mono 16 kHz wav."""
    path = tmp_path / "voice.wav"
    sf.write(path, sine(1.0, 16000), 16000)
    return path


@pytest.fixture
def cli(monkeypatch):
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""
    monkeypatch.delenv("SOUNDSTORM_CHECKPOINT", raising=False)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    return run


def tiny_encodec_config():
    """EnCodec at 8 kHz, hop 16 (500 Hz frames), 4 levels x 1024 codes, ~10k parameters."""
    from transformers import EncodecConfig

    return EncodecConfig(
        sampling_rate=8000,
        upsampling_ratios=[4, 4],
        target_bandwidths=[5.0, 20.0],
        codebook_size=1024,
        num_filters=4,
        hidden_size=8,
        codebook_dim=8,
        num_lstm_layers=1,
        num_residual_layers=1,
    )


@pytest.fixture
def tiny_encodec():
    import torch
    from transformers import EncodecModel

    torch.manual_seed(0)
    return EncodecModel(tiny_encodec_config()).eval()
