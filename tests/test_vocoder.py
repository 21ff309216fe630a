"""FARGAN through ctypes: features of generated signals, synthesis back, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from soundstorm.base.errors import VocoderError
from soundstorm.vocoder import build, fargan

RATE = fargan.SAMPLE_RATE


def voiced(
    seconds: float, f0: float = 200.0, start_s: float = 0.0, total_s: float | None = None
) -> np.ndarray:
    """A buzz with harmonics (a vowel-like source) at f0, optionally placed inside silence."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12)).astype(np.float32) * 0.2
    if total_s is None:
        return wave
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    i = int(start_s * RATE)
    out[i : i + wave.size] = wave
    return out


def period_of(pitch_code: np.ndarray) -> np.ndarray:
    """PitchDNN's code -> the pitch period in samples (as fargan.c reads it)."""
    return 256.0 / 2.0 ** (pitch_code + 1.5)


def envelope(audio: np.ndarray) -> np.ndarray:
    """Energy in a sliding 10 ms window, per sample."""
    return np.convolve(audio**2, np.ones(fargan.FRAME) / fargan.FRAME, mode="same")


def test_features_of_a_voiced_signal_have_its_pitch():
    x = voiced(1.0, f0=200.0)
    feats = fargan.analyze(x)
    assert feats.shape == (100, fargan.NUM_FEATURES) and feats.dtype == np.float32
    period = np.median(period_of(feats[20:, fargan.PITCH]))
    assert abs(period - RATE / 200.0) < 4, period  # 80 samples
    assert np.median(feats[20:, fargan.CORRELATION]) > 0.2  # voiced


def test_frames_round_up_and_silence_analyses_low():
    assert fargan.analyze(np.zeros(161, dtype=np.float32)).shape == (2, fargan.NUM_FEATURES)
    loud, quiet = fargan.analyze(voiced(0.5)), fargan.analyze(np.zeros(8000, dtype=np.float32))
    assert quiet[:, 0].mean() < loud[:, 0].mean() - 5  # c0: the log energy


def test_synthesis_is_as_long_as_its_features_and_keeps_pitch_and_energy():
    x = voiced(1.0, f0=150.0)
    feats = fargan.analyze(x)
    y = fargan.synthesize(feats)
    assert y.shape == (feats.shape[0] * fargan.FRAME,) and y.dtype == np.float32
    assert np.abs(y).max() <= 1.0
    again = fargan.analyze(y)
    assert abs(np.median(period_of(again[20:, fargan.PITCH])) - RATE / 150.0) < 5
    ratio = (y[2000:-2000] ** 2).mean() / (x[2000:-2000] ** 2).mean()
    assert 0.25 < ratio < 4.0, ratio


def test_synthesis_is_aligned_with_the_analysed_audio():
    x = voiced(0.5, start_s=0.6, total_s=1.6)
    y = fargan.synthesize(fargan.analyze(x))
    ex, ey = envelope(x), envelope(y)
    lags = np.arange(-400, 401, 10)
    scores = [np.corrcoef(ex[500:-500], np.roll(ey, -lag)[500:-500])[0, 1] for lag in lags]
    assert abs(lags[int(np.argmax(scores))]) <= 80  # samples: within 5 ms


def test_silence_stays_silent_and_priming_is_clean():
    y = fargan.synthesize(fargan.silence_features(50))
    assert np.abs(y).max() < 1e-3
    x = voiced(0.5, start_s=0.0, total_s=0.5)  # speech from the first sample: no click before it
    y = fargan.synthesize(fargan.analyze(x))
    assert np.abs(y[: fargan.FRAME]).max() < 0.5


