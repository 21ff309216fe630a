"""pipelines/: every stage at toy size, the split rules, resumption."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from pipelines.__main__ import main as pipelines_main
from pipelines.__main__ import set_overrides
from pipelines.config import load_config
from pipelines.data.natural_voices import select_natural
from pipelines.data.synthetic_voices import HELD_OUT, select_voices
from pipelines.stages.corpus import plan

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("flite", "espeak-ng", "sox")),
    reason="needs flite, espeak-ng and sox (installed by .ci/setup)",
)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["pipelines/configs/toy.yaml", "pipelines/configs/tiny.yaml"])
def test_held_out_speakers_never_appear_in_train_or_valid(config):
    items = plan(load_config(config))
    voices, held_out = select_voices(load_config(config).corpus.speakers)
    if load_config(config).corpus.natural_hours > 0:
        held_out = held_out | select_natural(load_config(config).corpus.speakers)[1]
    seen = {
        split: {t.speaker for i in items if i.split == split for t in i.turns}
        for split in ("train", "valid", "test")
    }
    assert seen["test"] == held_out
    assert not (seen["train"] | seen["valid"]) & held_out
    if "tiny" in config:
        assert len(seen["train"]) >= 40 and len(held_out) >= 8
        assert any(s.startswith("flite") for s in held_out) and any(
            s.startswith("flite") for s in seen["train"]
        )


def test_held_out_voices_exist():
    names = {v.name for v in select_voices("all")[0]}
    assert set(HELD_OUT) <= names


@pytest.mark.slow
def test_plan_is_deterministic_and_grows_by_appending():
    config = load_config("pipelines/configs/toy.yaml")
    first = [(i.id, i.split, [t.text for t in i.turns]) for i in plan(config)]
    assert first == [(i.id, i.split, [t.text for t in i.turns]) for i in plan(config)]
    bigger = load_config("pipelines/configs/toy.yaml", {"corpus.hours": 0.04})
    grown = {i.id: (i.id, i.split, [t.text for t in i.turns]) for i in plan(bigger)}
    assert all(grown[i[0]] == i for i in first)


def test_set_overrides_any_key_read_as_yaml():
    overrides = set_overrides(
        ["soundstorm.steps=4000", "soundstorm.init_from=a/b", "t2s.autocast_bf16=false"]
    )
    assert overrides == {"soundstorm.steps": 4000, "soundstorm.init_from": "a/b", "t2s.autocast_bf16": False}
    config = load_config("pipelines/configs/tiny.yaml", overrides)
    assert config.soundstorm.steps == 4000 and config.soundstorm.init_from == "a/b"
    assert config.t2s.autocast_bf16 is False


def test_a_stage_config_holds_its_model_config():
    """Model sizes sit beside the training settings or under `model:`; both land in the model's dataclass,
    so every field of the model can be set (ff_mult, max_speakers, ...)."""
    config = load_config(
        "pipelines/configs/tiny.yaml",
        {"soundstorm.ff_mult": 2, "soundstorm.model.layers": 3, "codec.codebook_size": 256, "t2s.d_ff": 512},
    )
    assert (config.soundstorm.model.dim, config.soundstorm.model.layers, config.soundstorm.model.ff_mult) == (
        256,
        3,
        2,
    )
    assert config.soundstorm.levels == 4 and config.soundstorm.steps == 3000  # training settings stay
    assert config.codec.model.codebook_size == 256 and config.codec.model.decoder_layers == 8
    assert (config.t2s.model.d_model, config.t2s.model.d_ff, config.t2s.model.decoder_layers) == (256, 512, 4)
    with pytest.raises(ValueError, match="unknown keys"):
        load_config("pipelines/configs/tiny.yaml", {"soundstorm.model.widthh": 3})


def test_options_never_shipped_live_in_one_experimental_section():
    """Issue 49: what no bundle was made with is set under `experimental` and nowhere else; the shipped
    recipes leave it at its defaults (base.yaml, the GPU recipe, trains its codec adversarially)."""
    from pipelines.config import ExperimentalConfig

    for recipe in ("tiny", "fargan", "libritts"):
        assert load_config(f"pipelines/configs/{recipe}.yaml").experimental == ExperimentalConfig()
    assert load_config("pipelines/configs/base.yaml").experimental.adversarial.enabled
    config = load_config("pipelines/configs/tiny.yaml", {"experimental.t5_absolute_positions": True})
    assert config.experimental.t5_absolute_positions and not config.t2s.model.absolute_positions
    for gone in ("text_tokenizer.kind", "t2s.guided_attention", "codec.adversarial"):
        with pytest.raises(ValueError, match="unknown keys"):
            load_config("pipelines/configs/tiny.yaml", {gone: 1})
    from pipelines.stages import t2s

    direct = load_config("pipelines/configs/toy.yaml", {"t2s.absolute_positions": True})
    with pytest.raises(ValueError, match="experimental.t5_absolute_positions"):
        t2s.run(direct)
    from pipelines.stages import codec

    frame = load_config("pipelines/configs/toy.yaml", {"codec.semantic": True})  # the feature codec's key
    with pytest.raises(SystemExit, match="experimental.semantic_frame_codec"):
        codec.run(frame)
    conditioned = load_config("pipelines/configs/toy.yaml", {"experimental.semantic_frame_codec": True})
    assert codec.build_model(conditioned).config.semantic_vocab == conditioned.semantic.clusters
    assert codec.build_model(load_config("pipelines/configs/toy.yaml")).config.semantic_vocab == 0


@pytest.mark.parametrize("item", ["soundstorm.steps", "=3", "soundstorm.stepz=3"])
def test_a_bad_set_is_one_usage_error(item, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pipelines_main(["soundstorm", "--config", "pipelines/configs/tiny.yaml", "--set", item])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "stage, key", [("soundstorm", "soundstorm"), ("t2s", "t2s"), ("ar", "ar"), ("codec", "codec"), ("all", "codec")]
)
def test_steps_are_the_running_stage_s(stage, key, monkeypatch):
    import pipelines.__main__ as entry

    seen = []
    monkeypatch.setattr(entry, "run_stage", lambda name, config, quiet: seen.append(config) or {})
    assert entry.main([stage, "--config", "pipelines/configs/toy.yaml", "--steps", "123"]) == 0
    config = seen[0]
    assert getattr(config, key).steps == 123
    others = {"codec", "soundstorm", "t2s", "ar"} - {key}
    assert all(getattr(config, other).steps != 123 for other in others)


def test_steps_for_a_stage_without_them_is_one_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pipelines_main(["corpus", "--config", "pipelines/configs/toy.yaml", "--steps", "3"])
    assert exit_info.value.code == 2 and "takes no steps" in capsys.readouterr().err


@pytest.mark.slow
def test_all_stages_at_toy_size(tmp_path):
    out = tmp_path / "toy"
    assert (
        pipelines_main(["all", "--config", "pipelines/configs/toy.yaml", "--out-dir", str(out), "--quiet"])
        == 0
    )
    stages = json.loads((out / "stages.json").read_text())
    assert set(stages) == {"corpus", "text-tokenizer", "semantic", "codec", "shards"}
    rows = [json.loads(line) for line in (out / "corpus" / "manifest.jsonl").read_text().splitlines()]
    dialogue = next(r for r in rows if r["kind"] == "dialogue")
    assert len(dialogue["speakers"]) == 2 and len(dialogue["turns"]) >= 2
    assert all(
        a["end_s"] <= b["start_s"] for a, b in zip(dialogue["turns"], dialogue["turns"][1:], strict=False)
    )
    assert (out / "corpus" / dialogue["path"]).with_suffix(".txt").read_text().count("[S") == len(
        dialogue["turns"]
    )

    from pipelines.stages.shards import TokenShards

    shards = TokenShards(out / "shards")
    assert len(shards) == len(rows)
    item = shards[0]
    assert item["codes"].shape[0] == 2  # toy codec levels
    # 50 Hz codec frames = 2 x 25 Hz semantic frames (up to the last, odd frame)
    assert abs(item["codes"].shape[1] - 2 * len(item["semantic_tokens"])) <= 1
    assert len(item["text_tokens"]) > 0

    # A rerun skips finished work and gives the same data.
    before = (out / "shards" / "shard-0000.safetensors").read_bytes()
    mtime = (out / "corpus" / "wavs" / f"{rows[0]['id']}.wav").stat().st_mtime
    assert (
        pipelines_main(["all", "--config", "pipelines/configs/toy.yaml", "--out-dir", str(out), "--quiet"])
        == 0
    )
    assert (out / "corpus" / "wavs" / f"{rows[0]['id']}.wav").stat().st_mtime == mtime
    assert (out / "shards" / "shard-0000.safetensors").read_bytes() == before
    codes = TokenShards(out / "shards")[0]["codes"]
    assert np.array_equal(codes, item["codes"])

    # The training stages run on the toy shards and leave loadable models.
    from soundstorm.models.soundstorm import load_soundstorm

    for stage in ("soundstorm", "t2s", "ar"):
        assert (
            pipelines_main(
                [stage, "--config", "pipelines/configs/toy.yaml", "--out-dir", str(out), "--quiet"]
            )
            == 0
        )
    assert load_soundstorm(out / "soundstorm").config.levels == 2
    _decoder_tune_on(out)
    _phoneme_t5_on(out)
    # its evaluation needs held-out speakers with a second utterance to prompt with; the toy test split
    # has none: one clear line, not a traceback
    from pipelines.evaluations.soundstorm import main as soundstorm_eval

    with pytest.raises(SystemExit, match="nothing to evaluate"):
        soundstorm_eval(
            ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(out), "--utterances", "2"]
        )
    assert (out / "t2s" / "model.safetensors").is_file()
    from soundstorm.models.ar_baseline import load_ar_baseline
    from soundstorm.models.t2s import load_t2s

    assert load_ar_baseline(out / "ar_baseline").config.levels == 2
    ar_stats = json.loads((out / "stages.json").read_text())["ar"]
    assert len(ar_stats["valid_accuracy"]) == 2 and ar_stats["valid_loss"] > 0
    # ar.init_from: a trained baseline trained further (at lr 0 here, so it must come out exactly as it went in)
    import torch

    again = out / "ar_again"
    again.mkdir()
    (again / "shards").symlink_to(out / "shards")
    run = ["ar", "--config", "pipelines/configs/toy.yaml", "--out-dir", str(again), "--quiet"]
    sets = ["--set", f"ar.init_from={out / 'ar_baseline'}", "--set", "soundstorm.lr=0", "--set", "ar.steps=2"]
    assert pipelines_main([*run, *sets]) == 0
    source, further = load_ar_baseline(out / "ar_baseline"), load_ar_baseline(again / "ar_baseline")
    pairs = zip(source.state_dict().values(), further.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert load_t2s(out / "t2s").config.semantic_vocab > 0
    t2s_stats = json.loads((out / "stages.json").read_text())["t2s"]
    assert t2s_stats["valid_loss"] > 0  # the validation loss on the valid split, in the card

    # Every stage under torchrun, 2 processes on CPU (gloo), through the one training loop: the ranks'
    # weights stay identical, and each records its hash and shuts its process group down.
    import subprocess
    import sys

    for n, (stage, folder) in enumerate(
        (("soundstorm", "soundstorm"), ("t2s", "t2s"), ("ar", "ar_baseline"))
    ):
        shutil.rmtree(out / folder)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29531 + n),
            "-m",
            "pipelines",
            stage,
            "--config",
            "pipelines/configs/toy.yaml",
            "--out-dir",
            str(out),
            "--quiet",
        ]
        if stage == "soundstorm":
            # a clock budget far above the 4 steps, calibrated from step 2: the ranks agree on the total
            # after every step (an all-reduce), so they stop together and their weights match
            cmd += ["--set", "soundstorm.time_budget_s=600", "--set", "soundstorm.warmup=2"]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        assert result.returncode == 0, result.stderr[-2000:]
        digests = [(out / folder / f"rank{r}.sha256").read_text() for r in (0, 1)]
        assert digests[0] == digests[1], stage
        assert json.loads((out / "stages.json").read_text())[stage]["world_size"] == 2


def _phoneme_t5_on(out):
    """experimental.phoneme_t5 (issue 37): the fixed vocabulary, shards of phoneme ids, a T5 on them."""
    from pipelines.stages.shards import TokenShards
    from soundstorm.chain.phonemes import PhonemeTokenizer
    from soundstorm.models.t2s import load_t2s

    ph = out / "phonemes"
    ph.mkdir()
    for name in ("corpus", "semantic", "codec"):
        (ph / name).symlink_to(out / name)
    for stage in ("text-tokenizer", "shards", "t2s"):
        run = [stage, "--config", "pipelines/configs/toy.yaml", "--out-dir", str(ph), "--quiet"]
        assert pipelines_main([*run, "--set", "experimental.phoneme_t5=true"]) == 0
    stats = json.loads((ph / "stages.json").read_text())["text-tokenizer"]
    assert stats["kind"] == "phonemes" and stats["unknown_share"] < 0.01
    tokenizer = PhonemeTokenizer()
    item = TokenShards(ph / "shards")[0]
    assert list(item["text_tokens"]) == tokenizer.encode(item["text"]) or item["kind"] == "dialogue"
    assert load_t2s(ph / "t2s").config.text_vocab == tokenizer.vocab_size
    # the floor and cap on length fitted to the data: every training single's frames per phoneme between them
    fitted = load_t2s(ph / "t2s").config
    ratios = [
        r["semantic"][1] / r["text_ids"][1]
        for r in TokenShards(ph / "shards", "train").items
        if r["kind"] == "single"
    ]
    assert fitted.min_frames_per_piece < min(ratios) and max(ratios) < fitted.max_frames_per_piece
    assert (fitted.min_frames_per_piece, fitted.max_frames_per_piece) != (2.0, 12.0)
    # guided attention and absolute positions (experimental.t5_guided_attention and t5_absolute_positions):
    # with both on trains and ships a T5 whose stepper adds the positions
    guided = out / "phonemes_guided"
    guided.mkdir()
    for name in ("corpus", "semantic", "codec", "text_tokenizer", "shards"):
        (guided / name).symlink_to(ph / name)
    run = ["t2s", "--config", "pipelines/configs/toy.yaml", "--out-dir", str(guided), "--quiet"]
    options = ["--set", "experimental.t5_guided_attention=1.0", "--set", "experimental.t5_absolute_positions=true"]
    assert pipelines_main([*run, "--set", "experimental.phoneme_t5=true", *options]) == 0
    shipped = load_t2s(guided / "t2s")
    assert shipped.config.text_vocab == tokenizer.vocab_size and shipped.stepper.positions
    assert shipped.generate([tokenizer.encode("Hello there.")])[0].semantic
    assert json.loads((guided / "stages.json").read_text())["t2s"]["valid_loss"] > 0


def _adversarial_on(out, wav, semantic, item):
    """The adversarial recipe (issue 36) in both stages that train a decoder: the discriminators' state
    beside the stage's own, resumed with it, and never in the codec folder a bundle takes."""
    import torch
    from safetensors import safe_open

    from pipelines.stages.decoder_tune import main as decoder_tune
    from soundstorm.chain.codec import load_codec

    adv = out / "adv"
    adv.mkdir()
    for name in ("corpus", "shards", "generated"):
        (adv / name).symlink_to(out / name)
    args = [
        "--config",
        "pipelines/configs/toy.yaml",
        "--out-dir",
        str(adv),
        "--base-codec",
        str(out / "codec"),
    ]
    assert decoder_tune(["train", *args, "--steps", "2", "--adversarial"]) == 0
    state = torch.load(adv / "decoder_tune" / "adversary.pt", weights_only=True)
    assert json.loads((adv / "decoder_tune" / "train_stats.json").read_text())["adversarial"] is True
    assert decoder_tune(["train", *args, "--steps", "4", "--adversarial"]) == 0  # resumes at step 2
    resumed = torch.load(adv / "decoder_tune" / "adversary.pt", weights_only=True)
    first = next(iter(state["optimizer"]["state"].values()))["step"]
    assert float(next(iter(resumed["optimizer"]["state"].values()))["step"]) == float(first) + 2
    timed = out / "timed"  # --time-budget: the schedule fitted to the clock, for an A/B at equal CPU time
    timed.mkdir()
    for name in ("corpus", "shards", "generated"):
        (timed / name).symlink_to(out / name)
    args_timed = [
        "--config",
        "pipelines/configs/toy.yaml",
        "--out-dir",
        str(timed),
        "--base-codec",
        str(out / "codec"),
    ]
    assert decoder_tune(["train", *args_timed, "--steps", "100000", "--time-budget", "3"]) == 0
    ran = json.loads((timed / "decoder_tune" / "train_stats.json").read_text())
    assert 30 < ran["steps"] < 100000 and ran["time_budget_s"] == 3
    tuned = load_codec(adv / "decoder_tune")
    audio = tuned.decode(torch.from_numpy(item["codes"][:, :50]), semantic=semantic)
    assert torch.isfinite(audio).all()

    codec_dir = out / "adv_codec"
    codec_dir.mkdir()
    (codec_dir / "corpus").symlink_to(out / "corpus")
    run = ["codec", "--config", "pipelines/configs/toy.yaml", "--out-dir", str(codec_dir), "--quiet"]
    assert pipelines_main([*run, "--set", "experimental.adversarial.enabled=true"]) == 0
    assert json.loads((codec_dir / "codec" / "train_stats.json").read_text())["adversarial"] is True
    assert (codec_dir / "codec" / "adversary.pt").is_file()
    with safe_open(str(codec_dir / "codec" / "model.safetensors"), "pt") as shipped:
        assert not any("discriminator" in k or k.startswith("subs.") for k in shipped.keys())
    assert torch.isfinite(
        load_codec(codec_dir / "codec").decode(load_codec(codec_dir / "codec").encode(wav))
    ).all()

    # codec.init_from: a shipped codec (here the tuned one, which reads semantic tokens) trained further:
    # it starts as that codec, with EMA statistics rebuilt from its codebooks, and keeps its config
    from pipelines.config import load_config
    from pipelines.data.manifest import load_training_audio
    from pipelines.stages.codec import init_model

    init_dir = out / "init_codec"
    init_dir.mkdir()
    for name in ("corpus", "semantic"):
        (init_dir / name).symlink_to(out / name)
    start = init_model(adv / "decoder_tune", 16000)
    shipped = load_codec(adv / "decoder_tune")
    for book in start.quantizer.levels:
        assert torch.equal(book.embed_sum, book.embed) and bool(book.initted)
    codes = torch.from_numpy(item["codes"][:, :50]).long()[None]
    from soundstorm.chain.codec import FrameCodecWrapper

    before = FrameCodecWrapper(start).decode(codes[0], semantic=semantic)
    assert torch.allclose(before, shipped.decode(codes[0], semantic=semantic), atol=1e-4)
    run = ["codec", "--config", "pipelines/configs/toy.yaml", "--out-dir", str(init_dir), "--quiet"]
    sets = ["--set", f"codec.init_from={adv / 'decoder_tune'}", "--set", "codec.train_order=shuffled"]
    assert pipelines_main([*run, *sets, "--set", "codec.steps=2"]) == 0
    stats = json.loads((init_dir / "codec" / "train_stats.json").read_text())
    assert stats["init_from"] == str(adv / "decoder_tune") and stats["semantic"] is True
    further = load_codec(init_dir / "codec")
    assert further.model.config == shipped.model.config and further.needs_semantic
    assert torch.isfinite(further.decode(codes[0], semantic=semantic)).all()
    config = load_config("pipelines/configs/toy.yaml", {"out_dir": str(init_dir)})
    _, in_order = load_training_audio(config, 1.0, with_ids=True)
    config.codec.train_order = "shuffled"
    _, shuffled = load_training_audio(config, 1.0, with_ids=True)
    assert sorted(shuffled) == sorted(in_order) and shuffled != in_order
    assert load_training_audio(config, 1.0, with_ids=True)[1] == shuffled  # seeded


