"""models/frame_codec.py and its Codec wrapper: shapes, VQ behaviour, save and load."""

from __future__ import annotations

import pytest
import torch

from pipelines.stages.codec import save_codec
from soundstorm.base.errors import CheckpointError
from soundstorm.chain.codec import FrameCodecWrapper, load_codec
from soundstorm.models.frame_codec import EMACodebook, FrameCodec, FrameCodecConfig, ResidualVQ

TINY = FrameCodecConfig(
    width=16, encoder_layers=1, decoder_layers=1, levels=3, codebook_size=32, codebook_dim=4, n_mels=20
)


@pytest.fixture
def model():
    torch.manual_seed(0)
    model = FrameCodec(TINY)
    model.train()
    model(torch.randn(2, 3200) * 0.1)  # one training pass initialises the codebooks (k-means)
    return model.eval()


def test_shapes_and_frame_counts(model):
    codec = FrameCodecWrapper(model)
    assert (codec.sample_rate, codec.frame_rate, codec.num_levels, codec.codebook_size) == (16000, 50, 3, 32)
    for samples in (320, 321, 1000, 16000):
        codes = codec.encode(torch.randn(samples) * 0.1)
        assert codes.shape == (3, -(-samples // 320))
        assert codec.decode(codes).shape == (codes.shape[1] * 320,)


def test_batch_equals_one_by_one_and_deterministic(model):
    codec = FrameCodecWrapper(model)
    wavs = torch.randn(3, 4000) * 0.1
    batch = codec.encode(wavs)
    # Batched convolutions round differently (~1e-7); near-tied codes of a random model may flip.
    agreement = (batch == torch.stack([codec.encode(w) for w in wavs])).float().mean()
    assert agreement > 0.9
    assert torch.equal(batch, codec.encode(wavs))
    torch.testing.assert_close(
        codec.decode(batch), torch.stack([codec.decode(c) for c in batch]), atol=1e-4, rtol=1e-4
    )


def test_fewer_levels_still_decode(model):
    codec = FrameCodecWrapper(model)
    wav = torch.randn(1600) * 0.1
    codes = codec.encode(wav)
    for levels in (1, 2):
        assert codec.decode(codes[:levels]).shape == (1600,)


def test_kmeans_init_and_dead_code_restart():
    torch.manual_seed(0)
    book = EMACodebook(8, 2).train()
    data = torch.cat(
        [torch.randn(100, 2) * 0.01 + torch.tensor(c) for c in ([5.0, 5.0], [-5.0, 5.0], [0.0, -5.0])]
    )
    book(data)
    assert bool(book.initted)
    # every cluster centre of the data is close to some code
    for centre in ([5.0, 5.0], [-5.0, 5.0], [0.0, -5.0]):
        assert (book.embed - torch.tensor(centre)).norm(dim=1).min() < 0.5
    book.embed[0] = torch.tensor([100.0, 100.0])  # a code far from all data gets no use: it dies ...
    book.embed_sum[0] = 0.0
    book.cluster_size[0] = 0.0
    book(data)
    assert book.cluster_size[0] > 1e-2  # ... is restarted on a data vector
    assert min((book.embed[0] - torch.tensor(c)).norm() for c in ([5.0, 5.0], [-5.0, 5.0], [0.0, -5.0])) < 0.5


def test_residual_levels_reduce_the_error():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, 64, 8).train()
    x = torch.randn(2000, 8)
    for _ in range(5):
        rvq(x)
    rvq.eval()
    errors = [(x - rvq(x, n)[0]).pow(2).mean().item() for n in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]


def test_save_and_load_round_trip(tmp_path, model):
    save_codec(model, tmp_path)  # the shipped form: fp16 weights, fp32 codebooks, no EMA statistics
    loaded = load_codec(tmp_path)
    wav = torch.randn(3200) * 0.1
    codes = loaded.encode(wav)
    agreement = (codes == FrameCodecWrapper(model).encode(wav)).float().mean()
    assert agreement > 0.8  # fp16 rounding of the weights may move a few near-tied codes of a random model
    save_codec(loaded.model, tmp_path / "again")
    assert torch.equal(
        load_codec(tmp_path / "again").encode(wav), codes
    )  # saving the shipped form is lossless


def test_pickled_weights_are_refused(tmp_path, model):
    save_codec(model, tmp_path)
    torch.save(model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError):
        load_codec(tmp_path)


def test_a_semantic_codec_needs_its_tokens_and_they_change_the_audio(tmp_path):
    """A codec conditioned on semantic tokens (semantic_vocab > 0): encode/decode take the 25 Hz tokens,
    refuse to run without them, and the same codes decode differently under other tokens."""
    from soundstorm.base.errors import CodecError

    torch.manual_seed(0)
    config = FrameCodecConfig(**{**TINY.to_dict(), "semantic_vocab": 7})
    model = FrameCodec(config)
    model.train()
    model(torch.randn(2, 3200) * 0.1, semantic=torch.randint(0, 7, (2, 10)))
    save_codec(model.eval(), tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert codec.needs_semantic
    wav = torch.randn(3200) * 0.1  # 10 codec frames, 5 semantic frames
    tokens = torch.tensor([1, 2, 3, 4, 5])
    codes = codec.encode(wav, semantic=tokens)
    assert codes.shape == (3, 10)
    with pytest.raises(CodecError, match="semantic"):
        codec.decode(codes)
    with pytest.raises(CodecError, match="semantic"):
        codec.encode(wav)
    one = codec.decode(codes, semantic=tokens)
    assert one.shape == (3200,)
    assert torch.equal(one, codec.decode(codes, semantic=tokens))
    assert not torch.allclose(one, codec.decode(codes, semantic=torch.tensor([6, 6, 0, 0, 1])))
    # The shipped kind of codec takes no tokens and ignores none: its config has no semantic_vocab.
    assert not FrameCodecWrapper(FrameCodec(TINY)).needs_semantic


def test_a_posterior_decoder_renders_the_expected_latent_and_a_one_hot_is_the_code(tmp_path, model):
    """`decode_posterior` renders the expectation of level 1's latent: a one-hot distribution decodes as
    that level-1 code does, a spread one as the mean of its codes' latents; a codec not tuned for it, or
    a distribution of the wrong shape, is refused."""
    from soundstorm.base.errors import CodecError

    config = FrameCodecConfig(**{**TINY.to_dict(), "soft_level1": True})
    posterior = FrameCodec(config)
    posterior.load_state_dict(model.state_dict())
    save_codec(posterior.eval(), tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert codec.renders_posterior
    codes = torch.randint(0, 32, (1, 10))
    one_hot = torch.nn.functional.one_hot(codes[0], 32).float()
    assert torch.allclose(codec.decode_posterior(one_hot), codec.decode(codes), atol=1e-5)
    spread = torch.softmax(torch.randn(10, 32), -1)
    loaded = codec.model  # as stored: the shipped form may round the weights
    with torch.no_grad():
        by_hand = loaded.decode_latents((spread @ loaded.quantizer.levels[0].embed)[None])[0]
    assert torch.allclose(codec.decode_posterior(spread), by_hand, atol=1e-5)
    assert codec.decode_posterior(spread, length=3000).shape == (3000,)
    with pytest.raises(CodecError, match="distribution"):
        codec.decode_posterior(torch.rand(10, 31))
    with pytest.raises(CodecError, match="renders codes"):
        FrameCodecWrapper(model).decode_posterior(one_hot)


def test_a_decoder_that_reads_a_voice_takes_the_prompts_per_frame(tmp_path, model):
    """A decoder with a voice projection reads a voice vector (mean and spread of a prompt's quantized
    latents): one vector for all frames is the same as it repeated per frame, another voice changes the
    audio, codes decode with their own voice by default, and the posterior without one is refused."""
    from soundstorm.base.errors import CodecError

    config = FrameCodecConfig(**{**TINY.to_dict(), "soft_level1": True, "voice_decoder": True})
    torch.manual_seed(1)
    save_codec(FrameCodec(config).eval(), tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert codec.reads_voice and not FrameCodecWrapper(model).reads_voice
    low, high = codec.encode(torch.randn(3200) * 0.05), codec.encode(torch.randn(3200) * 0.5)
    a, b = codec.voice(low), codec.voice(high)
    assert a.shape == (2 * config.codebook_dim,) and not torch.allclose(a, b)
    latents = codec.model.quantizer.decode(low)  # [T, C]
    assert torch.allclose(a, torch.cat([latents.mean(0), latents.std(0, unbiased=False)]), atol=1e-6)
    probs = torch.softmax(torch.randn(10, 32), -1)
    one = codec.decode_posterior(probs, voice=a)
    assert torch.allclose(one, codec.decode_posterior(probs, voice=a.expand(10, -1)), atol=1e-6)
    assert not torch.allclose(one, codec.decode_posterior(probs, voice=b))
    mixed = torch.cat([a.expand(5, -1), b.expand(5, -1)])
    assert not torch.allclose(codec.decode_posterior(probs, voice=mixed), one)
    assert torch.allclose(codec.decode(low), codec.decode(low, voice=a), atol=1e-6)
    with pytest.raises(CodecError, match="voice"):
        codec.decode_posterior(probs)
    with pytest.raises(CodecError, match="voice vectors"):
        codec.decode_posterior(probs, voice=a.expand(7, -1))
    with pytest.raises(CodecError, match="no voice"):
        FrameCodecWrapper(model).voice(low)


@pytest.mark.parametrize("n_fft, n_mels", [(1024, 80), (400, 20)])
def test_the_16_khz_mel_filters_are_transformers_slaney_filters(n_fft, n_mels):
    """faster-whisper's filters stand in for transformers' at 16 kHz (no 2 s import): bit for bit."""
    from transformers.audio_utils import mel_filter_bank

    from soundstorm.models.frame_codec import mel_basis

    reference = mel_filter_bank(n_fft // 2 + 1, n_mels, 0.0, 8000, 16000, norm="slaney", mel_scale="slaney")
    assert torch.equal(mel_basis(n_fft, n_mels, 16000), torch.tensor(reference, dtype=torch.float32).t())
    assert mel_basis(n_fft, n_mels, 24000).shape == (n_mels, n_fft // 2 + 1)
