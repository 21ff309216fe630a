"""The dialogue script format: examples, every error with its line and column, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.base.errors import ScriptError
from soundstorm.chain.script import Pause, Script, Turn, format_script, parse_script

DESIGN_EXAMPLE = """\
# comment
---                      # optional YAML front matter
voices:
  S1: voices/alice.wav   # paths relative to the script
  S2: voices/bob.wav
---
[S1] Hello there. How was the trip?
[S2] Long, but worth it. (pause 0.5) We saw the coast.
[S1] I want to hear everything.
"""


def test_design_example(tmp_path):
    script = parse_script(DESIGN_EXAMPLE, base_dir=tmp_path)
    assert [t.speaker for t in script.turns] == ["S1", "S2", "S1"]
    assert script.turns[1].parts == ("Long, but worth it.", Pause(0.5), "We saw the coast.")
    assert script.turns[1].text == "Long, but worth it. We saw the coast."
    assert script.voice_path("S2") == tmp_path / "voices/bob.wav"
    assert script.speakers == ["S1", "S2"]
    assert (script.turns[0].line, script.turns[0].column) == (7, 1)


def test_several_turns_per_line_and_turns_across_lines():
    script = parse_script("[A] one. [B] two.\nstill two. [A] (pause 1) three\n")
    assert [(t.speaker, t.parts) for t in script.turns] == [
        ("A", ("one.",)),
        ("B", ("two. still two.",)),
        ("A", (Pause(1.0), "three")),
    ]


def test_parenthesised_speech_is_text():
    (turn,) = parse_script("[S1] We went (all of us) home.").turns
    assert turn.text == "We went all of us home."


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("Hello\n[S1] hi", ":1:1:", "before the first turn"),
        ("[S1] hi [S2]\n", ":1:9:", "empty turn"),
        ("[S1 hi", ":1:1:", "unclosed '['"),
        ("[S1] hi (pause 0.5", ":1:9:", "unclosed '('"),
        ("[S1] hi\n[1x] no", ":2:2:", "not a speaker name"),
        ("[S1] hi (laugh) yes", ":1:9:", "unknown directive"),
        ("[S1] hi (pause -1)", ":1:9:", "(pause SECONDS)"),
        ("[S1] hi (pause soon)", ":1:9:", "(pause SECONDS)"),
        ("[S1] hi ] there", ":1:9:", "']' without"),
        ("---\nvoices: [a, b\n---\n[S1] hi", ":2:", "front matter"),
        ("---\nspeed: 2\n---\n[S1] hi", ":2:1:", "unknown key 'speed'"),
        ("---\nvoices: {S1: a.wav}\n[S1] hi", ":1:1:", "never closed"),
        ("---\n- a\n---\n[S1] hi", ":2:1:", "must be a mapping"),
    ],
)
def test_errors_name_line_and_column(text, where, words):
    with pytest.raises(ScriptError) as caught:
        parse_script(text, source="s.txt")
    message = str(caught.value)
    assert message.startswith("s.txt" + where), message
    assert words in message


def test_empty_and_comment_only_scripts_fail():
    for text in ("", "   \n", "# only a comment\n"):
        with pytest.raises(ScriptError, match="empty"):
            parse_script(text)


def test_a_byte_order_mark_is_not_text():
    """Notepad saves UTF-8 with a BOM; the script is the same script."""
    plain = "[A] Hello there.\r\n[B] Fine.\r\n"
    assert parse_script(b"\xef\xbb\xbf" + plain.encode()) == parse_script(plain)
    assert parse_script("\ufeff" + plain) == parse_script(plain)


def test_undecodable_bytes_give_line_and_column():
    with pytest.raises(ScriptError, match=r":2:6: not UTF-8"):
        parse_script(b"[S1] ok\n[S2] \xff\xfe bad", source="x")


def test_voice_for_unknown_speaker_fails():
    with pytest.raises(ScriptError, match="no turn: S3"):
        parse_script("---\nvoices: {S3: a.wav}\n---\n[S1] hi")


# Property tests: any valid script round-trips; random input never raises anything but ScriptError.

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
words = st.from_regex(r"[A-Za-z0-9,.?!'-]{1,8}", fullmatch=True)
texts = st.lists(words, min_size=1, max_size=6).map(" ".join)
pauses = st.floats(min_value=0.01, max_value=30).map(lambda s: Pause(float(f"{s:g}")))


@st.composite
def turns(draw):
    parts = draw(st.lists(st.one_of(texts, pauses), min_size=1, max_size=4))
    merged: list = []
    for p in parts:  # adjacent texts are one text piece, as the parser makes them
        if merged and isinstance(p, str) and isinstance(merged[-1], str):
            merged[-1] += " " + p
        else:
            merged.append(p)
    if not any(isinstance(p, str) for p in merged):
        merged.append(draw(texts))
    return Turn(draw(names), tuple(merged))


@st.composite
def scripts(draw):
    body = tuple(draw(st.lists(turns(), min_size=1, max_size=6)))
    speakers = sorted({t.speaker for t in body})
    chosen = draw(st.lists(st.sampled_from(speakers), unique=True, max_size=len(speakers)))
    voices = {s: draw(st.from_regex(r"[a-z]{1,6}/[a-z]{1,6}\.wav", fullmatch=True)) for s in chosen}
    return Script(body, voices, draw(st.none() | st.from_regex(r"[A-Za-z][A-Za-z ]{0,10}", fullmatch=True)))


@settings(max_examples=200, deadline=None)
@given(scripts())
def test_valid_scripts_round_trip(script):
    assert parse_script(format_script(script)) == script


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_script_errors(data):
    try:
        parse_script(data)
    except ScriptError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("[]()#-:\n S1A2 pause0.5yaml{}\t"), max_size=120))
def test_script_like_text_raises_only_script_errors(text):
    try:
        script = parse_script(text)
    except ScriptError:
        return
    assert all(t.text for t in script.turns)
