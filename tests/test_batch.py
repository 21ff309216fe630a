"""batch.py and the batch doors: `dialogue A B FOLDER -o OUT/`, `say --lines FILE -o OUT/` (issue 26)."""

from __future__ import annotations

import json

import pytest
import soundfile as sf


@pytest.mark.slow
def test_a_batch_with_one_broken_script_renders_the_others_and_exits_non_zero(cli, tiny_bundle, tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "a.txt").write_text("[S1] Hello there.\n[S2] Hi, how are you?\n")
    (folder / "b.txt").write_text("[S1] Hi (laugh) there.\n")  # an unknown directive
    single = tmp_path / "c.txt"
    single.write_text("[A] Good morning.\n")
    out = tmp_path / "out"
    code, stdout, stderr = cli(
        "dialogue", folder, single, "-o", out, "--checkpoint", tiny_bundle, "--frontend", "espeak", "--json",
        "--format", "flac",
    )  # fmt: skip
    assert code == 5, stderr
    report = json.loads(stdout)
    assert report["failed"] == 1
    assert [(r["input"].rsplit("/", 1)[-1], r["ok"]) for r in report["items"]] == [
        ("a.txt", True),
        ("b.txt", False),
        ("c.txt", True),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.flac", "c.flac"]
    assert sf.info(out / "a.flac").samplerate == 16000
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert (
        len(errors) == 2
        and "b.txt:1:9: unknown directive" in errors[0]
        and "1 of 3 items failed" in errors[1]
    )


def test_say_lines_renders_one_file_per_line(cli, tiny_bundle, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("Good morning.\n\n?!...\nSee you tomorrow.\n")
    out = tmp_path / "out"
    code, stdout, stderr = cli("say", "--lines", lines, "-o", out, "--checkpoint", tiny_bundle, "--json")
    assert code == 5, stderr
    report = json.loads(stdout)
    assert [r["ok"] for r in report["items"]] == [True, False, True]
    assert "lines.txt:3: nothing to speak" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["line-001.wav", "line-003.wav"]


def test_batch_mistakes_are_refused_before_loading(cli, tmp_path):
    (tmp_path / "a.txt").write_text("[S1] Hi.\n")
    (tmp_path / "b.txt").write_text("[S1] Hi.\n")
    a, b, o = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "o"
    for args, expected, words in (
        (["dialogue", a, b, "-o", tmp_path / "x.wav"], 2, "renders into a folder"),
        (["dialogue", a, b, "-o", o, "--timings", "t.srt"], 2, "--timings"),
        (["dialogue", tmp_path, "-o", o, "--format", "aiff"], 3, "unknown audio extension"),
        (["say", "Hi.", "--lines", a], 2, "not both"),
        (["say", "--lines", tmp_path / "missing.txt", "-o", o], 2, "no such file"),
    ):
        code, _, stderr = cli(*args)
        assert code == expected and stderr.startswith("error: ") and words in stderr, (args, stderr)