def test_a_long_render_is_cut_in_its_pauses_and_does_not_depend_on_the_cores(monkeypatch):
    # 31 s: buzzes at changing pitches, with a 0.5 s pause a little after the middle
    x = np.concatenate(
        [voiced(2.9, f0=110.0 + 10 * k) for k in range(5)]
        + [np.zeros(RATE // 2, dtype=np.float32)]
        + [voiced(3.0, f0=160.0 + 10 * k) for k in range(5)]
        + [voiced(1.0)]
    )
    feats = fargan.analyze(x)
    (cut,) = fargan.cut_points(feats)
    assert 1450 <= cut <= 1500  # inside the pause, not at the even middle (1550)
    y = fargan.synthesize(feats)
    assert y.shape == (feats.shape[0] * fargan.FRAME,)
    monkeypatch.setattr(fargan.os, "cpu_count", lambda: 1)
    np.testing.assert_array_equal(fargan.synthesize(feats), y)
    # the parts meet without a click, and the second keeps its pitch and energy
    whole = fargan._render(feats)
    around = slice((cut - 2) * fargan.FRAME, (cut + fargan.FADE + 2) * fargan.FRAME)
    assert np.abs(y[around]).max() <= np.abs(whole[around]).max() + 0.01
    late = slice((cut + 100) * fargan.FRAME, (cut + 400) * fargan.FRAME)
    assert 0.5 < (y[late] ** 2).mean() / (whole[late] ** 2).mean() < 2.0
    assert fargan.cut_points(feats[:1000]) == []  # 10 s: one pass


def test_same_features_same_audio():
    feats = fargan.analyze(voiced(0.4))
    assert np.array_equal(fargan.synthesize(feats), fargan.synthesize(feats))
    assert fargan.synthesize(np.zeros((0, fargan.NUM_FEATURES))).size == 0


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda f: f.__setitem__((3, 2), np.nan), "NaN"),
        (lambda f: f.__setitem__((3, 0), 1e6), "cepstral"),
        (lambda f: f.__setitem__((3, fargan.PITCH), 7.0), "pitch"),
        (lambda f: f.__setitem__((3, fargan.CORRELATION), -3.0), "correlation"),
    ],
)
def test_unusable_features_are_refused(mutate, words):
    feats = fargan.analyze(voiced(0.2))
    mutate(feats)
    with pytest.raises(VocoderError, match=words):
        fargan.synthesize(feats)


def test_wrong_shapes_and_bad_audio_are_refused():
    with pytest.raises(VocoderError, match="frames"):
        fargan.synthesize(np.zeros((10, 18), dtype=np.float32))
    with pytest.raises(VocoderError, match="NaN"):
        fargan.analyze(np.array([0.0, np.inf], dtype=np.float32))


def test_a_missing_library_names_the_step(monkeypatch, tmp_path):
    monkeypatch.setenv("SOUNDSTORM_FARGAN_LIB", str(tmp_path / "none.so"))
    fargan._library.cache_clear()
    try:
        with pytest.raises(VocoderError, match="soundstorm.vocoder.build"):
            fargan.synthesize(np.zeros((3, fargan.NUM_FEATURES), dtype=np.float32))
        assert not fargan.available()
    finally:
        monkeypatch.undo()
        fargan._library.cache_clear()
    assert fargan.available()