def _decoder_tune_on(out):
    """decoder_tune: SoundStorm's codes for the training utterances, then the codec's decoder tuned on them
    with the semantic tokens: the encoder and codebooks stay the base codec's, so its codes are unchanged."""
    import torch

    from pipelines.stages.decoder_tune import main as decoder_tune
    from pipelines.stages.shards import TokenShards
    from soundstorm.chain.codec import load_codec

    args = ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(out)]
    assert decoder_tune(["generate", *args, "--soundstorm", str(out / "soundstorm"), "--items", "3"]) == 0
    assert decoder_tune(["train", *args, "--base-codec", str(out / "codec"), "--steps", "3"]) == 0
    base, codec = load_codec(out / "codec"), load_codec(out / "decoder_tune")
    assert codec.needs_semantic and not base.needs_semantic
    item = TokenShards(out / "shards", "train")[0]
    wav = torch.randn(16000) * 0.1
    semantic = torch.from_numpy(item["semantic_tokens"][:25])
    assert torch.equal(codec.encode(wav, semantic=semantic), base.encode(wav))
    audio = codec.decode(torch.from_numpy(item["codes"][:, :50]), semantic=semantic)
    assert audio.shape == (50 * codec.hop_length,) and torch.isfinite(audio).all()
    assert not codec.renders_posterior

    # --soft: SoundStorm's first-pass level-1 expectation, and that tuned decoder tuned further on it
    soft = out / "soft"
    soft.mkdir()
    for name in ("corpus", "shards"):
        (soft / name).symlink_to(out / name)
    args = ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(soft)]
    tuned = ["--base-codec", str(out / "decoder_tune")]
    assert (
        decoder_tune(
            ["generate", *args, "--soundstorm", str(out / "soundstorm"), "--items", "3", "--soft", *tuned]
        )
        == 0
    )
    assert decoder_tune(["train", *args, *tuned, "--steps", "3"]) == 0
    posterior = load_codec(soft / "decoder_tune")
    assert posterior.renders_posterior and posterior.needs_semantic
    assert torch.equal(posterior.encode(wav, semantic=semantic), base.encode(wav))
    probs = torch.softmax(torch.randn(50, posterior.codebook_size), -1)
    audio = posterior.decode_posterior(probs, semantic=semantic)
    assert audio.shape == (50 * codec.hop_length,) and torch.isfinite(audio).all()

    _adversarial_on(out, wav, semantic, item)

    # --voice: a zero-initialised projection of a prompt's voice vector, so tuning starts from the
    # decoder's own audio whatever the voice, and learns from another utterance of each speaker
    from pipelines.stages.decoder_tune import tuned_model

    start = tuned_model(
        soft / "decoder_tune", semantic_vocab=posterior.model.config.semantic_vocab, voice=True
    )
    codes = torch.from_numpy(item["codes"][:, :50])[None]
    with torch.no_grad():
        latents = start.quantizer.decode(codes[0, :1])[None]
        tokens = semantic.repeat_interleave(2)[None]
        for voice in (torch.zeros(1, 2 * latents.shape[-1]), start.voice_vector(codes)):
            same = start.decode_latents(latents, tokens, voice)
            assert torch.allclose(same, posterior.model.decode_latents(latents, tokens), atol=1e-5)
    voiced = soft / "voiced"
    voiced.mkdir()
    for name in ("corpus", "shards", "generated"):
        (voiced / name).symlink_to(soft / name)
    args = ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(voiced)]
    assert (
        decoder_tune(["train", *args, "--base-codec", str(soft / "decoder_tune"), "--voice", "--steps", "3"])
        == 0
    )
    voiced = load_codec(voiced / "decoder_tune")
    assert voiced.reads_voice and voiced.renders_posterior
    assert voiced.model.voice_decoder.weight.abs().sum() > 0  # it learnt from the voices
    audio = voiced.decode_posterior(probs, semantic=semantic, voice=voiced.voice(codes[0]))
    assert audio.shape == (50 * codec.hop_length,) and torch.isfinite(audio).all()

    # --cross-voice: each utterance moved to another voice (same length, so its tokens still align), a
    # prompt of that voice, and SoundStorm's level-1 expectation from the original's tokens; training
    # gives a share of its batches to them, the moved audio as target, the moved prompt's voice
    from pipelines.stages.decoder_tune import Pairs, pitch_shift

    crossed = soft / "crossed"
    crossed.mkdir()
    for name in ("corpus", "shards"):
        (crossed / name).symlink_to(soft / name)
    args = ["--config", "pipelines/configs/toy.yaml", "--out-dir", str(crossed)]
    base = ["--base-codec", str(voiced_dir := soft / "voiced" / "decoder_tune")]
    generate = ["generate", *args, "--soundstorm", str(out / "soundstorm"), "--items", "3", "--soft"]
    assert decoder_tune([*generate, *base, "--cross-voice"]) == 0
    pairs = Pairs.load(crossed, TokenShards(crossed / "shards", "train"), levels=2, soft=True)
    assert pairs.cross, "no --cross-voice item was written"
    for n, (moved, expected, prompt) in pairs.cross.items():
        assert moved.shape == pairs.audio[n].shape and not np.array_equal(moved, pairs.audio[n])
        assert expected.shape == pairs.generated[n].shape and prompt.shape[0] == 2
    # --voice-layers: the voice also projected into every decoder block, zero-initialised (the same audio
    # as the base at the start)
    layered = tuned_model(voiced_dir, semantic_vocab=posterior.model.config.semantic_vocab, voice_layers=True)
    with torch.no_grad():
        voice = layered.voice_vector(codes)
        same = layered.decode_latents(latents, tokens, voice)
        assert torch.allclose(
            same, load_codec(voiced_dir).model.decode_latents(latents, tokens, voice), atol=1e-5
        )
    train = ["train", *args, *base, "--voice-layers", "--cross-share", "0.5", "--steps", "3"]
    assert decoder_tune(train) == 0
    stats = json.loads((crossed / "decoder_tune" / "train_stats.json").read_text())
    assert stats["cross_items"] == len(pairs.cross) and stats["cross_share"] == 0.5
    crossed_codec = load_codec(crossed / "decoder_tune")
    assert crossed_codec.model.config.voice_layers and crossed_codec.reads_voice
    blocks = crossed_codec.model.voice_blocks
    assert len(blocks) == len(crossed_codec.model.decoder) and all(p.weight.abs().sum() > 0 for p in blocks)
    audio = crossed_codec.decode_posterior(probs, semantic=semantic, voice=crossed_codec.voice(codes[0]))
    assert audio.shape == (50 * codec.hop_length,) and torch.isfinite(audio).all()
    tone = (np.sin(np.arange(8000) * 2 * np.pi * 220 / 16000) * 8000).astype(np.int16)
    moved = pitch_shift(tone, 16000, 400)
    assert moved.shape == tone.shape and moved.dtype == np.int16
    spectrum = np.abs(np.fft.rfft(moved[2000:6000].astype(np.float32)))

    # only the decoder trains: the encoder and the codebooks stay the base's, so a code still names the
    # same latent and SoundStorm's codes stay valid
    base_model = load_codec(voiced_dir).model
    tuned = crossed_codec.model
    for book, old in zip(tuned.quantizer.levels, base_model.quantizer.levels, strict=True):
        assert torch.equal(book.embed, old.embed)
    encoder = [n for n, _ in tuned.named_parameters() if n.split(".")[0] in ("encoder_in", "encoder", "encoder_out")]
    assert encoder and all(torch.equal(tuned.get_parameter(n), base_model.get_parameter(n)) for n in encoder)
    assert abs(np.argmax(spectrum) * 16000 / 4000 - 220 * 2 ** (400 / 1200)) < 10  # 220 Hz -> 277 Hz


