"""synthesize.py: the whole chain on a bundle of tiny random-init models (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import voice_like

from soundstorm.base.errors import AudioError, InputError, ScriptError
from soundstorm.base.runtime import resolve_precision
from soundstorm.chain.prompts import trim_silence
from soundstorm.chain.script import parse_script
from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer, segments_of

ESPEAK = SynthesisOptions(frontend="espeak")


@pytest.fixture(scope="module")
def synth(tiny_bundle):
    return Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu")


def test_say_returns_audio_and_one_turn(synth):
    result = synth.say("Hello there, how are you?", seed=3)
    assert result.sample_rate == 16000 and result.audio.dtype == np.float32
    assert result.duration_s > 0 and np.isfinite(result.audio).all()
    (turn,) = result.turns
    assert turn.start_s == 0 and 0 < turn.end_s <= result.duration_s + 1e-6
    assert set(result.timings) >= {"load", "t2s", "acoustic", "decode", "total"}
    assert result.forward_passes == 16 + 1  # two levels: 16 passes, then 1


@pytest.mark.parametrize("options", [SynthesisOptions(), ESPEAK], ids=["t2s", "espeak"])
def test_same_seed_same_audio(synth, options):
    a = synth.say("Same seed, same audio.", seed=7, options=options)
    b = synth.say("Same seed, same audio.", seed=7, options=options)
    c = synth.say("Same seed, same audio.", seed=8, options=options)
    assert np.array_equal(a.audio, b.audio)
    assert len(a.audio) != len(c.audio) or not np.array_equal(a.audio, c.audio)


def test_dialogue_turns_are_ordered_and_voices_assigned(synth):
    script = parse_script("[A] Hello there. [B] Fine, thanks! [A] Good to hear.\n[B] Bye.")
    result = synth.dialogue(script, seed=1, options=ESPEAK)
    assert [t.speaker for t in result.turns] == ["A", "B", "A", "B"]
    starts = [t.start_s for t in result.turns]
    assert starts == sorted(starts) and starts[0] == 0
    assert all(t.end_s > t.start_s for t in result.turns)
    assert result.turns[-1].end_s <= result.duration_s + 1e-6
    # Two speakers without voices get two distinct bundled voices, each with a warning.
    assert len(result.warnings) == 2 and "'v0'" in result.warnings[0] and "'v1'" in result.warnings[1]


def test_pauses_lengthen_the_audio(synth):
    options = SynthesisOptions(frontend="espeak", turn_gap_s=0.0)
    plain = synth.dialogue(parse_script("[A] One two. [A] Three four."), seed=0, options=options)
    paused = synth.dialogue(parse_script("[A] One two. (pause 1.5) [A] Three four."), seed=0, options=options)
    gapped = synth.dialogue(parse_script("[A] One two. [A] Three four."), seed=0, options=ESPEAK)
    assert gapped.duration_s - plain.duration_s == pytest.approx(
        0.3, abs=0.05
    )  # the default gap between turns
    assert paused.duration_s - plain.duration_s == pytest.approx(1.5, abs=0.1)


def test_long_dialogue_decodes_in_windows(synth):
    # The tiny model's window is 300 frames (6 s); this script is longer and must be decoded window by window.
    text = " ".join(
        f"[{'A' if i % 2 == 0 else 'B'}] This is sentence number {i}, spoken slowly." for i in range(6)
    )
    result = synth.dialogue(parse_script(text), seed=0, options=ESPEAK)
    assert result.duration_s > 8
    assert len(result.turns) == 6 and np.isfinite(result.audio).all()


def test_voice_files_override_bundled_voices(synth, tmp_path):
    path = tmp_path / "mine.wav"
    sf.write(path, voice_like(2.5, 22050, 150.0, 5), 22050)  # another sample rate: resampled
    result = synth.dialogue(parse_script("[A] Hi. [B] Hello."), voices={"A": path}, seed=0, options=ESPEAK)
    assert len(result.warnings) == 1 and "speaker B" in result.warnings[0]


def test_voice_for_a_speaker_without_turns_is_refused(synth, tmp_path):
    with pytest.raises(ScriptError, match="C, who has no turn"):
        synth.dialogue(parse_script("[A] Hi."), voices={"C": tmp_path / "x.wav"})


def test_silent_and_short_prompts_are_refused(synth, tmp_path):
    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    sf.write(short, np.concatenate([np.zeros(8000), voice_like(0.5, 16000, 120.0, 0), np.zeros(8000)]), 16000)
    with pytest.raises(AudioError, match="silent"):
        synth.say("Hello.", prompt=silent)
    with pytest.raises(AudioError, match="at least 1 s"):
        synth.say("Hello.", prompt=short)
    late = tmp_path / "late.wav"  # speech only after the part of a prompt file that is read
    sf.write(late, np.concatenate([np.zeros(61 * 8000), voice_like(2.0, 8000, 120.0, 0)]), 8000)
    with pytest.raises(AudioError, match="silent .in its first 60 s"):
        synth.say("Hello.", prompt=late)


def test_absurd_options_are_refused(synth):
    for options in (
        SynthesisOptions(prompt_seconds=0.2),
        SynthesisOptions(frontend="festival"),
        SynthesisOptions(temperature=-1),
        SynthesisOptions(iterations=(0, 1)),
    ):
        with pytest.raises(InputError):
            synth.say("Hello.", options=options)


@pytest.mark.parametrize("options", [SynthesisOptions(frontend="t2s"), ESPEAK], ids=["t2s", "espeak"])
def test_a_part_with_nothing_to_speak_between_pauses_is_a_short_silence(synth, options):
    """'...' alone between two pauses is kept as a beat, not sent to espeak-ng or the T5 as empty text."""
    plain = synth.dialogue(parse_script("[A] One two. (pause 0.5) Three."), seed=0, options=options)
    beat = synth.dialogue(
        parse_script("[A] One two. (pause 0.5) ... (pause 0.5) Three."), seed=0, options=options
    )
    assert 0.5 <= beat.duration_s - plain.duration_s <= 0.8  # the second pause and a beat of ~0.1 s


def test_trim_silence_keeps_the_speech():
    speech = voice_like(1.0, 16000, 200.0, 0)
    padded = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(8000, np.float32)])
    trimmed = trim_silence(padded, 16000)
    assert abs(len(trimmed) - len(speech)) < 0.15 * 16000


def test_segments_split_turns_at_pauses():
    script = parse_script("[A] one (pause 0.5) two [B] (pause 1) three (pause 0.25)")
    segments = segments_of(list(script.turns))
    assert [(s.turn, s.text, s.pause_after_s) for s in segments] == [
        (0, "one", 0.5),
        (0, "two", 1.0),  # B's opening pause is the gap before B
        (1, "three", 0.25),
    ]
    gapped = segments_of(list(script.turns), turn_gap_s=0.3)
    assert [s.pause_after_s for s in gapped] == [0.5, 1.3, 0.25]  # not after the last turn


# Through the CLI, with the same tiny bundle.


def test_cli_dialogue_writes_audio_json_and_subtitles(cli, tiny_bundle, tmp_path):
    script = tmp_path / "d.txt"
    script.write_text("[A] Hello there.\n[B] Hi! (pause 0.2) How are you?\n")
    out, srt = tmp_path / "out.flac", tmp_path / "out.srt"
    code, stdout, stderr = cli(
        "dialogue",
        script,
        "-o",
        out,
        "--checkpoint",
        tiny_bundle,
        "--json",
        "--timings",
        srt,
        "--frontend",
        "espeak",
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    data, rate = sf.read(out)
    assert rate == summary["sample_rate"] == 16000
    assert len(data) / rate == pytest.approx(summary["duration_s"], abs=0.01)
    assert [t["speaker"] for t in summary["turns"]] == ["A", "B"]
    assert summary["rtf"] > 0 and summary["peak_memory_mb"] > 0
    assert set(summary["timings_s"]) >= {"load", "t2s", "acoustic", "decode", "total"}
    assert summary["precision"] == resolve_precision("auto", torch.device("cpu"))  # what SoundStorm ran in
    assert "warning: speaker A has no voice" in stderr
    assert srt.read_text().startswith("1\n00:00:00,000 --> ")


def test_precision_flags_choose_what_soundstorm_runs_in(cli, tiny_bundle, tmp_path):
    """--fp32 is --precision fp32 (the same audio); bf16 is honoured and reported."""
    rendered = {}
    for name, flags in (("p", ("--precision", "fp32")), ("f", ("--fp32",)), ("b", ("--precision", "bf16"))):
        out = tmp_path / f"{name}.wav"
        code, stdout, stderr = cli(
            "say", "Hello there.", "-o", out, "--checkpoint", tiny_bundle, "--json", *flags
        )
        assert code == 0, stderr
        rendered[name] = (json.loads(stdout)["precision"], out.read_bytes())
    assert rendered["p"] == rendered["f"] and rendered["p"][0] == "fp32"
    assert rendered["b"][0] == "bf16"
    code, stdout, stderr = cli("say", "Hi.", "-o", tmp_path / "x.wav", "--checkpoint", tiny_bundle, "--fp32")
    assert code == 0 and "(RTF " in stdout and "cpu fp32" in stdout, (
        stdout + stderr
    )  # said without --json too


def test_cli_say_replaces_an_existing_output_only_when_done(cli, tiny_bundle, tmp_path):
    out = tmp_path / "keep.wav"
    out.write_bytes(b"precious")
    code, _, stderr = cli("say", "Hello.", "-o", out, "--checkpoint", tiny_bundle, "--iterations", "0,1")
    assert code == 2 and stderr.startswith("error: iterations") and out.read_bytes() == b"precious"
    code, stdout, stderr = cli("say", "Hello.", "-o", out, "--checkpoint", tiny_bundle, "--quiet")
    assert code == 0 and stdout == "" and sf.info(out).samplerate == 16000


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("say", "Hi.", "--prompt", "{tmp}/corrupt.wav"), "not a readable audio file"),
        (("say", "Hi.", "--prompt", "{tmp}"), "directory"),
        (("say", "Hi.", "--prompt", "{tmp}/silent.wav"), "silent"),
        (("say", "Hi.", "--prompt-seconds", "60"), "prompt length"),
        (("say", "Hi.", "--temperature", "-2"), "temperature -2: must be in [0, 5]"),
        (("say", "Hi.", "--frontend", "festival"), "front end"),
        (("say", "Hi.", "--timings", "{tmp}/t.txt"), ".srt or .vtt"),
        (("say", "Hi.", "--timings", "/proc/t.srt"), "cannot write timings '/proc/t.srt'"),
        (("dialogue", "{tmp}/bad.txt"), "bad.txt:1:9: unknown directive"),
        (("dialogue", "{tmp}/ok.txt", "--voice", "S1={tmp}/corrupt.wav"), "not a readable audio file"),
        (("dialogue", "{tmp}/ok.txt", "--voice", "S9={tmp}/v.wav"), "S9, who has no turn"),
        (("dialogue", "{tmp}/front.txt"), "missing.wav': no such file"),
        (("say", "Привет, мир 🙂"), "nothing to speak in 'Привет, мир 🙂'"),
        (("dialogue", "{tmp}/alien.txt"), "alien.txt:2:1: [S2] has nothing to speak"),
    ],
)
def test_cli_bad_inputs_fail_in_one_line_and_touch_nothing(cli, tiny_bundle, tmp_path, args, words):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    sf.write(tmp_path / "silent.wav", np.zeros(32000, np.float32), 16000)
    sf.write(tmp_path / "v.wav", voice_like(2.0, 16000, 140.0, 1), 16000)
    (tmp_path / "bad.txt").write_text("[S1] Hi (laugh) there.\n")
    (tmp_path / "ok.txt").write_text("[S1] Hi there.\n")
    (tmp_path / "front.txt").write_text("---\nvoices:\n  S1: missing.wav\n---\n[S1] Hi.\n")
    (tmp_path / "alien.txt").write_text("[S1] Hi there.\n[S2] ... 🙂\n")
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    code, stdout, stderr = cli(
        *[a.format(tmp=tmp_path) for a in args], "-o", out, "--checkpoint", tiny_bundle
    )
    assert code != 0 and "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], stderr
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_cli_refuses_a_bundle_whose_hash_does_not_match(cli, tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    weights = copy / "soundstorm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    code, _, stderr = cli("say", "Hi.", "-o", tmp_path / "o.wav", "--checkpoint", copy)
    assert code == 4 and "does not match its sha256" in stderr and not (tmp_path / "o.wav").exists()


def test_cli_accepts_stereo_prompts_at_any_rate(cli, tiny_bundle, tmp_path):
    stereo = np.stack([voice_like(2.5, 44100, 150.0, 2), voice_like(2.5, 44100, 150.0, 3)], axis=1)
    sf.write(tmp_path / "stereo.flac", stereo, 44100)
    code, _, stderr = cli(
        "say",
        "Hi.",
        "--prompt",
        tmp_path / "stereo.flac",
        "-o",
        tmp_path / "o.ogg",
        "--checkpoint",
        tiny_bundle,
        "-q",
    )
    assert code == 0, stderr
    assert sf.info(tmp_path / "o.ogg").samplerate == 16000


def test_a_codec_conditioned_on_semantic_tokens_renders_through_the_chain(tmp_path):
    """Issue 22's candidate codec kind behind the same interface: prompts are encoded and the dialogue
    decoded with their semantic tokens, and the result is deterministic."""
    from conftest import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path, semantic_codec=True)
    synth = Synthesizer.from_checkpoint(str(bundle), device="cpu")
    assert synth.codec.needs_semantic
    options = SynthesisOptions(frontend="espeak")
    one = synth.say("Hello there.", seed=3, options=options)
    two = synth.say("Hello there.", seed=3, options=options)
    assert one.duration_s > 0.3 and np.isfinite(one.audio).all()
    assert np.array_equal(one.audio, two.audio)


@pytest.mark.slow
def test_a_decoder_that_renders_the_posterior_is_rendered_in_one_pass(tmp_path, cli):
    """A bundle whose decoder was tuned on level-1 distributions renders them by default: one SoundStorm
    pass, deterministic whatever the seed; --iterations or --decoding paper sample codes as before;
    asking a codes-only bundle for the posterior, or the posterior for draws, is one error line."""
    from conftest import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path, posterior_codec=True)
    synth = Synthesizer.from_checkpoint(str(bundle), device="cpu")
    assert synth.codec.renders_posterior
    one = synth.say("Hello there.", seed=3, options=ESPEAK)
    other_seed = synth.say("Hello there.", seed=4, options=ESPEAK)
    assert one.decoding == "posterior" and one.forward_passes == 1
    assert np.isfinite(one.audio).all() and np.array_equal(one.audio, other_seed.audio)
    paper = synth.say("Hello there.", seed=3, options=dataclasses.replace(ESPEAK, decoding="paper"))
    assert paper.decoding == "paper" and paper.forward_passes > 1
    assert not np.array_equal(paper.audio, one.audio)
    sampled = synth.say("Hello there.", seed=3, options=dataclasses.replace(ESPEAK, iterations=(4, 1)))
    assert sampled.decoding == "paper" and sampled.forward_passes == 5
    text = "This sentence is long enough to need more than one of the tiny model's six-second windows."
    long = synth.say(text, seed=3, options=ESPEAK)  # prompt + speech past the window: one pass a window
    assert long.duration_s > 4 and long.forward_passes > 1 and np.isfinite(long.audio).all()
    code, _, stderr = cli(
        "say",
        "Hi.",
        "-o",
        tmp_path / "a.wav",
        "--checkpoint",
        bundle,
        "--decoding",
        "posterior",
        "--iterations",
        "4,1",
    )
    assert code == 2 and stderr.startswith("error: posterior decoding") and len(stderr.splitlines()) == 1


@pytest.mark.slow
def test_a_decoder_that_reads_voices_gives_each_turn_its_own_prompts(tmp_path):
    """With a decoder that reads voice vectors, every frame of a turn (and the pause after it) carries
    its speaker's prompt's vector; both decodings render."""
    from conftest import build_tiny_bundle

    from soundstorm.chain.synthesize import segments_of

    bundle = build_tiny_bundle(tmp_path, voice_codec=True)
    synth = Synthesizer.from_checkpoint(str(bundle), device="cpu")
    assert synth.codec.reads_voice
    script = parse_script("[A] Hello there. [B] Hi, how are you? [A] Fine.")
    files = {"A": bundle / "voices" / "v0.wav", "B": bundle / "voices" / "v1.wav"}
    one = synth.dialogue(script, voices=files, seed=3, options=ESPEAK)
    assert one.decoding == "posterior" and np.isfinite(one.audio).all()
    prompts = {s: synth.prompt(f, ESPEAK.prompt_seconds) for s, f in files.items()}
    segments = segments_of(list(script.turns), 0.3)
    track = synth.voice_track(segments, [(0, 10), (14, 30), (36, 40)], 45, prompts)
    own = {s: synth.codec.voice(p.codes) for s, p in prompts.items()}
    for segment, (start, end) in zip(segments, [(0, 14), (14, 36), (36, 45)], strict=True):
        assert torch.equal(track[start:end], own[segment.speaker].expand(end - start, -1))
    paper = synth.dialogue(
        script, voices=files, seed=3, options=dataclasses.replace(ESPEAK, decoding="paper")
    )
    assert paper.decoding == "paper" and np.isfinite(paper.audio).all()


def test_a_codes_only_bundle_refuses_posterior_decoding(cli, tiny_bundle, tmp_path):
    out = tmp_path / "p.wav"
    code, stdout, stderr = cli("say", "Hi.", "-o", out, "--checkpoint", tiny_bundle, "--json")
    assert code == 0 and json.loads(stdout)["decoding"] == "paper", stderr
    code, _, stderr = cli("say", "Hi.", "-o", out, "--checkpoint", tiny_bundle, "--decoding", "posterior")
    assert (
        code == 2
        and stderr.strip().startswith("error: this bundle")
        and len(stderr.strip().splitlines()) == 1
    )


@pytest.mark.slow
def test_a_prompt_is_encoded_once_then_read_from_the_cache(synth, tmp_path, monkeypatch):
    """The second render with the same prompt reads its tokens from the cache and sounds the same; a damaged
    entry is computed again; SOUNDSTORM_NO_CACHE=1 turns the cache off."""
    from soundstorm.chain import prompt_cache

    monkeypatch.setenv("SOUNDSTORM_HOME", str(tmp_path / "home"))
    prompt = tmp_path / "voice.wav"
    sf.write(prompt, voice_like(2.5, 16000, 150.0, seed=11), 16000)
    encodes = []
    real_encode = synth.codec.encode
    monkeypatch.setattr(synth.codec, "encode", lambda *a, **k: encodes.append(1) or real_encode(*a, **k))
    first = synth.say("Cached prompts.", prompt=prompt, seed=2, options=ESPEAK)
    (entry,) = (tmp_path / "home" / "cache" / "prompts").glob("*.safetensors")
    second = synth.say("Cached prompts.", prompt=prompt, seed=2, options=ESPEAK)
    assert len(encodes) == 1 and np.array_equal(first.audio, second.audio)
    entry.write_bytes(b"not safetensors")
    third = synth.say("Cached prompts.", prompt=prompt, seed=2, options=ESPEAK)
    assert len(encodes) == 2 and np.array_equal(first.audio, third.audio)
    monkeypatch.setenv(prompt_cache.ENV_OFF, "1")
    synth.say("Cached prompts.", prompt=prompt, seed=2, options=ESPEAK)
    assert len(encodes) == 3