def test_the_build_refuses_a_tarball_that_is_not_opus(monkeypatch, tmp_path):
    fake = tmp_path / "opus_1.5.2.orig.tar.gz"
    fake.write_bytes(b"not opus")
    monkeypatch.setenv(build.ENV_TARBALL, str(fake))
    with pytest.raises(VocoderError, match="not the Opus 1.5.2 release tarball"):
        build.obtain_tarball(tmp_path)
    monkeypatch.setenv(build.ENV_TARBALL, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(VocoderError, match="not a file"):
        build.obtain_tarball(tmp_path)


def test_the_build_is_skipped_when_built_and_its_command_reports_errors(monkeypatch, tmp_path, capsys):
    assert build.is_built()
    assert build.build(quiet=True) == build.library_path()  # nothing to do
    monkeypatch.setenv("SOUNDSTORM_FARGAN_LIB", str(tmp_path / "none.so"))
    assert build.main(["--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_the_feature_decoder_maps_codec_frames_to_two_vocoder_frames_in_range():
    """models.feature_decoder: 50 Hz inputs -> 100 Hz FARGAN features that the vocoder accepts."""
    import torch

    from soundstorm.models.feature_decoder import FeatureDecoder

    torch.manual_seed(0)
    model = FeatureDecoder(64, 128, 512, width=32, depth=2)
    model.std.fill_(50.0)  # wide outputs, so that the clamps have work to do
    latent, semantic, voice = torch.randn(1, 40, 64), torch.randint(0, 512, (1, 40)), torch.randn(1, 128)
    assert model(latent, semantic, voice).shape == (1, 80, 20)
    with torch.no_grad():
        features = model.render(latent, semantic, voice)[0].numpy()
        raw = (model(latent, semantic, voice) * model.std + model.mean)[0].numpy()
    assert features.shape == (80, 20)
    assert np.abs(raw[:, fargan.PITCH]).max() > 2  # the clamps had work to do
    assert np.abs(features[:, fargan.PITCH]).max() < 2 and np.abs(features[:, fargan.CORRELATION]).max() < 1
    fargan.check_features(features)
    assert fargan.synthesize(features).shape == (80 * fargan.FRAME,)
    # a voice per frame: the same voice on every frame gives what the one vector gave
    with torch.no_grad():
        per_frame = model.render(latent, semantic, voice[:, None].expand(-1, 40, -1))[0].numpy()
    np.testing.assert_allclose(per_frame, features, atol=1e-5)


def _fargan_codec(seed: int = 0):
    import torch

    from soundstorm.chain.codec import FrameCodecWrapper
    from soundstorm.models.frame_codec import FrameCodec, FrameCodecConfig

    torch.manual_seed(seed)
    config = FrameCodecConfig(
        width=32, encoder_layers=1, levels=4, codebook_size=64, codebook_dim=16, semantic_vocab=32,
        semantic_encoder=False, soft_level1=True, voice_decoder=True, renderer="fargan", feature_width=32,
        feature_depth=2,
    )
    return FrameCodecWrapper(FrameCodec(config))


def test_a_codec_rendered_by_fargan_has_no_waveform_decoder_and_reads_its_levels_and_the_voice():
    import torch

    codec = _fargan_codec()
    names = {name.split(".")[0] for name, _ in codec.model.named_parameters()}
    assert "features" in names and not names & {"decoder", "head", "decoder_in", "voice_decoder"}
    assert codec.renders_posterior and codec.reads_voice and codec.needs_semantic
    wav = torch.from_numpy(0.3 * np.sin(np.arange(16000) * 2 * np.pi * 150 / 16000).astype(np.float32))
    semantic = torch.randint(0, 32, (25,))
    codes = codec.encode(wav, semantic=semantic)
    assert codes.shape == (4, 50)
    voice = codec.voice(codes)
    audio = codec.decode(codes, semantic=semantic, voice=voice)
    assert audio.shape == (50 * codec.hop_length,) and torch.isfinite(audio).all() and audio.abs().max() <= 1
    # level 1's codes alone render as a sure posterior on them; the finer levels are read too
    sure = torch.nn.functional.one_hot(codes[0], codec.codebook_size).float()
    first = codec.decode(codes[:1], semantic=semantic, voice=voice)
    np.testing.assert_allclose(
        codec.decode_posterior(sure, semantic=semantic, voice=voice).numpy(), first.numpy(), atol=1e-6
    )
    assert not torch.equal(first, audio)
    other = codec.decode(codes, semantic=semantic, voice=voice + 1.0)
    assert not torch.equal(other, audio)  # the voice is read
    # same input, same audio
    assert torch.equal(codec.decode(codes, semantic=semantic, voice=voice), audio)


def test_a_codec_rendered_by_fargan_loads_from_its_folder_and_refuses_training(tmp_path):
    import json

    import torch
    from safetensors.torch import save_file

    from soundstorm.chain.codec import load_codec

    codec = _fargan_codec(1)
    (tmp_path / "config.json").write_text(json.dumps(codec.model.config.to_dict()))
    save_file({k: v.contiguous() for k, v in codec.model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    loaded = load_codec(tmp_path)
    probs = torch.softmax(torch.randn(30, 64), -1)
    semantic = torch.randint(0, 32, (15,))
    voice = torch.randn(32)
    assert torch.equal(
        loaded.decode_posterior(probs, semantic=semantic, voice=voice),
        codec.decode_posterior(probs, semantic=semantic, voice=voice),
    )
    with pytest.raises(ValueError, match="feature decoder"):
        codec.model(torch.zeros(1, 3200))


def test_the_feature_decoder_stage_trains_and_keeps_its_split_index(tmp_path, monkeypatch):
    """pipelines.stages.feature_decoder train on a made-up split: it leaves the split's index as it was (its
    statistics go to train_stats.json) and a decoder that loads into the codec's feature decoder."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    import pipelines.stages.feature_decoder as stage

    codec = _fargan_codec()
    monkeypatch.setattr(stage, "_components", lambda bundle: (codec, None, None))
    tensors, index = {}, []
    for n in range(3):
        key, frames = f"u{n}", 30 + 10 * n
        tensors[f"{key}/codes"] = torch.randint(0, 64, (4, frames), dtype=torch.int16)
        tensors[f"{key}/semantic"] = torch.randint(0, 32, (frames,), dtype=torch.int16)
        tensors[f"{key}/latent"] = torch.randn(frames, 16).half()
        tensors[f"{key}/voice"] = torch.randn(32)
        tensors[f"{key}/features"] = torch.from_numpy(
            np.tile(fargan.silence_features(1), (2 * frames, 1))
        ) + 0.1 * torch.randn(2 * frames, 20)
        index.append({"id": key, "text": "x", "speaker": "s"})
    save_file(tensors, str(tmp_path / "train.safetensors"))
    (tmp_path / "train.json").write_text(json.dumps(index))
    stats = stage.train(tmp_path, "tiny", minutes=0.02, threads=1, seed=0, batch=2)
    assert stats["steps"] >= 1 and stats["items"] == 3
    assert json.loads((tmp_path / "train.json").read_text()) == index
    assert json.loads((tmp_path / "train_stats.json").read_text()) == stats
    codec.model.features.load_state_dict(load_file(str(tmp_path / "feature_decoder.safetensors")))
