"""codec.py: the Codec interface over a tiny random-init transformers EncodecModel."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_encodec_config

from soundstorm.base.errors import CheckpointError, CodecError
from soundstorm.chain.codec import EncodecCodec, load_codec


@pytest.fixture
def codec(tiny_encodec):
    return EncodecCodec(tiny_encodec)


def test_facts_follow_the_config(codec):
    assert codec.sample_rate == 8000
    assert codec.frame_rate == 500
    assert codec.hop_length == 16
    assert codec.num_levels == 4  # 20 kbps / (500 Hz x 10 bits)
    assert codec.codebook_size == 1024


def test_fewer_levels_at_a_lower_bandwidth(tiny_encodec):
    codec = EncodecCodec(tiny_encodec, bandwidth=5.0)
    assert codec.num_levels == 1
    assert codec.encode(torch.randn(160)).shape == (1, 10)
    with pytest.raises(CodecError, match="bandwidth"):
        EncodecCodec(tiny_encodec, bandwidth=7.0)


def test_encode_decode_shapes(codec):
    wav = torch.randn(800)
    codes = codec.encode(wav)
    assert codes.shape == (4, 50) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 1024
    assert codec.decode(codes).shape == (800,)
    batch = codec.encode(torch.randn(2, 800))
    assert batch.shape == (2, 4, 50)
    assert codec.decode(batch).shape == (2, 800)


@pytest.mark.parametrize("samples", [1, 15, 16, 17, 161, 799, 801])
def test_frame_counts_for_odd_lengths(codec, samples):
    codes = codec.encode(torch.randn(samples))
    frames = -(-samples // 16)
    assert codes.shape[-1] == frames == codec.num_frames(samples)
    assert codec.decode(codes).shape[-1] == frames * 16
    assert codec.decode(codes, length=samples).shape[-1] == samples


def test_batch_equals_one_by_one(codec):
    wavs = torch.randn(3, 960)
    batch = codec.encode(wavs)
    singles = torch.stack([codec.encode(w) for w in wavs])
    assert torch.equal(batch, singles)
    decoded = codec.decode(batch)
    decoded_singles = torch.stack([codec.decode(c) for c in batch])
    torch.testing.assert_close(decoded, decoded_singles, atol=1e-5, rtol=1e-4)


def test_deterministic(codec):
    wav = torch.randn(640)
    assert torch.equal(codec.encode(wav), codec.encode(wav))
    codes = codec.encode(wav)
    assert torch.equal(codec.decode(codes), codec.decode(codes))


def test_no_gradients_at_inference(codec):
    wav = torch.randn(320, requires_grad=True)
    assert not codec.decode(codec.encode(wav)).requires_grad


def test_bad_codes_and_input_are_refused(codec):
    with pytest.raises(CodecError):
        codec.decode(torch.full((4, 5), 1024))
    with pytest.raises(CodecError):
        codec.decode(torch.zeros(5, 5, dtype=torch.long))  # 5 levels > 4
    with pytest.raises(CodecError):
        codec.encode(torch.zeros(0))


def test_saved_and_reloaded_codec_gives_the_same_codes(tmp_path, tiny_encodec):
    tiny_encodec.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = load_codec(tmp_path)
    wav = torch.randn(480)
    assert torch.equal(reloaded.encode(wav), EncodecCodec(tiny_encodec).encode(wav))


def test_a_pickle_posing_as_weights_is_refused(tmp_path, tiny_encodec):
    tiny_encodec.config.save_pretrained(tmp_path)
    torch.save(tiny_encodec.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_codec(tmp_path)


def test_stereo_configs_are_refused():
    from transformers import EncodecModel

    config = tiny_encodec_config()
    config.audio_channels = 2
    with pytest.raises(CodecError, match="mono"):
        EncodecCodec(EncodecModel(config))
