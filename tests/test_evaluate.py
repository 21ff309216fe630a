"""evaluate.py: the scoring functions, checked by hand-worked cases."""

from __future__ import annotations

from soundstorm.measures.evaluate import cer, edit_distance, normalize_for_scoring, wer, word_recall


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


def test_word_recall_counts_the_texts_words_heard_anywhere():
    assert word_recall("The cat sat on the mat.", "the mat, the cat") == 4 / 6
    assert word_recall("Two dogs.", "2 dogs") == 1.0  # numbers spelled out on both sides
    assert word_recall("Hello there", "") == 0.0
    assert word_recall("", "anything") == 0.0
