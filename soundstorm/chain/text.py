"""Text normalisation, shared by corpus building and inference.

`normalize(text)` spells out what a speech model cannot read from symbols:
numbers, ordinals, years, times, money, percentages, common abbreviations and
symbols, so that the text a model sees at inference looks like the text it was
trained on. The output keeps letters, digits-free words and light punctuation
(. , ? ! ' -).
"""

from __future__ import annotations

import re
import unicodedata

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}

ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miz",
    "dr": "doctor",
    "st": "saint",
    "prof": "professor",
    "jr": "junior",
    "sr": "senior",
    "vs": "versus",
    "etc": "et cetera",
    "e.g": "for example",
    "i.e": "that is",
    "approx": "approximately",
    "dept": "department",
    "no": "number",
}
SYMBOLS = {
    "&": " and ",
    "%": " percent ",
    "+": " plus ",
    "=": " equals ",
    "@": " at ",
    "#": " number ",
    "/": " slash ",
    "*": " ",
    "_": " ",
    "~": " ",
    "^": " ",
    "|": " ",
    "<": " ",
    ">": " ",
    "{": " ",
    "}": " ",
    "[": " ",
    "]": " ",
    "\\": " ",
    "`": "'",
    '"': " ",
}


def number_to_words(n: int) -> str:
    """Cardinal number in English words (negative numbers get 'minus')."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_to_words(rest) if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return number_to_words(high) + " " + name + (" " + number_to_words(rest) if rest else "")
    raise AssertionError("unreachable")


def ordinal_to_words(n: int) -> str:
    words = number_to_words(n)
    head, sep, last = words.rpartition("-") if "-" in words.split(" ")[-1] else words.rpartition(" ")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year_to_words(n: int) -> str:
    """1984 -> nineteen eighty-four; 2005 -> two thousand five; 1900 -> nineteen hundred."""
    if 2000 <= n < 2010 or n < 1000 or n >= 10000:
        return number_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return number_to_words(high) + " hundred"
    return number_to_words(high) + " " + (("oh " + _ONES[low]) if low < 10 else number_to_words(low))


def _money(match: re.Match) -> str:
    whole = int(match.group(1).replace(",", ""))
    cents = int((match.group(2) or "0").ljust(2, "0")[:2])
    words = number_to_words(whole) + (" dollar" if whole == 1 else " dollars")
    if cents:
        words += " and " + number_to_words(cents) + (" cent" if cents == 1 else " cents")
    return " " + words + " "


_SENTENCE_GOES_ON = re.compile(r"\s*\Z|\s+[A-Z]")  # after a time's "a.m.": the text ends or a sentence starts


def _time(match: re.Match) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    suffix = (match.group(3) or "").lower().replace(".", "")
    words = number_to_words(hour)
    if minute == 0:
        words += "" if suffix else " o'clock"
    elif minute < 10:
        words += " oh " + number_to_words(minute)
    else:
        words += " " + number_to_words(minute)
    if suffix:
        words += " " + " ".join(suffix.upper())
    # read in place (a copy of the rest per match would be quadratic in the text)
    if (match.group(3) or "").endswith(".") and _SENTENCE_GOES_ON.match(match.string, match.end()):
        words += "."  # the abbreviation's dot also ended the sentence
    return " " + words + " "


def _decimal(match: re.Match) -> str:
    whole, frac = match.group(1).replace(",", ""), match.group(2)
    return " " + number_to_words(int(whole)) + " point " + " ".join(_ONES[int(d)] for d in frac) + " "


def _number(match: re.Match) -> str:
    raw = match.group(0).replace(",", "")
    value = int(raw)
    if raw == match.group(0) and len(raw) == 4 and 1100 <= value <= 2099:
        return " " + year_to_words(value) + " "
    if len(raw) > 15:
        return " " + " ".join(_ONES[int(d)] for d in raw) + " "
    return " " + number_to_words(value) + " "


def _abbreviation(match: re.Match) -> str:
    return ABBREVIATIONS[match.group(1).lower()]


_ABBREV_RE = re.compile(
    r"\b(" + "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True)) + r")\.",
    re.IGNORECASE,
)


MAX_NUMBER_DIGITS = (
    15  # longer digit runs are read digit by digit (and never reach int(), which caps at 4300)
)


_COMMAS = re.compile(r",{2,}")
_SPACES = re.compile(r"\s+")
_LONG_NUMBER = re.compile(r"\d(?:,?\d){" + str(MAX_NUMBER_DIGITS) + ",}")


def _digits(match: re.Match) -> str:
    return " " + " ".join(_ONES[int(d)] for d in match.group(0) if d.isdigit()) + " "


def normalize(text: str) -> str:
    """Spell out numbers, money, times, symbols and abbreviations; collapse spaces."""
    text = unicodedata.normalize("NFKD", text)
    # Commas doubled are a pause, never a digit group: "1,,2" reads "one, two", and a run of digits and
    # commas stays short enough for the number patterns below to match in linear time.
    text = _COMMAS.sub(", ", text)
    # A digit run too long to be a number (a serial, or thousands of digits) is read digit by digit.
    text = _LONG_NUMBER.sub(_digits, text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("\u2014", ", ").replace("\u2013", "-").replace("--", ", ")
    text = _ABBREV_RE.sub(lambda m: _abbreviation(m) + ("." if m.end() == len(text) else ""), text)
    text = re.sub(r"\$(\d[\d,]*)(?:\.(\d{1,2}))?", _money, text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\s*([ap]\.?m\.?)?", _time, text, flags=re.IGNORECASE)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: " " + ordinal_to_words(int(m.group(1))) + " ", text)
    text = re.sub(r"(\d[\d,]*)\.(\d+)", _decimal, text)
    text = re.sub(r"\d[\d,]*\d|\d", _number, text)
    for symbol, words in SYMBOLS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"[^A-Za-z.,?!'\- ;:()]", " ", text)
    text = text.replace(";", ",").replace(":", ",").replace("(", ",").replace(")", ",")
    return tidy_punctuation(text)


def tidy_punctuation(text: str) -> str:
    """Spaces and punctuation tidied in one pass, in time linear in the text: no space before a mark, no
    comma before a full stop, question or exclamation mark, no full stop or comma right after another mark,
    runs of spaces as one, no space or comma at either end. (Regular expressions for these rules backtrack
    over long runs of spaces or commas: 16k spaces took seconds.)"""
    out: list[str] = []
    space = False
    for c in _SPACES.sub(" ", text):  # in C first: a long run of spaces is one character for the loop
        if c.isspace():
            space = True
        elif c in ".,?!":
            space = False
            if c != ",":
                while out and out[-1] == ",":
                    out.pop()
            if not (c in ".," and out and out[-1] in ".,?!"):
                out.append(c)
        else:
            if space and out:
                out.append(" ")
            space = False
            out.append(c)
    return "".join(out).strip(" ,")


READS = "the bundled models read English: words in Latin letters, numbers, common symbols"


def quoted(text: str, limit: int = 40) -> str:
    """`text` on one line, cut to `limit` characters, quoted: for error messages."""
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def speakable(text: str) -> bool:
    """Whether `text` holds anything to speak once normalised (a letter; numbers are spelled out)."""
    return any(c.isalpha() for c in normalize(text))


# Control pieces of the text tokenizer: the prompt/text separator, a pause, and
# the speaker turns of a dialogue (the n-th speaker of a script is <spk{n}>).
SEPARATOR = "<sep>"
PAUSE = "<pause>"
MAX_SPEAKERS = 8
SPEAKER_PIECES = tuple(f"<spk{i}>" for i in range(1, MAX_SPEAKERS + 1))
CONTROL_PIECES = (SEPARATOR, PAUSE, *SPEAKER_PIECES)


class TextTokenizer:
    """SentencePiece (unigram, byte fallback) over normalised text, with the control pieces."""

    def __init__(self, model_path: str):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_path))
        self.control_ids = {piece: self.sp.piece_to_id(piece) for piece in CONTROL_PIECES}

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Normalise, then tokenise; control pieces written in the text stay single ids."""
        return self.sp.encode(normalize_keep_controls(text))

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)


def normalize_keep_controls(text: str) -> str:
    """`normalize` each stretch between control pieces, keeping the pieces themselves."""
    pattern = "(" + "|".join(re.escape(p) for p in CONTROL_PIECES) + ")"
    parts = re.split(pattern, text)
    return " ".join(p if p in CONTROL_PIECES else normalize(p) for p in parts if p.strip())
