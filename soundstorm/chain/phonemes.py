"""Text as espeak-ng phonemes: the T5 front end's input (issue 37) and the natural corpus's (Kokoro).

Most systems that train at this scale read phonemes rather than spelling (VALL-E, Piper, Kokoro):
spelling-to-sound is then espeak-ng's job, not something a small T5 must learn from a few hours of
speech. `espeak_clauses` turns text into IPA clause by clause, keeping each clause's punctuation (the
prosody); `PhonemeTokenizer` reads that IPA as a small fixed vocabulary (`SYMBOLS`, stress and length
marks and word boundaries included; each tied group such as a diphthong or an affricate one symbol),
with the same control pieces and interface as the SentencePiece tokenizer (`text.TextTokenizer`), and
is shipped as `phonemes.json` in a bundle's `text` component.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from soundstorm.base.errors import CheckpointError, ModelNotAvailableError
from soundstorm.chain.text import CONTROL_PIECES, normalize

VOICE = "en-us"
FORMAT = "espeak-ng-ipa-1"  # phonemes.json's `format`: bump when the symbols or their reading change
_CLAUSE = re.compile(r"[^,.!?;:]+[,.!?;:]*")
PUNCTUATION = (",", ".", "?", "!", ";", ":")
# espeak-ng's en-us IPA (`--ipa --tie=^`) over the corpus's 22 502 sentences, most frequent first; `^`
# ties a group into one symbol. A symbol outside the list reads as <unk>.
SYMBOLS = (
    "ˈ", "n", "t", "ɪ", "ː", "s", "ə", "d", "i", "l", "ɹ", "ɛ", "z", "k", "m", "æ", "ð", "ˌ", "ʌ", "w", "f",
    "p", "v", "a^ɪ", "b", "ɚ", "e^ɪ", "u", "ɑ", "ɔ", "ː^ɹ", "ɐ", "h", "o^ʊ", "j", "ŋ", "ɾ", "ᵻ", "ɡ", "θ",
    "ɜ", "ə^l", "a^ʊ", "ʃ", "d^ʒ", "ʊ", "o", "t^ʃ", "i^ə", "ɛ^ɹ", "ɪ^ɹ", "ʊ^ɹ", "ɔ^ɪ", "a^ɪ^ə", "ʒ",
    "a^ɪ^ɚ", "\u0329", "ʔ", "x", "r", "a", "e", "ɒ", "ɬ",
)  # fmt: skip
SPECIALS = ("<unk>", "<s>", "</s>")  # the ids SentencePiece gives them, so both tokenizers agree on 0-2
WORD = " "
_TOKEN = re.compile(r"\S(?:\^\S)+|\S")


def espeak_clauses(text: str, voice: str = VOICE) -> list[tuple[str, str]]:
    """(IPA with `^` ties, the clause's punctuation) for each clause of `text`; one espeak-ng call for all
    (espeak answers a line a clause), or one a clause where its split differs from ours."""
    clauses = []
    for clause in _CLAUSE.findall(text.replace("\n", " ")):
        words = clause.rstrip("".join(PUNCTUATION))
        marks = clause[len(words) :].strip()
        if words.strip():
            clauses.append((words.strip(), marks[:1]))
        elif clauses and marks:
            clauses[-1] = (clauses[-1][0], clauses[-1][1] or marks[:1])
    if not clauses:
        return []
    lines = _espeak("\n".join(w for w, _ in clauses), voice)
    if len(lines) != len(clauses):
        lines = [" ".join(_espeak(words, voice)) for words, _ in clauses]
    return [(ipa, mark) for ipa, (_, mark) in zip(lines, clauses, strict=True)]


def espeak_env() -> dict[str, str]:
    """The environment espeak-ng runs in: ours, with the sound server pointed at a socket that cannot exist.
    espeak-ng links PulseAudio even to write a file, and PulseAudio's client then makes
    `$HOME/.config/pulse/` and a `/tmp/pulse-*` folder; with no server to find, it writes nothing (issue 48)."""
    return os.environ | {"PULSE_SERVER": "unix:/dev/null/soundstorm-has-no-sound-server"}


def _espeak(text: str, voice: str) -> list[str]:
    try:
        out = subprocess.run(
            ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", voice, "--stdin"],
            input=text.encode(),
            capture_output=True,
            check=True,
            env=espeak_env(),
        ).stdout.decode()
    except FileNotFoundError:
        raise ModelNotAvailableError("the phoneme front end needs espeak-ng: apt-get install espeak-ng") from None
    return [line.strip() for line in out.splitlines() if line.strip()]


class PhonemeTokenizer:
    """espeak-ng phonemes as ids: <unk> <s> </s>, the control pieces, a word boundary, punctuation, SYMBOLS."""

    def __init__(self, symbols: tuple[str, ...] = SYMBOLS, voice: str = VOICE):
        self.voice, self.symbols = voice, tuple(symbols)
        self.pieces = [*SPECIALS, *CONTROL_PIECES, WORD, *PUNCTUATION, *self.symbols]
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.control_ids = {p: self.ids[p] for p in CONTROL_PIECES}

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def encode(self, text: str) -> list[int]:
        """Normalise, phonemise and tokenise; control pieces written in the text stay single ids."""
        pattern = "(" + "|".join(re.escape(p) for p in CONTROL_PIECES) + ")"
        ids: list[int] = []
        for part in re.split(pattern, text):
            if part in self.control_ids:
                ids.append(self.control_ids[part])
            elif part.strip():
                ids += self.phoneme_ids(normalize(part))
        return ids

    def phoneme_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for ipa, mark in espeak_clauses(text, self.voice):
            for word in ipa.split():
                if ids:  # a boundary between words, and between clauses
                    ids.append(self.ids[WORD])
                ids += [self.ids.get(t, 0) for t in _TOKEN.findall(word)]
            if mark:
                ids.append(self.ids[mark])
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i].replace("^", "") if 0 <= i < len(self.pieces) else "" for i in ids)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / "phonemes.json"
        content = {"format": FORMAT, "voice": self.voice, "symbols": list(self.symbols)}
        path.write_text(json.dumps(content, ensure_ascii=False, indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> PhonemeTokenizer:
        from soundstorm.io.textfiles import read_json

        data = read_json(path, CheckpointError, "phoneme vocabulary")
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("symbols"), list):
            raise CheckpointError(f"'{path}' is not a phoneme vocabulary of format {FORMAT}")
        return cls(tuple(str(s) for s in data["symbols"]), str(data.get("voice", VOICE)))


def load_text_tokenizer(folder: Path):
    """A bundle's (or a data set's) text tokenizer: `phonemes.json` (espeak-ng phonemes) or `spm.model`."""
    from soundstorm.chain.text import TextTokenizer

    folder = Path(folder)
    if (folder / "phonemes.json").is_file():
        return PhonemeTokenizer.load(folder / "phonemes.json")
    return TextTokenizer(str(folder / "spm.model"))
