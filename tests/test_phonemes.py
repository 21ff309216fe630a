"""phonemes.py: espeak-ng phonemes as the T5's input (issue 37): clauses, the fixed vocabulary, control
pieces, the vocabulary file, and a bundle whose T5 reads phonemes."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.base.errors import CheckpointError
from soundstorm.chain.phonemes import (
    WORD,
    PhonemeTokenizer,
    espeak_clauses,
    load_text_tokenizer,
)
from soundstorm.chain.text import PAUSE, SEPARATOR, TextTokenizer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (.ci/setup)")


def test_clauses_keep_their_punctuation():
    assert espeak_clauses("Hello there, how was the trip?") == [("həlˈo^ʊ ðˈɛ^ɹ", ","), ("hˌa^ʊ wʌzðə tɹˈɪp", "?")]
    assert espeak_clauses("...") == [] and espeak_clauses("Yes!!") == [("jˈɛs", "!")]


def test_hand_checked_words_read_as_single_phoneme_symbols():
    tokenizer = PhonemeTokenizer()
    ids = tokenizer.encode("Hello, judge.")
    assert tokenizer.decode(ids) == "həlˈoʊ, dʒˈʌdʒ."
    pieces = [tokenizer.pieces[i] for i in ids]
    assert pieces == ["h", "ə", "l", "ˈ", "o^ʊ", ",", WORD, "d^ʒ", "ˈ", "ʌ", "d^ʒ", "."]  # diphthong, affricate: one each
    two_words = [tokenizer.pieces[i] for i in tokenizer.encode("big dog")]
    assert WORD in two_words and 0 not in tokenizer.encode("big dog")


def test_numbers_are_spoken_and_control_pieces_stay_single_ids():
    tokenizer = PhonemeTokenizer()
    assert tokenizer.decode(tokenizer.encode("7")) == tokenizer.decode(tokenizer.encode("seven"))
    ids = tokenizer.encode(f"<spk1> Hi. {SEPARATOR} <spk2> Oh {PAUSE} no")
    assert ids[0] == tokenizer.control_ids["<spk1>"] and tokenizer.control_ids[SEPARATOR] in ids
    assert tokenizer.control_ids["<spk2>"] in ids and tokenizer.control_ids[PAUSE] in ids
    # the same ids as SentencePiece gives the special and control pieces, so both read the same T5 layout
    spm = TextTokenizer("soundstorm/assets/tiny/text/spm.model")
    assert tokenizer.control_ids == spm.control_ids


def test_symbols_outside_the_vocabulary_read_as_unknown():
    tokenizer = PhonemeTokenizer(symbols=("n", "o^ʊ"))
    pieces = [tokenizer.pieces[i] for i in tokenizer.encode("no go")]
    assert pieces.count("<unk>") == 3  # ˈ, and g and ˈ of "go"; n and the diphthongs are known


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcdefghij klmnop.,?!'-0123456789")), max_size=40))
def test_any_text_gives_ids_in_the_vocabulary(text):
    tokenizer = PhonemeTokenizer()
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert "^" not in tokenizer.decode(ids)


def test_the_vocabulary_file_round_trips_and_is_chosen_over_spm(tmp_path):
    PhonemeTokenizer().save(tmp_path)
    loaded = load_text_tokenizer(tmp_path)
    assert isinstance(loaded, PhonemeTokenizer) and loaded.pieces == PhonemeTokenizer().pieces
    (tmp_path / "phonemes.json").write_text('{"format": "something-else", "symbols": []}')
    with pytest.raises(CheckpointError):
        load_text_tokenizer(tmp_path)
    assert isinstance(load_text_tokenizer("soundstorm/assets/tiny/text"), TextTokenizer)


def test_a_bundle_whose_t5_reads_phonemes_renders(tmp_path):
    from conftest import build_tiny_bundle

    from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer

    synth = Synthesizer.from_checkpoint(str(build_tiny_bundle(tmp_path, phonemes=True)), device="cpu")
    assert isinstance(synth.text_tokenizer, PhonemeTokenizer)
    result = synth.say("Hello there, friend.", seed=1, options=SynthesisOptions(frontend="t2s"))
    again = synth.say("Hello there, friend.", seed=1, options=SynthesisOptions(frontend="t2s"))
    assert result.frontend == "t2s" and len(result.audio) > 0 and (result.audio == again.audio).all()


def test_espeak_writes_nothing_outside_the_output(tmp_path, monkeypatch):
    """espeak-ng links PulseAudio, whose client made $HOME/.config/pulse and /tmp/pulse-* on the first
    render (issue 48, class 7): run as the front ends run it, it writes nowhere."""
    import glob

    from soundstorm.chain.frontends import espeak_render
    from soundstorm.chain.phonemes import espeak_clauses

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    before = set(glob.glob("/tmp/pulse-*"))
    assert len(espeak_render("Hello there.")) > 1000
    assert espeak_clauses("Hello there.")
    assert list(home.iterdir()) == []
    assert set(glob.glob("/tmp/pulse-*")) <= before
