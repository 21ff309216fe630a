"""The FARGAN feature codec: residual k-means over the vocoder's features, behind the Codec interface."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.stages.feature_codec import feature_weights, fit, kmeans, train_decoder
from soundstorm.base.errors import CodecError
from soundstorm.chain.codec import FeatureCodecWrapper, load_codec
from soundstorm.models.feature_codec import FeatureCodec, FeatureCodecConfig, nearest
from soundstorm.vocoder import fargan


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A buzz at a gliding pitch through moving resonances, with pauses: FARGAN's features of it vary."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = 110 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    buzz = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(float)
    return (0.2 * buzz * envelope + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _stacked(audio: np.ndarray) -> torch.Tensor:
    features = fargan.analyze(audio)
    frames = len(features) // 2
    return torch.from_numpy(features[: 2 * frames].reshape(frames, 40))


@pytest.fixture(scope="module")
def fitted():
    """A 3-level, 32-vector codec fitted on 6 s of generated sound."""
    frames = torch.cat([_stacked(_speechlike(3.0, seed)) for seed in (1, 2)])
    config = FeatureCodecConfig(levels=3, codebook_size=32)
    model, rms = fit(frames, config, feature_weights(3.0, 2.0), iterations=6, sample=10_000, seed=0)
    return model, rms, frames


def test_each_level_takes_away_some_of_what_is_left(fitted):
    model, rms, frames = fitted
    assert rms == sorted(rms, reverse=True) and rms[-1] < rms[0]
    space = model.to_space(frames.reshape(-1, 20))
    errors = [
        (model.embed(model.quantize(frames.reshape(-1, 20), q)) - space).pow(2).mean().item() for q in (1, 2, 3)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_a_codebook_vector_is_its_own_code(fitted):
    model, _, _ = fitted
    book = model.codebooks[0]
    features = model.from_space(book[[5, 17, 5]])  # three codec frames, back in FARGAN's units
    codes = model.quantize(features, 1)
    assert codes.tolist() == [[5, 17, 5]]


def test_the_expected_vectors_of_one_hot_distributions_are_the_codes_vectors(fitted):
    model, _, frames = fitted
    codes = model.quantize(frames.reshape(-1, 20))  # [Q, T]
    probs = torch.nn.functional.one_hot(codes, 32).float()  # [Q, T, K]
    assert torch.allclose(model.expected(probs), model.embed(codes), atol=1e-5)


def test_decoded_features_stay_inside_what_fargan_accepts(fitted):
    model, _, _ = fitted
    codes = torch.randint(0, 32, (3, 50))
    features = model.dequantize(codes).numpy()
    assert features.shape == (100, 20)
    fargan.check_features(features)  # raises if not


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 200), st.integers(1, 40))
def test_kmeans_centroids_are_frames_means_and_nearest_is_exact(n, k):
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(n * 41 + k))
    k = min(k, n)
    centroids = kmeans(x, k, iterations=3, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (k, 4) and torch.isfinite(centroids).all()
    index = nearest(x, centroids)
    brute = torch.cdist(x, centroids).argmin(1)
    assert torch.equal(
        torch.cdist(x, centroids).gather(1, index[:, None]), torch.cdist(x, centroids).gather(1, brute[:, None])
    )


def test_too_little_audio_for_a_codebook_is_one_clear_error():
    with pytest.raises(SystemExit, match="fewer than the 64 vectors"):
        fit(torch.randn(10, 40), FeatureCodecConfig(codebook_size=64), torch.ones(40), 2, 100, 0)


def _save(model: FeatureCodec, folder):
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))


def test_the_codec_folder_loads_encodes_and_renders(fitted, tmp_path):
    model, _, _ = fitted
    _save(model, tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert isinstance(codec, FeatureCodecWrapper)
    assert (codec.frame_rate, codec.num_levels, codec.codebook_size) == (50, 3, 32)
    assert not (codec.needs_semantic or codec.reads_voice or codec.renders_posterior)
    audio = _speechlike(1.23, seed=3)
    codes = codec.encode(audio)
    assert codes.shape == (3, codec.num_frames(audio.size)) == (3, 62)
    assert torch.equal(codes, codec.encode(torch.from_numpy(audio)[None])[0])  # batch of one, same codes
    wav = codec.decode(codes, length=audio.size).numpy()
    assert wav.shape == audio.shape and np.isfinite(wav).all()
    # it sounds where the original sounds and pauses where it pauses (20 ms energies, in step)
    energy = [np.sqrt(np.mean(x[: 61 * 320].reshape(61, 320) ** 2, axis=1)) for x in (audio, wav)]
    assert np.corrcoef(*energy)[0, 1] > 0.7
    # the same codes render the same audio
    assert np.array_equal(wav, codec.decode(codes, length=audio.size).numpy())
    with pytest.raises(CodecError):
        codec.decode(torch.full((3, 10), 32))
    with pytest.raises(CodecError):
        codec.decode_posterior(torch.full((10, 32), 1 / 32))


def test_weights_that_do_not_fit_the_config_are_one_clear_error(fitted, tmp_path):
    model, _, _ = fitted
    _save(model, tmp_path / "codec")
    config = json.loads((tmp_path / "codec" / "config.json").read_text())
    (tmp_path / "codec" / "config.json").write_text(json.dumps(config | {"codebook_size": 64}))
    with pytest.raises(CodecError, match="do not fit"):
        load_codec(tmp_path / "codec")


@pytest.mark.slow
def test_the_codec_stage_fits_it_on_the_toy_corpus(tmp_path):
    from pipelines.__main__ import main as pipelines_main

    out = tmp_path / "toy"
    base = ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(out), "--quiet"]
    assert pipelines_main(["corpus", *base]) == 0
    sets = ["--set", "codec.kind=feature", "--set", "codec.kmeans_iterations=3"]
    assert pipelines_main(["codec", *base, *sets]) == 0
    stats = json.loads((out / "codec" / "train_stats.json").read_text())
    assert stats["settings"]["kind"] == "feature" and len(stats["residual_rms"]) == 2  # toy: 2 levels of 16
    codec = load_codec(out / "codec")
    assert isinstance(codec, FeatureCodecWrapper) and (codec.num_levels, codec.codebook_size) == (2, 16)
    # a rerun with the same settings keeps the fitted codec
    before = (out / "codec" / "model.safetensors").read_bytes()
    assert pipelines_main(["codec", *base, *sets]) == 0
    assert (out / "codec" / "model.safetensors").read_bytes() == before
    with pytest.raises(SystemExit, match="codec.kind is frame or feature"):
        pipelines_main(["codec", *base, "--set", "codec.kind=waveform"])
    # codec.semantic: the decoder trained too, on the semantic stage's tokens; the shards carry its codes
    assert pipelines_main(["semantic", *base]) == 0
    with_decoder = [*sets, "--set", "codec.semantic=true", "--set", "codec.steps=3"]
    assert pipelines_main(["codec", *base, *with_decoder]) == 0
    stats = json.loads((out / "codec" / "train_stats.json").read_text())
    assert stats["settings"]["decoder_steps"] == 3 and len(stats["decoder_loss"]) == 1
    assert load_codec(out / "codec").needs_semantic
    assert pipelines_main(["text-tokenizer", *base]) == 0 and pipelines_main(["shards", *base]) == 0
    from pipelines.stages.shards import TokenShards

    assert TokenShards(out / "shards")[0]["codes"].shape[0] == 2
    # SoundStorm and the AR baseline on its codes, bundled: `dialogue` renders (paper decoding: the decoder
    # reads codes; posterior decoding waits for a decoder tuned on SoundStorm's level 1) and `bench` compares
    assert pipelines_main(["soundstorm", *base]) == 0 and pipelines_main(["ar", *base]) == 0
    bundle = _bundle_of(out, tmp_path)
    from soundstorm.chain.script import parse_script
    from soundstorm.chain.synthesize import Synthesizer

    synth = Synthesizer.from_checkpoint(str(bundle), device="cpu")
    assert isinstance(synth.codec, FeatureCodecWrapper) and not synth.codec.renders_posterior
    result = synth.dialogue(parse_script("[S1] Hello there.\n[S2] Hi, how are you?"), seed=0)
    assert result.decoding == "paper" and result.duration_s > 1 and np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() > 0.01
    again = synth.dialogue(parse_script("[S1] Hello there.\n[S2] Hi, how are you?"), seed=0)
    assert np.array_equal(result.audio, again.audio)
    from soundstorm.measures.bench import ar_baseline_of, run_bench

    ar_model, weights = ar_baseline_of(synth, "", pytest.fail)  # the trained one: no warning
    point = run_bench(synth, ar_model, weights, durations=[2.0], runs=1).results[0]
    assert weights == "trained" and point.soundstorm_s > 0 and point.ar_s > 0
    assert point.ar_steps > point.soundstorm_passes  # one step a token against a few passes a level
    # codec.decoder_levels 1: the same codebooks (same seed and data), a decoder over level 1 alone, so the
    # chain's default is posterior decoding: one SoundStorm pass, the expected level-1 vector rendered
    assert pipelines_main(["codec", *base, *with_decoder, "--set", "codec.decoder_levels=1"]) == 0
    posterior = Synthesizer.from_checkpoint(str(_bundle_of(out, tmp_path / "posterior")), device="cpu")
    assert torch.equal(posterior.codec.model.codebooks, synth.codec.model.codebooks)
    heard = posterior.dialogue(parse_script("[S1] Hello there.\n[S2] Hi, how are you?"), seed=0)
    assert heard.decoding == "posterior" and np.isfinite(heard.audio).all()
    assert heard.forward_passes < result.forward_passes  # a pass a window against the paper's per level
    # feature_tune: the decoder taught on SoundStorm's level-1 distributions; codebooks and normalisation kept
    from pipelines.stages.feature_tune import main as feature_tune

    toy = ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(out)]
    assert feature_tune([*toy, "--items", "4", "--steps", "2", "--threads", "1"]) == 0
    tuned, plain = load_codec(out / "codec_tuned"), load_codec(out / "codec")
    assert tuned.renders_posterior and torch.equal(tuned.model.codebooks, plain.model.codebooks)
    assert torch.equal(tuned.model.decoder.mean, plain.model.decoder.mean)
    weights = [(a, b) for a, b in zip(tuned.model.decoder.parameters(), plain.model.decoder.parameters(), strict=True)]
    assert any(not torch.equal(a, b) for a, b in weights)
    assert json.loads((out / "codec_tuned" / "train_stats.json").read_text())["steps"] == 2
    # a codec whose decoder reads more than level 1 is refused with one line
    assert pipelines_main(["codec", *base, *with_decoder]) == 0
    with pytest.raises(SystemExit, match="error: feature_tune needs a feature codec"):
        feature_tune([*toy, "--items", "4", "--steps", "2"])
    # codec.voice: the same codebooks, a decoder that also reads the prompt's voice, which the chain passes
    voiced_sets = [*with_decoder, "--set", "codec.decoder_levels=1", "--set", "codec.voice=true"]
    assert pipelines_main(["codec", *base, *voiced_sets]) == 0
    assert json.loads((out / "codec" / "train_stats.json").read_text())["settings"]["voice"] is True
    voiced = Synthesizer.from_checkpoint(str(_bundle_of(out, tmp_path / "voiced")), device="cpu")
    assert voiced.codec.reads_voice and torch.equal(voiced.codec.model.codebooks, synth.codec.model.codebooks)
    said = voiced.dialogue(parse_script("[S1] Hello there.\n[S2] Hi, how are you?"), seed=0)
    assert said.decoding == "posterior" and np.isfinite(said.audio).all() and np.abs(said.audio).max() > 0.01
    assert feature_tune([*toy, "--items", "4", "--steps", "2", "--threads", "1"]) == 0
    assert load_codec(out / "codec_tuned").reads_voice
    # codec.perturb_voice: the decoder reads the tokens of voice-perturbed copies of its clips, cached by id
    assert pipelines_main(["codec", *base, *voiced_sets, "--set", "codec.perturb_voice=true"]) == 0
    assert json.loads((out / "codec" / "train_stats.json").read_text())["settings"]["perturb_voice"] is True
    from safetensors.numpy import load_file

    from pipelines.stages.shards import load_semantic

    perturbed, clean = load_file(str(out / "perturbed_semantic.safetensors")), load_semantic(out / "semantic")
    assert perturbed and all(len(perturbed[i]) == len(clean[i]) for i in perturbed)
    assert any(not np.array_equal(perturbed[i], clean[i]) for i in perturbed)  # other voices, other tokens
    assert torch.equal(load_codec(out / "codec").model.codebooks, synth.codec.model.codebooks)
    assert feature_tune([*toy, "--items", "4", "--steps", "2", "--threads", "1"]) == 0  # tuned on such tokens too
    assert json.loads((out / "codec_tuned" / "train_stats.json").read_text())["perturb_voice"] is True
    # codec.voice_stats frames: the decoder also attends to the prompt's frames, each turn to its speaker's
    assert pipelines_main(["codec", *base, *voiced_sets, "--set", "codec.voice_stats=frames"]) == 0
    framed = Synthesizer.from_checkpoint(str(_bundle_of(out, tmp_path / "framed")), device="cpu")
    assert framed.codec.model.config.voice_stats == "frames" and framed.codec.model.decoder.prompt_frames
    said = framed.dialogue(parse_script("[S1] Hello there.\n[S2] Hi, how are you?"), seed=0)
    assert said.decoding == "posterior" and np.isfinite(said.audio).all() and np.abs(said.audio).max() > 0.01


def _bundle_of(out, tmp_path):
    """A bundle folder of the toy recipe's codec, semantic tokenizer, SoundStorm and AR baseline, one voice."""
    import soundfile as sf
    from conftest import voice_like

    from pipelines.stages.bundle import SOURCES, write_bundle_folder

    staged = tmp_path / "staged"
    for component in ("codec", "semantic", "soundstorm", "ar_baseline"):
        folder, files = SOURCES[component]
        (staged / component).mkdir(parents=True)
        for name in files:
            shutil.copyfile(out / folder / name, staged / component / name)
    (staged / "voices").mkdir()
    sf.write(staged / "voices" / "v0.wav", voice_like(3.0, 16000, 140.0, 0), 16000)
    (staged / "voices" / "voices.json").write_text(json.dumps([{"name": "v0", "file": "v0.wav", "text": None}]))
    facts = {"sample_rate": 16000, "codec_frame_rate": 50, "semantic_rate": 25, "frontend": "espeak"}
    kinds = ("codec", "semantic", "soundstorm", "ar_baseline", "voices")
    return write_bundle_folder(tmp_path / "bundle", "feature-toy", facts, {k: staged / k for k in kinds})


