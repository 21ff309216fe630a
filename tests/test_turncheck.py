"""turncheck.py: hearing each turn, retrying the weak ones, splicing the best tries (issue 26, item 5)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from soundstorm.base.errors import InputError
from soundstorm.chain.script import parse_script
from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer
from soundstorm.chain.turncheck import best_of_tries, check_retry_options, turn_frames

HOP = 4


@given(st.lists(st.integers(1, 40), min_size=1, max_size=12), st.integers(1, 3), st.integers(0, 20))
def test_turn_frames_tile_the_render(lengths, per_turn, tail):
    """Segments of consecutive turns -> ranges that start at 0, end at the last frame, and never overlap."""
    turn_of, spans, at = [], [], 0
    for n, length in enumerate(lengths):
        turn_of.append(n // per_turn)
        spans.append((at, at + length))
        at += length + 2  # a pause after each segment
    ranges = turn_frames(turn_of, spans, at + tail)
    assert len(ranges) == turn_of[-1] + 1
    assert ranges[0][0] == 0 and ranges[-1][1] == at + tail
    assert all(a < b for a, b in ranges)
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    for turn, (start, end) in zip(turn_of, spans, strict=True):  # each segment inside its own turn's range
        assert ranges[turn][0] <= start and end <= ranges[turn][1]


def _fake_chain(good_tries: dict[int, set[int]]):
    """Try k's codes are all k; turn n is heard right only in the tries good_tries[n]."""
    texts = ["alpha beta", "gamma delta", "epsilon zeta"]
    ranges = [(0, 10), (10, 20), (20, 30)]
    turns = [
        (f"S{n % 2 + 1}", t, (a * HOP, b * HOP))
        for n, (t, (a, b)) in enumerate(zip(texts, ranges, strict=True))
    ]
    rendered = []

    def render(k):
        rendered.append(k)
        return torch.full((2, 30), k, dtype=torch.long)

    def decode(codes):
        return np.repeat(codes[0].numpy().astype(np.float32), HOP)

    # a piece alone does not say which turn it is: the test lists the turns it expects to be asked about
    asked = []

    def hear_turn(piece):
        n = asked.pop(0)
        k = int(piece[0])
        return texts[n] if k in good_tries.get(n, set()) else "nothing"

    return render, decode, hear_turn, turns, ranges, rendered, asked


def test_weak_turns_take_their_best_try_and_strong_ones_stay():
    render, decode, hear, turns, ranges, rendered, asked = _fake_chain({0: {0}, 1: {2}, 2: set()})
    asked.extend([0, 1, 2, 1, 2, 1, 2, 2])  # try 0: all; try 1: turns 1, 2; try 2: 1, 2; try 3: only 2
    codes, checks = best_of_tries(render, decode, hear, turns, ranges, retries=3, threshold=0.8)
    assert rendered == [0, 1, 2, 3]
    assert [c.recall for c in checks] == [1.0, 1.0, 0.0]
    assert [c.tries for c in checks] == [1, 3, 4]  # turn 1 was fixed by try 2 and left alone after it
    assert (codes[:, 0:10] == 0).all() and (codes[:, 10:20] == 2).all() and (codes[:, 20:30] == 0).all()
    assert checks[1].heard == "gamma delta" and not asked


def test_no_retry_once_every_turn_is_heard():
    render, decode, hear, turns, ranges, rendered, asked = _fake_chain({0: {0}, 1: {0}, 2: {0}})
    asked.extend([0, 1, 2])
    codes, checks = best_of_tries(render, decode, hear, turns, ranges, retries=5, threshold=0.8)
    assert rendered == [0] and [c.tries for c in checks] == [1, 1, 1] and (codes == 0).all()


def test_a_check_without_retries_only_reports():
    render, decode, hear, turns, ranges, rendered, asked = _fake_chain({})
    asked.extend([0, 1, 2])
    _, checks = best_of_tries(render, decode, hear, turns, ranges, retries=0, threshold=0.8)
    assert rendered == [0] and [c.recall for c in checks] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("retries, threshold", [(-1, 0.8), (11, 0.8), (1, 0.0), (1, 1.5)])
def test_retry_options_are_bounded(retries, threshold):
    with pytest.raises(InputError):
        check_retry_options(retries, threshold)


class FakeEars:
    """Stands in for Whisper: hears a turn's text only in renders whose audio it has been told to like."""

    def __init__(self):
        self.calls = 0

    def __call__(self, samples, sample_rate):
        self.calls += 1
        return "hello there" if float(np.abs(samples).mean()) > self.bar else "mumble"


@pytest.fixture(scope="module")
def synth(tiny_bundle):
    return Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu")


@pytest.mark.slow
def test_retries_render_again_and_stay_deterministic(synth):
    script = parse_script("[A] Hello there.\n[B] Hello there, again.\n")
    ears = synth._transcriber = FakeEars()
    ears.bar = np.inf  # never heard: every try is spent
    options = SynthesisOptions(frontend="espeak", retries=2, check_threshold=1.0)
    plain = synth.dialogue(script, seed=4, options=SynthesisOptions(frontend="espeak"))
    a = synth.dialogue(script, seed=4, options=options)
    b = synth.dialogue(script, seed=4, options=options)
    assert np.array_equal(a.audio, b.audio)
    assert [c.tries for c in a.checks] == [3, 3] and all(c.recall < 1 for c in a.checks)
    assert a.forward_passes == 3 * plain.forward_passes
    assert np.array_equal(a.audio, plain.audio)  # no try was better, so the first render stands
    assert "check" in a.timings and plain.checks is None

    ears.bar = -1.0  # everything heard at once: no retry
    calls = ears.calls
    c = synth.dialogue(script, seed=4, options=dataclasses.replace(options, check_threshold=0.6))
    assert [ch.tries for ch in c.checks] == [1, 1] and [round(ch.recall, 3) for ch in c.checks] == [
        1.0,
        0.667,
    ]
    assert ears.calls - calls == 2 and c.forward_passes == plain.forward_passes


def test_cli_check_reports_every_turn(cli, tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr("soundstorm.measures.evaluate.Transcriber", lambda *a, **k: lambda s, r: "hello")
    script = tmp_path / "s.txt"
    script.write_text("[A] Hello there.\n[B] Hello again.\n")
    out = tmp_path / "out.wav"
    code, stdout, stderr = cli(
        "dialogue",
        str(script),
        "-o",
        str(out),
        "--checkpoint",
        str(tiny_bundle),
        "--frontend",
        "espeak",
        "--retries",
        "1",
        "--json",
    )
    assert code == 0, stderr
    checks = json.loads(stdout)["checks"]
    assert [c["speaker"] for c in checks] == ["A", "B"]
    assert [c["recall"] for c in checks] == [0.5, 0.5] and [c["tries"] for c in checks] == [2, 2]
    code, _, stderr = cli(
        "dialogue", str(script), "-o", str(out), "--checkpoint", str(tiny_bundle), "--retries", "11"
    )
    assert code == 2 and stderr.startswith("error: --retries")
