"""pipelines/data/natural_voices.py: espeak-ng IPA in Kokoro's symbols, the identities, a real Kokoro render."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from pipelines.config import load_config
from pipelines.data.natural_voices import (
    NATURAL_HELD_OUT,
    PACKS,
    available,
    ipa_to_kokoro,
    kokoro_phonemes,
    natural_voices,
    select_natural,
)
from pipelines.stages.corpus import corpus_voices, plan, render_order

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (.ci/setup)")


@pytest.mark.parametrize(
    ("espeak", "kokoro"),
    [
        ("həlˈo^ʊ", "həlˈO"),  # hello: the GOAT diphthong is one letter
        ("d^ʒˈʌd^ʒ", "ʤˈʌʤ"),  # judge: affricates are one letter
        ("t^ʃˈɜːt^ʃ", "ʧˈɜɹʧ"),  # church: en-us's long NURSE vowel is r-coloured
        ("wˈɔːɾɚ", "wˈɔTəɹ"),  # water: length dropped, the flap is T, ɚ is əɹ
        ("kwˈa^ɪ^ɚ", "kwˈIəɹ"),  # choir
        ("bˈɔ^ɪz", "bˈYz"),  # boys
        ("hˈa^ʊs", "hˈWs"),  # house
        ("dˈe^ɪ", "dˈA"),  # day
        ("ðˈɛ^ɹ  ", "ðˈɛɹ"),  # there: a stray tie and spaces removed
    ],
)
def test_ipa_to_kokoro_on_hand_checked_words(espeak, kokoro):
    assert ipa_to_kokoro(espeak) == kokoro


@needs_espeak
def test_kokoro_phonemes_keep_clause_punctuation():
    assert kokoro_phonemes("Hello, world.") == "həlˈO, wˈɜɹld."
    assert kokoro_phonemes("Judge the bird?").endswith("bˈɜɹd?")
    assert kokoro_phonemes("...") == ""


def test_identities_are_distinct_and_held_out_ones_exist():
    voices = natural_voices()
    names = [v.name for v in voices]
    assert len(names) == len(set(names)) >= 40
    assert set(NATURAL_HELD_OUT) <= set(names)
    assert all(name in PACKS for v in voices for name, _ in v.blend)
    # the held-out identities span both the male pack and the female ones
    held = [v for v in voices if v.name in NATURAL_HELD_OUT]
    assert any(dict(v.blend).get("jm_kumo", 0) > 0.5 for v in held)
    assert any("jm_kumo" not in dict(v.blend) for v in held)
    toy, toy_held = select_natural("toy")
    assert toy_held <= {v.name for v in toy}
    with pytest.raises(ValueError):
        select_natural("some")


@pytest.mark.slow
def test_natural_groups_leave_the_synthetic_plan_alone_and_render_first():
    base = load_config("pipelines/configs/tiny.yaml", {"corpus.natural_hours": 0, "corpus.hours": 0.5})
    mixed = load_config("pipelines/configs/tiny.yaml", {"corpus.natural_hours": 0.3, "corpus.hours": 0.5})
    synthetic = [(i.id, i.split, [t.text for t in i.turns]) for i in plan(base)]
    items = plan(mixed)
    assert [(i.id, i.split, [t.text for t in i.turns]) for i in items if i.id[1] in "ah"] == synthetic
    natural = [i for i in items if i.id[1] in "nk"]
    hours = sum(len(t.text) for i in natural for t in i.turns) * 0.061 / 3600
    assert 0.25 < hours < 0.4
    kokoro = {v.name for v in natural_voices()}
    voices = corpus_voices(mixed)
    for item in natural:
        speakers = {t.speaker for t in item.turns}
        assert speakers <= kokoro and speakers <= set(voices)
        assert (item.split == "test") == bool(speakers & set(NATURAL_HELD_OUT))
    order = [i.id[1] for i in render_order(items)]
    assert order == sorted(order, key=lambda g: {"k": 0, "n": 1}.get(g, 2))


@pytest.mark.slow
@needs_espeak
@pytest.mark.skipif(not available(), reason="the corpus extra (Kokoro, onnxruntime) is not installed")
def test_a_short_phrase_through_the_real_kokoro(tmp_path):
    """Installed by .ci/setup: the real model, a blend across the packs and both moves."""
    voice = next(v for v in natural_voices() if v.name == "kokoro-nezumi-kumo-deep")
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    voice.render("Good morning, Anna.", first, 16000, stretch=1.0, gain_db=-3.0)
    voice.render("Good morning, Anna.", second, 16000, stretch=1.0, gain_db=-3.0)
    audio, rate = sf.read(first, dtype="float32")
    assert rate == 16000 and 0.5 < len(audio) / rate < 3.0
    assert 0.5 < np.abs(audio).max() <= 1.0  # gain -n -3: peaks near -3 dBFS, not silence
    assert np.array_equal(audio, sf.read(second, dtype="float32")[0])  # same input, same audio


def test_the_codec_evaluation_reads_the_held_out_natural_items(tmp_path):
    import json

    from pipelines.evaluations.codec import natural_rows

    (tmp_path / "wavs").mkdir()
    for item, split in (
        ("sk000001", "test"),
        ("sk000002", "test"),
        ("sn000001", "train"),
        ("sh000001", "test"),
    ):
        row = {"id": item, "split": split, "path": f"wavs/{item}.wav", "text": "hi", "speaker": "x"}
        (tmp_path / "wavs" / f"{item}.json").write_text(json.dumps(row))
    rows = natural_rows(tmp_path)
    assert [r["id"] for r in rows] == ["sk000001", "sk000002"]  # natural and held out only
    assert rows[0]["path"] == str(tmp_path / "wavs" / "sk000001.wav")


def test_the_codec_evaluation_gives_a_voice_decoder_the_whole_utterances_voice(tmp_path, monkeypatch):
    """A decoder that reads a voice vector resynthesises every level count with the voice of all the
    utterance's levels (as the chain gives it its prompt's), not of the levels it decodes."""
    import torch
    from conftest import tiny_frame_codec_config

    import pipelines.evaluations.codec as codec_eval
    from pipelines.stages.codec import save_codec
    from soundstorm.chain.codec import FrameCodecWrapper
    from soundstorm.models.frame_codec import FrameCodec

    config = tiny_frame_codec_config(voice_decoder=True)
    torch.manual_seed(0)
    save_codec(FrameCodec(config).eval(), tmp_path / "codec")
    wav = (np.random.default_rng(0).standard_normal(6400) * 0.1).astype(np.float32)
    sf.write(tmp_path / "a.wav", wav, 16000)
    seen = []
    decode = FrameCodecWrapper.decode

    def spy(self, codes, length=None, semantic=None, voice=None):
        seen.append((codes.shape[0], voice))
        return decode(self, codes, length, semantic, voice)

    monkeypatch.setattr(FrameCodecWrapper, "decode", spy)
    monkeypatch.setattr(codec_eval, "Transcriber", lambda: lambda audio: "hi")
    monkeypatch.setattr(codec_eval, "VoiceSimilarity", lambda: lambda a, b: 0.5)
    row = {"id": "sk000001", "path": str(tmp_path / "a.wav"), "text": "hi", "speaker": "x"}
    report = codec_eval.evaluate_codec(tmp_path / "codec", [row], levels=(3, 1))
    assert report["voice_vector"] == "the utterance's own"
    assert [q for q, _ in seen] == [3, 1]
    assert seen[1][1] is not None and torch.equal(seen[0][1], seen[1][1])  # all 3 levels' voice for both
    assert set(report["summary"]) == {"original", "codec_3", "codec_1"}


def test_bundled_voices_put_natural_ones_first_and_at_least_half(tmp_path):
    import json

    from pipelines.stages.bundle import bundle_voices

    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    speakers = [
        ("espeak-en-us+f3", "espeak", 4.0),
        ("flite-slt-300", "flite", 4.0),
        ("espeak-en-gb+m4", "espeak", 4.0),
        ("kokoro-tebu-deep", "kokoro", 4.0),
        ("flite-rms-300", "flite", 4.0),
        ("kokoro-gong-high", "kokoro", 4.0),
        ("kokoro-too-long", "kokoro", 9.0),  # no utterance of a bundled voice's length: not bundled
    ]
    rows = []
    for n, (name, engine, seconds) in enumerate(speakers):
        sf.write(corpus / "wavs" / f"{n}.wav", np.zeros(1600, np.float32), 16000)
        voice = {name: {"name": name, "engine": engine}}
        rows.append(
            {
                "id": str(n),
                "kind": "single",
                "split": "test",
                "path": f"wavs/{n}.wav",
                "text": f"t{n}",
                "speakers": [name],
                "voice": voice,
                "duration_s": seconds,
            }
        )
    rows.append(rows[0] | {"id": "x", "split": "train", "speakers": ["kokoro-trained"]})  # not held out
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = bundle_voices(tmp_path, tmp_path / "voices")
    names = [e["name"] for e in entries]
    # natural first (the default voice is natural), then as many synthetic ones, flite-derived first
    assert names == ["kokoro-gong-high", "kokoro-tebu-deep", "flite-rms-300", "flite-slt-300"]
    assert json.loads((tmp_path / "voices" / "voices.json").read_text()) == entries
    assert all((tmp_path / "voices" / e["file"]).exists() for e in entries)


@pytest.mark.parametrize("natural_hours", [0.0, 0.05])
def test_the_corpus_assembles_kokoro_once_before_its_workers_start(monkeypatch, tmp_path, natural_hours):
    """Kokoro's package assembles its model through one fixed temporary file: two workers doing it at once on a
    fresh machine crashed the corpus. The parent assembles it before the pool, and only when a natural voice
    is in the plan."""
    from pipelines.stages import corpus

    calls = []

    class Started(Exception):
        pass

    class FakePool:
        def __init__(self, workers):
            calls.append("pool")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def imap_unordered(self, *args, **kwargs):
            raise Started

    monkeypatch.setattr(corpus, "kokoro_model", lambda: calls.append("kokoro"))
    monkeypatch.setattr(corpus, "Pool", FakePool)
    config = load_config(
        "pipelines/configs/tiny.yaml",
        {"corpus.natural_hours": natural_hours, "corpus.hours": 0.05, "out_dir": str(tmp_path)},
    )
    with pytest.raises(Started):
        corpus.run(config)
    assert calls == (["kokoro", "pool"] if natural_hours else ["pool"])
