"""text.py: the normaliser shared by corpus and inference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from soundstorm_cli.text import (
    CONTROL_PIECES,
    normalize,
    normalize_keep_controls,
    number_to_words,
    ordinal_to_words,
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
