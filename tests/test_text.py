"""text.py: the normaliser shared by corpus and inference."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soundstorm.chain.text import (
    CONTROL_PIECES,
    normalize,
    normalize_keep_controls,
    number_to_words,
    ordinal_to_words,
    tidy_punctuation,
    year_to_words,
)


def test_numbers():
    assert number_to_words(0) == "zero"
    assert number_to_words(21) == "twenty-one"
    assert number_to_words(105) == "one hundred five"
    assert (
        number_to_words(1_234_567) == "one million two hundred thirty-four thousand five hundred sixty-seven"
    )
    assert (
        ordinal_to_words(1) == "first"
        and ordinal_to_words(22) == "twenty-second"
        and ordinal_to_words(40) == "fortieth"
    )
    assert year_to_words(1984) == "nineteen eighty-four" and year_to_words(2005) == "two thousand five"
    assert year_to_words(1900) == "nineteen hundred" and year_to_words(1907) == "nineteen oh seven"


def test_sentences():
    assert (
        normalize("It costs $3.50 at 7:05 pm.")
        == "It costs three dollars and fifty cents at seven oh five P M."
    )
    assert normalize("Dr. Smith has 1,200 cats & 3 dogs (100%).") == (
        "doctor Smith has one thousand two hundred cats and three dogs, one hundred percent."
    )
    assert normalize("On May 21st, 1984!") == "On May twenty-first, nineteen eighty-four!"
    assert normalize("Wait , what ?") == "Wait, what?"


def test_control_pieces_survive():
    text = "<spk1> I paid $5. <pause> <spk2> Why?"
    assert normalize_keep_controls(text) == "<spk1> I paid five dollars. <pause> <spk2> Why?"


@given(st.text(max_size=200))
def test_any_text_normalises_to_plain_words(text):
    out = normalize(text)
    assert not any(c.isdigit() for c in out)
    assert set(out) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,?!'- ")
    assert normalize(out) == out or not out  # idempotent on its own output
    assert not any(p in out for p in CONTROL_PIECES)


# -- hostile input: time linear in the text (issue 48, class 1) ----------------------------------------


def _tidy_by_regex(text: str) -> str:
    """The rules `tidy_punctuation` implements, as the regular expressions they were (quadratic on long runs
    of spaces or commas, fine on short text): the oracle for the property test below."""
    text = re.sub(r"\s+([.,?!])", r"\1", text)
    text = re.sub(r"[,\s]*([.?!])", r"\1", text)
    text = re.sub(r"([.,?!])(?:\s*[.,])+", r"\1", text)
    return re.sub(r"\s+", " ", text).strip(" ,")


@given(st.text(alphabet="ab ,.?!'-", max_size=40))
def test_tidy_punctuation_keeps_the_rules(text):
    assert tidy_punctuation(text) == _tidy_by_regex(text)


HOSTILE = {
    "spaces": " " * 200_000 + "a",
    "commas": "a" + "," * 200_000,
    "comma runs in numbers": "1,," * 70_000,
    "emoji": "\U0001f600" * 200_000 + "a",
    "spaces before no mark": "a" + " " * 100_000 + "b",
    "times": "1:00 a.m. " * 20_000,
}


@pytest.mark.parametrize("name", HOSTILE)
def test_normalisation_is_linear(name):
    """200k characters of what took seconds at 16k (16k spaces: 3.8 s; quadratic, so 200k would take
    minutes): a generous bound that a quadratic pass cannot meet and a linear one meets on a busy machine."""
    started = time.perf_counter()
    normalize(HOSTILE[name])
    assert time.perf_counter() - started < 5.0


def test_doubled_commas_are_a_pause_not_a_digit_group():
    assert normalize("1,,2") == "one, two"
    assert normalize("1,000") == "one thousand"