def test_soundstorm_eval_soft_reports_the_decoders_ceiling_and_the_level1_distance(tmp_path):
    """`soundstorm_eval --soft` rows: SoundStorm's rendering, the decoder's rendering of the true level 1
    (a one-hot distribution) and the true codes' mean negative log-probability and top-1 agreement under
    SoundStorm's level-1 distribution, computed by hand here from the same first pass."""
    import torch
    import torch.nn.functional as F
    from conftest import tiny_frame_codec_config

    from pipelines.evaluations.soundstorm import Evaluation, _singles
    from soundstorm.chain.codec import FrameCodecWrapper
    from soundstorm.chain.decoding import DecodingOptions, PromptTokens, first_level_posterior
    from soundstorm.models.frame_codec import FrameCodec
    from soundstorm.models.soundstorm import SoundStorm, SoundStormConfig

    torch.manual_seed(0)
    storm = SoundStorm(
        SoundStormConfig(levels=2, codebook_size=32, semantic_vocab=16, dim=32, layers=1, heads=2, window=300)
    ).eval()
    codec = FrameCodecWrapper(
        FrameCodec(
            tiny_frame_codec_config(
                levels=2,
                semantic_vocab=16,
                semantic_encoder=False,
                soft_level1=True,
                voice_decoder=True,
            )
        )
    )
    g = np.random.default_rng(0)
    items = [
        {
            "id": f"u{n}",
            "kind": "single",
            "speakers": [3],
            "text": "a few words",
            "codes": g.integers(0, 32, (2, 40)).astype(np.int16),
            "semantic_tokens": g.integers(0, 16, 20).astype(np.int64),
        }
        for n in range(2)
    ]

    class Shards:  # the two held-out utterances of one speaker: each is the other's prompt
        def __init__(self):
            self.items = items
            self.singles_by_speaker = {3: [0, 1]}

        def __getitem__(self, i):
            return self.items[i]

    heard = []

    def asr(audio):
        heard.append(audio)
        return "a few words"

    ev = Evaluation(
        storm,
        codec,
        Shards(),
        np.random.default_rng(1),
        DecodingOptions.paper(2),
        20,
        True,
        asr,
        lambda a, b: 0.5,
        tmp_path,  # --audio: each render written, for a listener or a spectrogram
    )
    rows = _singles(ev, 2)
    written = sf.read(tmp_path / "u0.wav", dtype="float32")[0]
    assert np.corrcoef(written, heard[0])[0, 1] > 0.99  # SoundStorm's render of u0 (16-bit, peak-safe)
    from pipelines.evaluations.spectrograms import plot

    assert plot(
        tmp_path / "s.png", [("u0", written), ("u1", sf.read(tmp_path / "u1.wav")[0])], 16000
    ).is_file()
    assert len(rows) == 2 and len(heard) == 2 * 4  # SoundStorm, the ceiling, resynthesis at 2 levels and all
    for row, item in zip(rows, items, strict=True):
        assert row["cer_true_level1"] == 0.0 and row["cer_soundstorm"] == 0.0
        other = items[1 - items.index(item)]
        prompt = PromptTokens(
            torch.from_numpy(other["codes"][:, :20]).long(),
            torch.from_numpy(other["semantic_tokens"]).repeat_interleave(2)[:20],
            1,
        )
        semantic = torch.from_numpy(item["semantic_tokens"]).repeat_interleave(2)
        probs, _ = first_level_posterior(storm, semantic, torch.ones(40, dtype=torch.long), [prompt])
        truth = torch.from_numpy(item["codes"][0]).long()
        nll = float(F.nll_loss(probs.log(), truth))
        assert row["level1_nll"] == pytest.approx(nll, rel=1e-5) and nll > 0
        assert row["level1_top1"] == pytest.approx(float((probs.argmax(1) == truth).float().mean()))


@pytest.mark.parametrize(
    ("stage", "needs"),
    [("shards", "run the corpus stage first"), ("soundstorm", "run the shards stage first"), ("t2s", "shards")],
)
def test_a_stage_run_before_what_it_reads_is_one_error_line(tmp_path, capsys, stage, needs):
    """Each stage names the first input it lacks and the stage that makes it (no traceback, exit code 2)."""
    args = [stage, "--config", "pipelines/configs/toy.yaml", "--out-dir", str(tmp_path / "data")]
    assert pipelines_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the ") and needs in err[0]


def test_the_shards_stage_names_a_missing_text_tokenizer(tmp_path, capsys):
    """A data set with its corpus but not its text tokenizer: the shards stage says so instead of failing inside."""
    corpus = tmp_path / "data" / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "manifest.jsonl").write_text("")
    assert pipelines_main(["shards", "--config", "pipelines/configs/toy.yaml", "--out-dir", str(tmp_path / "data")]) == 2
    assert "run the text-tokenizer stage first" in capsys.readouterr().err
