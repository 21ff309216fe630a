"""evaluate.py: the scoring functions, checked by hand-worked cases."""

from __future__ import annotations

from soundstorm_cli.evaluate import cer, edit_distance, normalize_for_scoring, wer


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance(["a", "b"], ["a", "b"]) == 0


def test_scoring_normalises_numbers_and_punctuation():
    assert normalize_for_scoring("It's 5 o'clock, Dr. Who!") == "it's five o'clock doctor who"
    assert cer("Hello, world.", "hello world") == 0.0
    assert wer("I have 2 cats.", "I have two cats") == 0.0
    assert wer("one two three four", "one three four") == 0.25
    assert cer("abcd", "") == 1.0
