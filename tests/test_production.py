"""production.py and its flags: stems, stereo placement, loudness, MP3 (issue 26)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from soundstorm.base.errors import InputError
from soundstorm.chain.synthesize import TurnTiming
from soundstorm.io.production import (
    Production,
    default_pans,
    integrated_loudness,
    pan_gains,
    produce,
    split_stems,
    true_peak_db,
)

RATE = 16000


def programme(seconds: float = 12.0):
    """Two speakers taking turns: speech-like buzz at two pitches with short gaps."""
    parts, turns, at = [], [], 0.0
    for n in range(int(seconds // 3)):
        speaker, pitch = ("S1", 120.0) if n % 2 == 0 else ("S2", 210.0)
        clip = np.concatenate([voice_like(2.7, RATE, pitch, n), np.zeros(int(0.3 * RATE), np.float32)])
        turns.append(TurnTiming(speaker, "text", at, at + 2.7))
        parts.append(clip)
        at += len(clip) / RATE
    return np.concatenate(parts), turns


@pytest.mark.parametrize("pan", np.linspace(-1, 1, 9))
def test_the_pan_law_keeps_the_power(pan):
    left, right = pan_gains(float(pan))
    assert left**2 + right**2 == pytest.approx(1.0)
    assert left >= 0 and right >= 0 and (left >= right) == (pan <= 0)


def test_default_pans_put_s1_left_and_s2_right():
    assert default_pans(["S1", "S2"]) == {"S1": -0.3, "S2": 0.3}
    assert default_pans(["A"]) == {"A": 0.0}
    assert list(default_pans(["A", "B", "C"]).values()) == [-0.3, 0.0, 0.3]


@pytest.mark.parametrize("stereo", [False, True])
def test_stems_add_up_to_the_mix(stereo):
    audio, turns = programme()
    produced = produce(audio, turns, RATE, Production(stereo=stereo, stems=True))
    total = sum(produced.stems.values())
    assert produced.mix.shape == ((len(audio), 2) if stereo else (len(audio),))
    assert np.abs(total - produced.mix).max() < 1e-6
    first = split_stems(audio, turns, RATE)["S1"]
    assert np.array_equal(first[: int(2.7 * RATE)], audio[: int(2.7 * RATE)])  # S1's turn is S1's
    assert not first[int(3.1 * RATE) : int(5.5 * RATE)].any()  # silence during S2's


def test_stereo_places_each_speaker_where_asked():
    audio, turns = programme()
    produced = produce(audio, turns, RATE, Production(stereo=True, pans={"S1": -1.0}))
    s1 = slice(0, int(2.7 * RATE))
    assert np.abs(produced.mix[s1, 1]).max() < 1e-6  # hard left: nothing on the right
    s2 = slice(int(3.1 * RATE), int(5.5 * RATE))
    left, right = np.abs(produced.mix[s2]).max(axis=0)
    assert right > left > 0  # S2 by default slightly right


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_loudness_reaches_its_target_under_the_true_peak_ceiling(target):
    audio, turns = programme()
    produced = produce(audio * 0.05, turns, RATE, Production(loudness_lufs=target, true_peak_db=-1.0))
    assert integrated_loudness(produced.mix, RATE) == pytest.approx(target, abs=0.5)
    assert true_peak_db(produced.mix, RATE) <= -1.0 + 0.05
    report = produced.loudness
    assert (
        report["after"]["lufs"] == pytest.approx(target, abs=0.5) and report["limiter"]["max_reduction_db"] < 0.5
    )


def test_a_loud_target_is_reached_by_limiting_the_peaks_not_by_turning_down():
    """Issue 38: -16 LUFS under -1 dBTP on peaky speech gave -17.9 when the ceiling turned the gain down."""
    peaky, turns = peaky_programme()
    for target in (-16.0, -10.0):
        produced = produce(peaky, turns, RATE, Production(loudness_lufs=target, true_peak_db=-1.0))
        assert integrated_loudness(produced.mix, RATE) == pytest.approx(target, abs=0.5)
        assert true_peak_db(produced.mix, RATE) <= -1.0 + 1e-6
        report = produced.loudness
        assert report["limiter"]["max_reduction_db"] > 0.3 and report["limiter"]["limited_share"] > 0
        assert report["after"]["true_peak_db"] <= -1.0 and math.isfinite(report["before"]["lufs"])


def peaky_programme():
    audio, turns = programme()
    bursts = np.arange(len(audio)) % 8000 < 16  # short bursts 12 dB over the rest, every half second
    return (audio * (1 + 3 * bursts)).astype(np.float32), turns


def test_limited_stems_still_add_up_to_the_mix():
    audio, turns = peaky_programme()
    production = Production(stereo=True, stems=True, loudness_lufs=-9.0, true_peak_db=-1.0)
    produced = produce(audio, turns, RATE, production)
    assert produced.loudness["limiter"]["max_reduction_db"] > 0.5  # the limiter did work
    assert np.allclose(sum(produced.stems.values()), produced.mix, atol=1e-5)


def test_production_flags_are_checked_before_anything_runs():
    with pytest.raises(InputError, match="add --stereo"):
        Production(pans={"S1": 0.5}).check(["S1"])
    with pytest.raises(InputError, match="S9, who has no turn"):
        Production(stereo=True, pans={"S9": 0.5}).check(["S1"])
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        Production(stereo=True, pans={"S1": 2.0}).check(["S1"])
    with pytest.raises(InputError, match="LUFS"):
        Production(loudness_lufs=3.0).check(["S1"])
    with pytest.raises(InputError, match="dBTP"):
        Production(loudness_lufs=-16.0, true_peak_db=2.0).check(["S1"])


def test_cli_dialogue_in_stereo_with_stems_and_a_loudness_target(cli, tiny_bundle, tmp_path):
    script = tmp_path / "d.txt"
    script.write_text("[A] Hello there, how are you?\n[B] Fine, thank you. And you?\n[A] Very well.\n")
    out, stems = tmp_path / "show.wav", tmp_path / "stems"
    code, stdout, stderr = cli(
        "dialogue", script, "-o", out, "--checkpoint", tiny_bundle, "--frontend", "espeak", "--json",
        "--stereo", "--stems", stems, "--loudness", "-20",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    mix, rate = sf.read(out, dtype="float32")
    assert mix.shape[1] == 2 and summary["channels"] == 2
    parts = {s: sf.read(p, dtype="float32")[0] for s, p in summary["stems"].items()}
    assert sorted(parts) == ["A", "B"] and sorted(p.name for p in stems.iterdir()) == [
        "show.A.wav",
        "show.B.wav",
    ]
    assert np.abs(sum(parts.values()) - mix).max() < 1e-4
    assert summary["loudness"]["after"]["true_peak_db"] <= -0.95


def test_cli_production_mistakes_fail_before_loading(cli, tmp_path, monkeypatch):
    from soundstorm.chain.synthesize import Synthesizer

    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(Synthesizer, "from_checkpoint", classmethod(refuse))
    out = tmp_path / "o.wav"
    for args, words in (
        (["--pan", "S1=0.2"], "add --stereo"),
        (["--stereo", "--pan", "S1=left"], "PAN a number"),
        (["--loudness", "0"], "LUFS"),
        (["--stems", tmp_path / "missing" / "deeper"], "parent folder does not exist"),
    ):
        code, _, stderr = cli("say", "Hello.", "-o", out, *args)
        assert code == 2 and stderr.startswith("error: ") and words in stderr, stderr
    assert not out.exists()


def test_mp3_is_written_where_libsndfile_can_and_refused_in_one_line_where_not(cli, tmp_path, monkeypatch):
    from soundstorm.io.audio import write_audio

    if "MP3" in sf.available_formats():
        path = write_audio(tmp_path / "a.mp3", voice_like(1.0, RATE, 150.0, 0), RATE)
        data, rate = sf.read(path)
        assert rate == RATE and abs(len(data) - RATE) < 2000
    monkeypatch.setattr(sf, "available_formats", lambda: {"WAV": "", "FLAC": "", "OGG": ""})
    code, _, stderr = cli("say", "Hello.", "-o", tmp_path / "b.mp3")
    assert code == 3 and "cannot write MP3" in stderr and not (tmp_path / "b.mp3").exists()
