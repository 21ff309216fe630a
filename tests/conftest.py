"""Shared fixtures: tiny models built in code, generated audio, a CLI runner."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from soundstorm.doors.cli import app
from soundstorm.vocoder.build import library_path

# The FARGAN vocoder that the setup built (python -m soundstorm.vocoder.build), found before the home
# moves: named voices and the prompt cache of the tests' own renders go to a throwaway home, never the user's.
os.environ.setdefault("SOUNDSTORM_FARGAN_LIB", str(library_path()))
os.environ.setdefault("SOUNDSTORM_HOME", tempfile.mkdtemp(prefix="soundstorm-tests-"))


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


def voice_like(seconds: float, rate: int, pitch: float, seed: int) -> np.ndarray:
    """A buzzy, syllable-paced tone with harmonics (something a speaker encoder and a codec can take)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = pitch * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * wave * envelope + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def tiny_t2s_config():
    """A T5 text-to-semantic model small enough to run in a test (16 semantic tokens, 40 text ids)."""
    from soundstorm.models.t2s import T2SConfig

    return T2SConfig(
        text_vocab=40,
        semantic_vocab=16,
        d_model=32,
        d_ff=64,
        heads=2,
        encoder_layers=1,
        decoder_layers=1,
        dropout=0.0,
        max_frames_per_piece=3.0,
    )


def tiny_frame_codec_config(**overrides):
    """Our frame codec small enough to run in a test (width 16, one layer each side, 32-code books)."""
    from soundstorm.models.frame_codec import FrameCodecConfig

    sizes = dict(
        width=16, encoder_layers=1, decoder_layers=1, levels=3, codebook_size=32, codebook_dim=4, n_mels=20
    )
    return FrameCodecConfig(**(sizes | overrides))


def build_tiny_bundle(
    folder,
    semantic_codec: bool = False,
    posterior_codec: bool = False,
    voice_codec: bool = False,
    phonemes: bool = False,
):
    """A complete bundle of tiny random-init models (codec, semantic, text, t2s, soundstorm, voices);
    with `semantic_codec`, its codec is conditioned on the semantic tokens (models/frame_codec.py); with
    `posterior_codec`, its decoder reads them and renders level-1 distributions, as the shipped one; with
    `voice_codec` as well, its decoder also reads the prompts' voice vectors; with `phonemes`, its T5 reads
    espeak-ng phonemes (`phonemes.json`) instead of SentencePiece pieces."""
    posterior_codec = posterior_codec or voice_codec
    import json
    import shutil

    import torch

    from pipelines.stages.bundle import write_bundle_folder
    from pipelines.stages.codec import save_codec
    from pipelines.training import save_bf16
    from soundstorm.bundles.checkpoints import ASSETS
    from soundstorm.chain.semantic import SemanticTokenizer
    from soundstorm.chain.text import TextTokenizer
    from soundstorm.models.frame_codec import FrameCodec
    from soundstorm.models.soundstorm import SoundStorm, SoundStormConfig
    from soundstorm.models.t2s import T2S

    torch.manual_seed(0)
    src = folder / "src"
    codec_config = tiny_frame_codec_config(
        semantic_vocab=16 if semantic_codec or posterior_codec else 0,
        semantic_encoder=not posterior_codec,
        soft_level1=posterior_codec,
        voice_decoder=voice_codec,
    )
    save_codec(FrameCodec(codec_config).eval(), src / "codec")
    rng = np.random.default_rng(0)
    (src / "semantic").mkdir(parents=True)
    SemanticTokenizer(
        mean=np.zeros(384, np.float32),
        std=np.ones(384, np.float32),
        centroids=rng.standard_normal((16, 384)).astype(np.float32),
    ).save(src / "semantic" / "semantic.safetensors")
    (src / "text").mkdir()
    if phonemes:
        from soundstorm.chain.phonemes import PhonemeTokenizer

        vocab = PhonemeTokenizer().vocab_size
        PhonemeTokenizer().save(src / "text")
    else:
        shutil.copyfile(ASSETS / "tiny" / "text" / "spm.model", src / "text" / "spm.model")
        vocab = TextTokenizer(str(src / "text" / "spm.model")).vocab_size
    t2s_config = dataclasses.replace(tiny_t2s_config(), text_vocab=vocab)
    t2s = T2S.random_init(t2s_config)
    t2s.model.save_pretrained(src / "t2s", safe_serialization=True)
    (src / "t2s" / "t2s.json").write_text(json.dumps(t2s_config.to_dict()))
    storm = SoundStorm(
        SoundStormConfig(
            levels=2,
            codebook_size=32,
            semantic_vocab=16,
            dim=32,
            layers=1,
            heads=2,
            conv_kernel=5,
            window=300,
        )
    )
    save_bf16(storm.eval(), src / "soundstorm", "soundstorm")
    (src / "voices").mkdir()
    entries = []
    for n, pitch in enumerate((110.0, 220.0)):
        sf.write(src / "voices" / f"v{n}.wav", voice_like(3.0, 16000, pitch, n), 16000)
        entries.append({"name": f"v{n}", "file": f"v{n}.wav", "text": "a test voice"})
    (src / "voices" / "voices.json").write_text(json.dumps(entries))
    (src / "testset").mkdir()
    for n, pitch in enumerate((130.0, 180.0)):
        sf.write(src / "testset" / f"u{n}.wav", voice_like(4.5, 16000, pitch, 10 + n), 16000)
        (src / "testset" / f"u{n}.txt").write_text("a buzzing test sentence\n")
    facts = {
        "sample_rate": 16000,
        "codec_frame_rate": 50,
        "semantic_rate": 25,
        "levels": 3,
        "codebook_size": 32,
    }
    components = {k: src / k for k in ("codec", "semantic", "text", "t2s", "soundstorm", "voices", "testset")}
    return write_bundle_folder(folder / "bundle", "tiny-test", facts, components)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("tiny_bundle"))


@contextlib.contextmanager
def served(app, log_level: str = "error"):
    """`app` served by uvicorn on a free loopback port, in a thread: yields the port."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