def test_a_decoder_over_the_first_levels_learns_and_renders_with_the_semantic_tokens(tmp_path):
    """codec.semantic: a decoder from the first levels' vectors and the semantic tokens to the features;
    it learns (its loss falls), its codec needs the tokens to decode, and renders the same twice."""
    clips = [_stacked(_speechlike(2.0, seed)) for seed in (4, 5)]
    config = FeatureCodecConfig(
        levels=3, codebook_size=32, semantic_vocab=8, decoder_levels=2, decoder_width=16, decoder_depth=2
    )
    model, _ = fit(torch.cat(clips), config, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
    semantic = [torch.arange(len(c)) % 8 for c in clips]
    losses = train_decoder(model, clips, semantic, steps=60, seed=0, log_every=20)
    assert len(losses) == 3 and losses[-1] < losses[0]
    _save(model, tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert codec.needs_semantic and not codec.renders_posterior
    audio = _speechlike(1.0, seed=6)
    tokens = np.arange(25) % 8  # 25 Hz
    codes = codec.encode(audio, semantic=tokens)
    assert codes.shape == (3, 50)
    with pytest.raises(CodecError, match="semantic"):
        codec.decode(codes[:2])
    wav = codec.decode(codes[:2], semantic=tokens).numpy()
    assert wav.shape == (50 * 320,) and np.isfinite(wav).all()
    assert np.array_equal(wav, codec.decode(codes[:2], semantic=tokens).numpy())


def test_a_decoder_over_level_1_renders_its_distribution(tmp_path):
    """codec.decoder_levels 1: the decoder reads level 1 alone, so it renders SoundStorm's level-1
    distribution (the expected vector): a one-hot of the true codes renders as those codes do, a spread
    distribution renders something else, and a decoder over more levels refuses distributions."""
    clips = [_stacked(_speechlike(2.0, seed)) for seed in (4, 5)]
    config = FeatureCodecConfig(
        levels=2, codebook_size=32, semantic_vocab=8, decoder_levels=1, decoder_width=16, decoder_depth=2
    )
    model, _ = fit(torch.cat(clips), config, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
    train_decoder(model, clips, [torch.arange(len(c)) % 8 for c in clips], steps=20, seed=0, log_every=20)
    _save(model, tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert codec.renders_posterior and codec.needs_semantic
    audio, tokens = _speechlike(1.0, seed=6), np.arange(25) % 8
    codes = codec.encode(audio, semantic=tokens)
    one_hot = torch.nn.functional.one_hot(codes[0], 32).float()
    from_codes = codec.decode(codes[:1], semantic=tokens).numpy()
    from_probs = codec.decode_posterior(one_hot, semantic=tokens).numpy()
    assert from_probs.shape == from_codes.shape == (50 * 320,)
    assert np.allclose(from_probs, from_codes, atol=1e-4)
    spread = torch.softmax(torch.randn(50, 32, generator=torch.Generator().manual_seed(0)), -1)
    other = codec.decode_posterior(spread, semantic=tokens).numpy()
    assert np.isfinite(other).all() and not np.allclose(other, from_codes, atol=1e-3)
    four = FeatureCodecConfig(levels=2, codebook_size=32, semantic_vocab=8, decoder_width=16, decoder_depth=2)
    _save(FeatureCodec(four), tmp_path / "four")
    with pytest.raises(CodecError, match="renders codes"):
        load_codec(tmp_path / "four").decode_posterior(one_hot, semantic=tokens)


def test_the_control_decoder_reads_no_level(tmp_path):
    """codec.decoder_levels 0 (the control for what SoundStorm's codes add): the decoder learns from the
    semantic tokens alone, renders the same audio for any codes and any level-1 distribution, and other
    audio for other semantic tokens; feature_tune, which teaches a decoder distributions, refuses it."""
    clips = [_stacked(_speechlike(2.0, seed)) for seed in (4, 5)]
    config = FeatureCodecConfig(
        levels=2, codebook_size=32, semantic_vocab=8, decoder_levels=0, decoder_width=16, decoder_depth=2
    )
    model, _ = fit(torch.cat(clips), config, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
    losses = train_decoder(
        model, clips, [torch.arange(len(c)) % 8 for c in clips], steps=40, seed=0, log_every=20
    )
    assert len(losses) == 2 and losses[-1] < losses[0]
    _save(model, tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert codec.renders_posterior and codec.needs_semantic
    audio, tokens = _speechlike(1.0, seed=6), np.arange(25) % 8
    codes = codec.encode(audio, semantic=tokens)
    from_codes = codec.decode(codes[:1], semantic=tokens).numpy()
    assert np.isfinite(from_codes).all() and np.abs(from_codes).max() > 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        spread = torch.softmax(3 * torch.randn(50, 32, generator=generator), -1)
        assert np.array_equal(codec.decode_posterior(spread, semantic=tokens).numpy(), from_codes)
    assert np.array_equal(codec.decode(torch.zeros_like(codes[:1]), semantic=tokens).numpy(), from_codes)
    assert not np.allclose(codec.decode(codes[:1], semantic=(tokens + 3) % 8).numpy(), from_codes, atol=1e-3)
    from pipelines.stages.feature_tune import main as feature_tune

    with pytest.raises(SystemExit, match="reads level 1 alone"):
        feature_tune(["--config", "pipelines/configs/toy.yaml", "--out-dir", str(tmp_path)])


def test_a_decoder_that_reads_a_voice_takes_the_prompts(tmp_path):
    """codec.voice: the decoder also reads a prompt's voice vector (the mean and deviation of its codes'
    vectors): trained on another utterance's voice, it renders codes with their own voice by default, a
    level-1 distribution only with a voice given, and a different voice differently."""
    clips = [_stacked(_speechlike(4.0, seed)) for seed in (7, 8, 9)]
    config = FeatureCodecConfig(
        levels=2, codebook_size=32, semantic_vocab=8, decoder_levels=1, voice=True, decoder_width=16, decoder_depth=2
    )
    model, _ = fit(torch.cat(clips), config, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
    semantic = [torch.arange(len(c)) % 8 for c in clips]
    losses = train_decoder(model, clips, semantic, steps=20, seed=0, log_every=10, sources=[[1], [0], [2]])
    assert len(losses) == 2 and all(np.isfinite(losses))
    _save(model, tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    assert codec.reads_voice and codec.renders_posterior
    audio, tokens = _speechlike(1.0, seed=6), np.arange(25) % 8
    codes = codec.encode(audio, semantic=tokens)
    own = codec.voice(codes[:1])
    assert own.shape == (2 * config.dim,) and torch.isfinite(own).all()
    default = codec.decode(codes[:1], semantic=tokens).numpy()
    assert np.array_equal(default, codec.decode(codes[:1], semantic=tokens, voice=own).numpy())
    one_hot = torch.nn.functional.one_hot(codes[0], 32).float()
    with pytest.raises(CodecError, match="reads a voice vector"):
        codec.decode_posterior(one_hot, semantic=tokens)
    mine = codec.decode_posterior(one_hot, semantic=tokens, voice=own).numpy()
    assert np.allclose(mine, default, atol=1e-4)
    other = codec.voice(codec.encode(_speechlike(1.0, seed=11), semantic=tokens)[:1])
    theirs = codec.decode_posterior(one_hot, semantic=tokens, voice=other).numpy()
    assert not np.allclose(theirs, mine, atol=1e-3)
    with pytest.raises(CodecError, match="prompt codes"):
        codec.voice(codes[:1, :0])


def test_a_clip_draws_its_voice_from_its_speakers_other_utterances():
    from pipelines.stages.feature_codec import voice_sources

    rows = {
        "a1": {"kind": "single", "speakers": ["A"]},
        "a2": {"kind": "single", "speakers": ["A"]},
        "b1": {"kind": "single", "speakers": ["B"]},
        "d1": {"kind": "dialogue", "speakers": ["A", "B"]},
        "a3": {"kind": "single", "speakers": ["A"]},
        "r1": {"kind": "single", "speaker": "C"},  # a real corpus's row
        "r2": {"kind": "single", "speaker": "C"},
    }
    ids = ["a1", "a2", "b1", "d1", "a3", "r1", "r2"]
    assert voice_sources(ids, rows) == [[1, 4], [0, 4], [2], [3], [0, 1], [6], [5]]


def test_codec_init_from_keeps_its_codebooks_and_starts_the_decoder_from_its_weights(fitted, tmp_path):
    """codec.init_from with the feature codec: codes made with the old codec stay valid (same normalisation and
    codebooks); its decoder carries over where the shapes agree, else starts fresh; a folder of the wrong kind or
    sizes is one clear error."""
    from pipelines.stages.feature_codec import kept_codebooks

    clips = [_stacked(_speechlike(4.0, seed)) for seed in (7, 8)]
    sizes = dict(levels=2, codebook_size=32, semantic_vocab=8, decoder_levels=1, decoder_width=16, decoder_depth=2)
    old, _ = fit(torch.cat(clips), FeatureCodecConfig(**sizes), feature_weights(3.0, 2.0), 4, 10_000, seed=0)
    train_decoder(old, clips, [torch.arange(len(c)) % 8 for c in clips], steps=3, seed=0, log_every=3)
    _save(old, tmp_path / "old")
    kept = kept_codebooks(tmp_path / "old", FeatureCodecConfig(**sizes))
    for name in ("mean", "std", "weights", "codebooks"):
        assert torch.equal(getattr(kept, name), getattr(old, name))
    mine, theirs = kept.decoder.state_dict(), old.decoder.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    features = clips[0].reshape(-1, 20)
    assert torch.equal(kept.quantize(features, 2), old.quantize(features, 2))
    # a decoder that also reads a voice has other shapes: the codebooks are kept, the decoder starts fresh
    voiced = kept_codebooks(tmp_path / "old", FeatureCodecConfig(**sizes, voice=True))
    assert torch.equal(voiced.codebooks, old.codebooks)
    assert not torch.equal(voiced.decoder.state_dict()["mean"], old.decoder.state_dict()["mean"])
    with pytest.raises(SystemExit, match="has 2 levels of 32, the config 3 of 32"):
        kept_codebooks(tmp_path / "old", FeatureCodecConfig(**{**sizes, "levels": 3}))
    with pytest.raises(SystemExit, match="cannot load a codec"):
        kept_codebooks(tmp_path / "missing", FeatureCodecConfig(**sizes))


def test_the_bundle_takes_the_tuned_codec_where_feature_tune_wrote_a_whole_one(tmp_path):
    from pipelines.stages.bundle import SOURCES, source_folder

    files = SOURCES["codec"][1]
    for folder in ("codec", "soundstorm"):
        (tmp_path / folder).mkdir()
        for name in SOURCES[folder][1]:
            (tmp_path / folder / name).write_text("x")
    assert source_folder(tmp_path, "codec") == tmp_path / "codec"
    (tmp_path / "codec_tuned").mkdir()
    (tmp_path / "codec_tuned" / files[0]).write_text("x")  # a tuning that stopped half-way: not taken
    assert source_folder(tmp_path, "codec") == tmp_path / "codec"
    for name in files:
        (tmp_path / "codec_tuned" / name).write_text("x")
    assert source_folder(tmp_path, "codec") == tmp_path / "codec_tuned"
    assert source_folder(tmp_path, "soundstorm") == tmp_path / "soundstorm"  # only the codec has a tuned form


def test_the_variance_loss_measures_how_much_flatter_the_prediction_is_than_its_target():
    from pipelines.stages.feature_decoder import variance_loss

    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 40, 20, generator=g) * torch.linspace(0.5, 2.0, 20)
    mean = target.mean(1, keepdim=True)
    assert variance_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-3)
    flat = variance_loss(mean.expand_as(target).clone(), target).item()
    half = variance_loss(mean + 0.5 * (target - mean), target).item()
    assert flat > 0.5 and half == pytest.approx(flat / 2, rel=1e-3)
    # padding (NaN in the target) is left out, whatever the prediction holds there
    padded = torch.cat([target, torch.full((3, 10, 20), float("nan"))], 1)
    noisy = torch.cat([mean + 0.5 * (target - mean), 100 * torch.randn(3, 10, 20, generator=g)], 1)
    assert variance_loss(noisy, padded).item() == pytest.approx(half, rel=1e-4)
    # its gradient spreads a flat prediction out
    pred = (mean + 0.1 * (target - mean)).requires_grad_()
    variance_loss(pred, target).backward()
    with torch.no_grad():
        moved = pred - 0.5 * pred.grad * pred.numel()
    assert (moved - mean).std() > (pred - mean).std()


def test_a_decoder_trained_with_the_variance_loss_moves_more_than_one_without(tmp_path):
    """experimental.feature_variance_weight: the same decoder, data and seed, with and without the variance loss; with it, its
    renders of the training clips spread over time nearer as much as their targets do."""
    from pipelines.stages.feature_decoder import variance_loss

    clips = [_stacked(_speechlike(2.0, seed)) for seed in (4, 5)]
    config = FeatureCodecConfig(
        levels=2, codebook_size=16, semantic_vocab=8, decoder_levels=1, decoder_width=16, decoder_depth=2
    )
    semantic = [torch.arange(len(c)) % 8 for c in clips]
    gaps = {}
    for weight in (0.0, 3.0):
        model, _ = fit(torch.cat(clips), config, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
        losses = train_decoder(model, clips, semantic, steps=80, seed=0, log_every=40, variance_weight=weight)
        assert all(np.isfinite(losses))
        with torch.no_grad():
            pairs = [c.reshape(-1, 20) for c in clips]
            latents = [model.decoder_input(model.embed(model.quantize(f, 1))) for f in pairs]
            pred = model.decoder(torch.stack(latents), torch.stack(semantic), None).float()
            target = (torch.stack(pairs) - model.decoder.mean) / model.decoder.std
        gaps[weight] = variance_loss(pred, target).item()
    assert gaps[3.0] < gaps[0.0]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (.ci/setup)")
def test_the_guide_test_voices_espeak_ngs_rendering_with_another_utterance_of_the_speaker(tmp_path, monkeypatch):
    """`pipelines.evaluations.codec --guide`: each held-out utterance's text through espeak-ng, its tokens rendered
    by a decoder reading no level with the voice of the same identity's next utterance; an identity with one
    utterance is left out; a decoder over level 1 also renders the utterance's own level 1; one that reads more
    levels is refused (it would need SoundStorm's codes). The prompt's
    voice is read from the levels a chain's prompt holds (VOICE_LEVELS), as in training."""
    import soundfile as sf
    from conftest import voice_like

    import pipelines.evaluations.codec as evaluation
    from pipelines.evaluations.codec import evaluate_guide, pitch_spread
    from pipelines.stages.feature_codec import VOICE_LEVELS

    clips = [_stacked(_speechlike(2.0, seed)) for seed in (4, 5)]
    sizes = dict(levels=VOICE_LEVELS + 2, codebook_size=16, semantic_vocab=8, decoder_width=16, decoder_depth=2)
    config = FeatureCodecConfig(**sizes, decoder_levels=0, voice=True)
    model, _ = fit(torch.cat(clips), config, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
    train_decoder(model, clips, [torch.arange(len(c)) % 8 for c in clips], steps=5, seed=0, log_every=5)
    _save(model, tmp_path / "codec")
    rows = []
    for n, (speaker, pitch) in enumerate([("kokoro-a", 120.0), ("kokoro-a", 130.0), ("kokoro-b", 200.0)]):
        path = tmp_path / f"sk{n:06d}.wav"
        sf.write(path, voice_like(3.5, 16000, pitch, n), 16000)
        rows.append({"id": path.stem, "speaker": speaker, "text": "Turn left at the church.", "path": str(path)})
    heard = []

    def asr(audio):
        heard.append(len(audio))
        return "turn left at the church"

    def sim(a, b):  # nearer the prompt (3 s) than the guide (shorter)
        return 0.8 if max(len(a), len(b)) >= 3 * 16000 else 0.6

    tokens = lambda clip: np.arange(max(1, len(clip) // 640)) % 8  # noqa: E731
    voiced_levels = []

    def spying_load(folder):
        codec = load_codec(folder)
        voice = codec.voice
        codec.voice = lambda codes: voiced_levels.append(codes.shape[0]) or voice(codes)
        return codec

    monkeypatch.setattr(evaluation, "load_codec", spying_load)
    report = evaluate_guide(tmp_path / "codec", rows, rows, tokens, asr, sim)
    assert voiced_levels == [VOICE_LEVELS, VOICE_LEVELS]
    per = report["per_utterance"]["guide"]
    assert [(p["id"], p["voice_from"]) for p in per] == [("sk000000", "sk000001"), ("sk000001", "sk000000")]
    assert all(p["cer"] == 0.0 and p["nearer_prompt"] and p["pitch_spread"] >= 0 for p in per)
    assert report["summary"]["guide"]["similarity_to_prompt"] == 0.8 and len(heard) == 2
    assert 1.0 < heard[0] / 16000 < 3.0  # the render is as long as espeak-ng's guide, not the utterance
    assert "own_cer" not in per[0] and per[0]["original_similarity_to_prompt"] == 0.8
    # a decoder over level 1 renders espeak-ng's level 1 and, beside it, the utterance's own, in the prompt's voice
    levels = FeatureCodecConfig(**sizes, decoder_levels=1, voice=True)
    fitted_levels, _ = fit(torch.cat(clips), levels, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
    _save(fitted_levels, tmp_path / "l1")
    heard.clear()
    per = evaluate_guide(tmp_path / "l1", rows, rows, tokens, asr, sim)["per_utterance"]["guide"]
    assert len(per) == 2 and all(p["own_cer"] == 0.0 and p["own_similarity_to_prompt"] == 0.8 for p in per)
    assert len(heard) == 4 and heard[1] == len(sf.read(rows[0]["path"])[0])  # the own render: the utterance's length
    more = FeatureCodecConfig(**sizes, decoder_levels=2, voice=True)  # it would need SoundStorm's codes
    fitted_more, _ = fit(torch.cat(clips), more, feature_weights(3.0, 2.0), iterations=4, sample=10_000, seed=0)
    _save(fitted_more, tmp_path / "l2")
    with pytest.raises(SystemExit, match="at most level 1"):
        evaluate_guide(tmp_path / "l2", rows, rows, tokens, asr, sim)
    features = np.zeros((100, 20), np.float32)
    features[:50, 0], features[50:, 0] = -5.0, 5.0  # half silence, half speech
    features[50:, 18] = np.tile([0.0, 0.5], 25)
    assert pitch_spread(features) == pytest.approx(0.25)


def test_a_trial_folder_holds_the_data_sets_trained_parts_and_the_base_bundles_others(tmp_path):
    """`python -m pipelines.stages.bundle --folder DIR`: the data set's codec (its tuned form), semantic tokenizer
    and SoundStorm, their files alone; the T5, text tokenizer, AR baseline and voices from `tiny`; every file
    verifies; the package's registry is left alone."""
    from pipelines.stages.bundle import REGISTRY, SOURCES
    from pipelines.stages.bundle import main as bundle_main
    from soundstorm.bundles.checkpoints import load_registry, verify_bundle

    data = tmp_path / "data"
    for folder, kind in (("codec_tuned", "codec"), ("semantic", "semantic"), ("soundstorm", "soundstorm")):
        (data / folder).mkdir(parents=True)
        for name in SOURCES[kind][1]:
            (data / folder / name).write_text(f"{folder}/{name}")
    (data / "codec_tuned" / "config.json").write_text(json.dumps({"levels": 6, "codebook_size": 512}))
    (data / "soundstorm" / "checkpoint-500.pt").write_text("a stage's checkpoint")
    registry = REGISTRY.read_bytes()
    config = tmp_path / "c.yaml"
    config.write_text(f"out_dir: {data}\n")
    assert bundle_main(["--config", str(config), "--folder", str(tmp_path / "trial")]) == 0
    trial = load_registry().get(str(tmp_path / "trial"))
    tiny = load_registry().get("tiny")
    assert sorted(trial.components) == sorted(tiny.components.keys() - {"testset"})
    assert (tmp_path / "trial" / "codec" / "config.json").read_text() == (data / "codec_tuned" / "config.json").read_text()
    assert sorted(trial.components["soundstorm"].files) == ["config.json", "model.safetensors"]
    for kind in ("t2s", "text", "ar_baseline", "voices"):
        assert trial.components[kind].files == tiny.components[kind].files
    assert trial.facts["levels"] == 6 and trial.facts["codebook_size"] == 512
    assert trial.facts["frontend"] == tiny.facts["frontend"]
    assert all(not check.failed for check in verify_bundle(trial))
    assert REGISTRY.read_bytes() == registry


def _save_codec(model: FeatureCodec, folder) -> None:
    """A codec folder as the codec stage writes one."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))


def test_the_bundle_stage_writes_the_voice_match_into_the_codec_it_copies(tmp_path):
    """`bundle --folder D --set codec.voice_match=X`: a rendering setting, written into the copied feature
    codec's config.json (which then loads with it, every file verifying); the data set's own file is left
    alone, and a codec that cannot use it is copied unchanged."""
    from pipelines.stages.bundle import main as bundle_main
    from soundstorm.bundles.checkpoints import load_registry, verify_bundle

    data = tmp_path / "data"
    sizes = dict(levels=2, codebook_size=4, semantic_vocab=4, voice=True, voice_stats="voiced",
                 decoder_levels=1, decoder_width=8, decoder_depth=1)
    _save_codec(FeatureCodec(FeatureCodecConfig(**sizes)), data / "codec")
    stored = (data / "codec" / "config.json").read_text()
    config = tmp_path / "c.yaml"
    config.write_text(f"out_dir: {data}\n")
    args = ["--config", str(config), "--folder", str(tmp_path / "trial"), "--set", "codec.voice_match=0.5"]
    assert bundle_main(args) == 0
    trial = load_registry().get(str(tmp_path / "trial"))
    assert all(not check.failed for check in verify_bundle(trial))
    assert load_codec(str(tmp_path / "trial" / "codec")).model.config.voice_match == 0.5
    assert (data / "codec" / "config.json").read_text() == stored
    moments = tmp_path / "moments"
    _save_codec(FeatureCodec(FeatureCodecConfig(**{**sizes, "voice_stats": "moments"})), moments / "codec")
    config.write_text(f"out_dir: {moments}\n")
    args[3] = str(tmp_path / "trial2")
    assert bundle_main(args) == 0
    assert load_codec(str(tmp_path / "trial2" / "codec")).model.config.voice_match == 0.0


def test_feature_tune_gives_a_share_of_its_items_the_prompts_of_a_dialogue(tmp_path, monkeypatch):
    """--dialogue-share: SoundStorm reads the speaker's prompt beside another speaker's, the target on the
    label of its own speaker's prompt, and the decoder's voice is the speaker's; without it one prompt, label 1."""
    import soundfile as sf

    import soundstorm.chain.decoding as decoding
    from pipelines.stages.feature_tune import posteriors

    calls = []

    def recorded(model, semantic, speakers, prompts, context=100):
        calls.append((speakers.clone(), prompts))
        return torch.full((len(semantic), 4), 0.25), 1

    monkeypatch.setattr(decoding, "first_level_posterior", recorded)

    class Model:
        config = type("C", (), {"semantic_ratio": 1, "levels": 2})()

    class Inner:
        def expected(self, probs):
            return probs[0]

        def voice_vector(self, codes):
            return codes.float().mean(-1)  # [B, Q]: tells the prompts apart

    class Codec:
        frame_rate, reads_voice, model = 25, True, Inner()

    wav = tmp_path / "a.wav"
    sf.write(wav, _speechlike(0.4), 16000)
    items = [
        {"id": f"u{n}", "kind": "single", "speakers": [n // 3], "codes": np.full((2, 10), n), "semantic_tokens": np.arange(10)}
        for n in range(9)
    ]

    class Shards:
        def __init__(self):
            self.items = items
            self.singles_by_speaker = {s: [3 * s, 3 * s + 1, 3 * s + 2] for s in range(3)}

        def __getitem__(self, i):
            return items[i]

    wavs = {row["id"]: str(wav) for row in items}
    plain = posteriors(Model(), Codec(), Shards(), wavs, items=9, seed=0)
    assert len(plain) == 9 and all(len(p) == 1 and p[0].label == 1 and (s == 1).all() for s, p in calls)
    calls.clear()
    rows = posteriors(Model(), Codec(), Shards(), wavs, items=9, seed=0, dialogue_share=1.0)
    assert len(calls) == 9 and {int(s[0]) for s, _ in calls} == {1, 2}  # both labels drawn
    for (speakers, prompts), row in zip(calls, rows, strict=True):
        assert len(prompts) == 2 and {p.label for p in prompts} == {1, 2} and (speakers == speakers[0]).all()
        own = next(p for p in prompts if p.label == int(speakers[0]))
        stranger = next(p for p in prompts if p.label != int(speakers[0]))
        assert int(own.codes[0, 0]) // 3 != int(stranger.codes[0, 0]) // 3  # another speaker's prompt
        assert torch.equal(row["voice"], own.codes.float().mean(-1))  # the decoder hears its own speaker
        assert int(own.codes[0, 0]) // 3 == int(row["level1"][0]) // 3


def test_a_voiced_voice_vector_keeps_the_vowels_apart_from_the_pauses():
    """voice_stats "voiced": the voiced frames' mean and deviation and the others' mean, where "moments" mixes
    them; a prompt without a voiced frame takes the whole prompt's statistics."""
    from soundstorm.vocoder.fargan import CORRELATION

    config = FeatureCodecConfig(levels=1, codebook_size=2, semantic_vocab=4, voice=True, voice_stats="voiced",
                                decoder_width=8, decoder_depth=1)
    codec = FeatureCodec(config)
    vowel, pause = torch.full((2, 20), 1.0), torch.full((2, 20), -1.0)
    vowel[:, CORRELATION], pause[:, CORRELATION] = 0.6, -0.3
    codec.codebooks[0] = torch.stack([vowel.reshape(-1), pause.reshape(-1)])
    codes = torch.tensor([[[0, 1, 1, 0, 1, 1, 1]]])  # [B, Q, P]: 2 voiced frames of 7
    voice = codec.voice_vector(codes)[0]
    d = config.dim
    assert voice.shape == (3 * d,) and codec.decoder.blocks[0] is not None
    assert torch.allclose(voice[:d], vowel.reshape(-1)) and torch.allclose(voice[d : 2 * d], torch.zeros(d))
    assert torch.allclose(voice[2 * d :], pause.reshape(-1))
    moments = FeatureCodec(FeatureCodecConfig(levels=1, codebook_size=2, semantic_vocab=4, voice=True,
                                              decoder_width=8, decoder_depth=1))
    moments.codebooks.copy_(codec.codebooks)
    mixed = moments.voice_vector(codes)[0]
    assert mixed.shape == (2 * d,) and not torch.allclose(mixed[:d], vowel.reshape(-1))
    silent = codec.voice_vector(torch.tensor([[[1, 1, 1]]]))[0]
    assert torch.allclose(silent[:d], pause.reshape(-1)) and torch.allclose(silent[2 * d :], pause.reshape(-1))
    with pytest.raises(ValueError, match="voice_stats"):
        FeatureCodec(FeatureCodecConfig(semantic_vocab=4, voice=True, voice_stats="median"))


def test_voice_match_moves_each_speakers_vowels_toward_its_prompt_and_leaves_the_rest():
    """`voice_match`: the rendered voiced frames of each voice shift by that share of the gap between their mean
    and the voice vector's voiced mean; the frame-to-frame movement, the unvoiced frames and a render matched
    at 0 stay as they are; a decoder without the voiced vector refuses it."""
    from soundstorm.vocoder.fargan import CORRELATION, PITCH

    sizes = dict(levels=1, codebook_size=2, semantic_vocab=4, voice=True, voice_stats="voiced",
                 decoder_levels=1, decoder_width=8, decoder_depth=1)
    codec = FeatureCodec(FeatureCodecConfig(**sizes, voice_match=0.5))
    d = codec.config.dim
    torch.manual_seed(0)
    features = torch.randn(1, 12, 20) * 0.3  # 6 codec frames
    features[..., CORRELATION] = torch.tensor([0.6, 0.6, -0.3, -0.3] * 3)  # frames 0, 2, 4 voiced
    features[..., PITCH] = 0.1
    first, second = torch.full((3 * d,), 0.4), torch.full((3 * d,), -0.2)  # inside what FARGAN accepts
    # a dialogue: frames 0-2 in the first voice, 3-5 in the second (each frame's own vector)
    voice = torch.stack([first] * 3 + [second] * 3)[None]
    out = codec.match_voice(features, voice)
    z = lambda f: codec.to_space(f[0])  # noqa: E731
    before, after = z(features), z(out)
    for frames, target in (([0, 2], first[:d]), ([4], second[:d])):
        gap = target - before[frames].mean(0)
        assert torch.allclose(after[frames].mean(0) - before[frames].mean(0), 0.5 * gap, atol=1e-4)
        if len(frames) > 1:  # the movement between them is kept
            assert torch.allclose(after[0] - after[2], before[0] - before[2], atol=1e-4)
    assert torch.equal(out[0, 2:4], features[0, 2:4]) and torch.equal(out[0, 6:8], features[0, 6:8])
    assert torch.equal(FeatureCodec(FeatureCodecConfig(**sizes)).match_voice(features, voice), features)
    # decoding with a prompt's voice matches the decoder's render to it; decoding codes in their own voice does not
    codes, semantic = torch.tensor([[[0, 1, 1, 0, 1, 0]]]), torch.tensor([[1, 2, 3, 0, 1, 2]])
    rendered = codec.decoder.render(codec.embed(codes), semantic, voice)
    assert torch.equal(codec.decode(codes, semantic, voice), codec.match_voice(rendered, voice))
    own = codec.decoder.render(codec.embed(codes), semantic, codec.voice_vector(codes))
    assert torch.equal(codec.decode(codes, semantic), own)
    probs = torch.nn.functional.one_hot(codes[:, 0], 2).float()
    assert torch.allclose(codec.decode_posterior(probs, semantic, voice), codec.match_voice(rendered, voice))
    with pytest.raises(ValueError, match="voice_match"):
        FeatureCodec(FeatureCodecConfig(**{**sizes, "voice_stats": "moments"}, voice_match=0.5))
    with pytest.raises(ValueError, match="voice_match"):
        FeatureCodec(FeatureCodecConfig(**sizes, voice_match=1.5))


def test_a_frames_voice_vector_holds_the_prompts_voiced_frames_evenly_spaced():
    """voice_stats "frames": the voiced vector, then PROMPT_FRAMES of the prompt's voiced frames in order, evenly
    spaced (repeated where there are fewer); a prompt with almost no voiced frame gives frames of any kind."""
    from soundstorm.models.feature_codec import MIN_VOICED, PROMPT_FRAMES
    from soundstorm.vocoder.fargan import CORRELATION

    sizes = dict(levels=1, codebook_size=4, semantic_vocab=4, voice=True, decoder_width=8, decoder_depth=2)
    codec = FeatureCodec(FeatureCodecConfig(**sizes, voice_stats="frames"))
    voiced = FeatureCodec(FeatureCodecConfig(**sizes, voice_stats="voiced"))
    d = codec.config.dim
    rows = torch.full((4, 2, 20), 0.0)
    rows[:, :, 0] = torch.arange(4.0)[:, None]  # each code told apart by its first number
    rows[:2, :, CORRELATION], rows[2:, :, CORRELATION] = 0.6, -0.3  # codes 0, 1 voiced; 2, 3 not
    codec.codebooks[0] = voiced.codebooks[0] = rows.reshape(4, d)
    codes = torch.tensor([[[2, 0, 3, 1] * 10 + [2] * 5]])  # [B, Q, P]: 20 voiced frames of 45
    vector = codec.voice_vector(codes)[0]
    assert vector.shape == ((3 + PROMPT_FRAMES) * d,)
    assert torch.equal(vector[: 3 * d], voiced.voice_vector(codes)[0])
    frames = vector[3 * d :].reshape(PROMPT_FRAMES, d)
    drawn = frames[:, 0].round().long()
    assert set(drawn.tolist()) == {0, 1}  # voiced frames only
    assert drawn[0] == 0 and drawn[-1] == 1 and (drawn == 0).sum() == (drawn == 1).sum()  # in order, even
    few = torch.tensor([[[0] * (MIN_VOICED - 1) + [2, 3] * 10]])
    drawn = codec.voice_vector(few)[0][3 * d :].reshape(PROMPT_FRAMES, d)[:, 0].round().long()
    assert set(drawn.tolist()) == {0, 2, 3}


def test_the_decoder_attends_to_each_frames_own_prompt():
    """A decoder reading prompt frames: a voice per frame equals one per row where all frames share it, and in a
    dialogue the frames of one speaker (beyond the convolutions' reach) do not hear the other speaker's prompt,
    while its own prompt's frames change its render."""
    torch.manual_seed(0)
    config = FeatureCodecConfig(levels=1, codebook_size=8, semantic_vocab=8, voice=True, voice_stats="frames",
                                decoder_width=16, decoder_depth=2)
    codec = FeatureCodec(config)
    codec.codebooks.normal_()
    codes, semantic = torch.randint(8, (1, 1, 60)), torch.randint(8, (1, 60))
    a, b = codec.voice_vector(torch.randint(8, (1, 1, 40))), codec.voice_vector(torch.randint(8, (1, 1, 40)))
    with torch.no_grad():
        one = codec.decoder(codec.embed(codes), semantic, a)
        assert torch.allclose(codec.decoder(codec.embed(codes), semantic, a[:, None].expand(-1, 60, -1)), one)
        stats = 3 * config.dim
        b_moved = b.clone()
        b_moved[:, stats:] = torch.randn_like(b[:, stats:])  # the second prompt's frames only, not its statistics
        def track(second):  # frames 0-29 in the first voice, 30-59 in the second
            return torch.cat([a[:, None].expand(-1, 30, -1), second[:, None].expand(-1, 30, -1)], 1)

        first = codec.decoder(codec.embed(codes), semantic, track(b))
        moved = codec.decoder(codec.embed(codes), semantic, track(b_moved))
    reach = 2 * (2 + 4)  # two blocks of kernel 5, dilations 1 and 2, each side; 2 feature frames a codec frame
    assert torch.equal(moved[:, : 2 * 30 - 2 * reach], first[:, : 2 * 30 - 2 * reach])
    assert not torch.allclose(moved[:, 2 * 30 :], first[:, 2 * 30 :])
