"""Dialogue scripts: the format of `soundstorm dialogue` (DESIGN.md, "Script format").

    # a comment (a line whose first non-blank character is '#')
    ---                      # optional YAML front matter
    voices:
      S1: voices/alice.wav   # paths relative to the script
    ---
    [S1] Hello there. How was the trip?
    [S2] Long, but worth it. (pause 0.5) We saw the coast.  [S1] Good!

A turn starts with `[SPEAKER]` (an identifier) and runs until the next one, across
lines; several turns may share a line. `(pause SECONDS)` inside a turn is a
silence. Other parenthesised single words with optional numbers, such as
`(laugh)`, are directives this version does not know: an error, not silently
spoken. The parser is strict: every error is a `ScriptError` naming the line and
column (1-based).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from soundstorm.base.errors import ScriptError
from soundstorm.io.named_voices import is_bare_name

MAX_PAUSE_S = 30.0
FRONT_MATTER_KEYS = ("voices", "title")

_DIRECTIVE = re.compile(r"\(\s*([A-Za-z]+)((?:\s+[^\s()]+)*)\s*\)")
_SPEAKER = re.compile(r"\[([^\[\]\n]*)\]")
_SPECIAL = re.compile(r"[\[(\]]")
_FENCE = re.compile(r"^---[ \t]*(#.*)?$")


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Turn:
    """One speaker's turn: text pieces and pauses, in order."""

    speaker: str
    parts: tuple[str | Pause, ...]
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    @property
    def text(self) -> str:
        """The spoken text, pauses left out."""
        return " ".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True)
class Script:
    turns: tuple[Turn, ...]
    voices: dict[str, str] = field(default_factory=dict)  # speaker -> path as written
    title: str | None = None
    base_dir: Path | None = field(default=None, compare=False)  # voices are relative to it
    source: str = field(default="<script>", compare=False)  # its name in error messages

    @property
    def speakers(self) -> list[str]:
        """Speakers in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in self.turns))

    def voice_path(self, speaker: str) -> Path | None:
        """The speaker's voice file relative to the script's folder; a bare name (no folder, no such file
        there) is kept as it is: a named voice (`user_voices.resolve_prompt`)."""
        raw = self.voices.get(speaker)
        if raw is None:
            return None
        path = Path(raw).expanduser()
        if path.is_absolute() or self.base_dir is None:
            return path
        beside = self.base_dir / path
        return path if is_bare_name(raw) and not beside.exists() else beside


def _error(source: str, line: int, column: int, message: str) -> ScriptError:
    return ScriptError(f"{source}:{line}:{column}: {message}", source, line, column)


def read_script(path: str | Path) -> Script:
    """Read and parse a script file; voices resolve relative to its folder."""
    from soundstorm.io.textfiles import SCRIPT_LIMIT, read_bytes_file

    path = Path(path)
    data = read_bytes_file(path, SCRIPT_LIMIT, ScriptError, "script")
    return parse_script(data, source=str(path), base_dir=path.parent)


def parse_script(data: str | bytes, source: str = "<script>", base_dir: Path | None = None) -> Script:
    """Parse a script from text or UTF-8 bytes."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            raise _error(source, line, column, f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    else:
        text = data
    text = text.removeprefix("\ufeff")  # the byte-order mark some editors (Notepad) put first
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _error(source, line, 1, "a NUL character: this is not a text file")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    front, body_start = _front_matter(lines, source)
    turns = _turns(lines, body_start, source)
    if not turns:
        raise ScriptError(f"{source}: the script is empty (no turns); write one as '[S1] Hello.'")
    voices = front.get("voices", {})
    unused = sorted(set(voices) - {t.speaker for t in turns})
    if unused:
        raise ScriptError(f"{source}: voices given for speakers with no turn: {', '.join(unused)}")
    return Script(tuple(turns), voices, front.get("title"), base_dir, source)


def script_error(script: Script, turn: Turn, message: str) -> ScriptError:
    """An error about one turn of a parsed script, placed as the parser's own are."""
    return _error(script.source, turn.line, turn.column, message)


def _front_matter(lines: list[str], source: str) -> tuple[dict, int]:
    """The YAML front matter (validated) and the index of the first body line."""
    import yaml

    from soundstorm.io.textfiles import load_yaml

    first = next((i for i, s in enumerate(lines) if s.strip() and not s.lstrip().startswith("#")), None)
    if first is None or not _FENCE.match(lines[first].strip()):
        return {}, 0
    end = next((i for i in range(first + 1, len(lines)) if _FENCE.match(lines[i].strip())), None)
    if end is None:
        raise _error(source, first + 1, 1, "front matter opened with '---' is never closed")
    try:
        front = load_yaml("\n".join(lines[first + 1 : end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = first + 2 + (mark.line if mark else 0)
        column = (mark.column + 1) if mark else 1
        problem = getattr(exc, "problem", None) or "bad YAML"
        raise _error(source, line, column, f"front matter: {problem}") from None
    if not isinstance(front, dict):
        raise _error(source, first + 2, 1, "front matter must be a mapping such as 'voices: {S1: a.wav}'")
    for key in front:
        if key not in FRONT_MATTER_KEYS:
            raise _error(source, first + 2, 1, f"front matter: unknown key '{key}' (known: voices, title)")
    voices = front.get("voices") or {}
    if not isinstance(voices, dict) or not all(
        isinstance(k, str) and k.isidentifier() and isinstance(v, str) and v.strip()
        for k, v in voices.items()
    ):
        raise _error(source, first + 2, 1, "front matter: 'voices' must map speaker names to audio paths")
    title = front.get("title")
    if title is not None and not isinstance(title, str):
        raise _error(source, first + 2, 1, "front matter: 'title' must be text")
    return {"voices": {k: v.strip() for k, v in voices.items()}, "title": title}, end + 1


class _TurnBuilder:
    """Collects a turn's parts; text pieces are joined once, at the end (linear in the turn's length)."""

    def __init__(self, speaker: str, line: int, column: int):
        self.speaker, self.line, self.column = speaker, line, column
        self.parts: list[str | Pause] = []
        self._words: list[str] = []  # the text since the last pause

    def add_text(self, text: str) -> None:
        words = " ".join(text.split())
        if words:
            self._words.append(words)

    def add_pause(self, pause: Pause) -> None:
        self._flush()
        self.parts.append(pause)

    def _flush(self) -> None:
        if self._words:
            self.parts.append(" ".join(self._words))
            self._words = []

    def build(self, source: str) -> Turn:
        self._flush()
        if not any(isinstance(p, str) for p in self.parts):
            raise _error(source, self.line, self.column, f"empty turn: [{self.speaker}] has nothing to say")
        return Turn(self.speaker, tuple(self.parts), self.line, self.column)


def _turns(lines: list[str], start: int, source: str) -> list[Turn]:
    turns: list[Turn] = []
    current: _TurnBuilder | None = None
    for index in range(start, len(lines)):
        line, number = lines[index], index + 1
        if line.lstrip().startswith("#"):
            continue
        pos = 0
        while pos < len(line):
            # The next '[', '(' or ']' (one scan from pos: three find()s to the line's end were quadratic).
            special = _SPECIAL.search(line, pos)
            cut, kind = (special.start(), special.group()) if special else (len(line), "")
            if line[pos:cut].strip():
                if current is None:
                    raise _error(source, number, pos + 1, "text before the first turn; start with '[S1] '")
                current.add_text(line[pos:cut])
            if not kind:
                break
            if kind == "]":
                raise _error(source, number, cut + 1, "']' without a matching '['")
            if kind == "[":
                match = _SPEAKER.match(line, cut)
                if not match:
                    raise _error(source, number, cut + 1, "unclosed '[': a turn starts with [NAME]")
                name = match.group(1).strip()
                if not name.isidentifier():
                    raise _error(
                        source,
                        number,
                        cut + 2,
                        f"'{match.group(1)}' is not a speaker name (letters, digits, _)",
                    )
                if current is not None:
                    turns.append(current.build(source))
                current = _TurnBuilder(name, number, cut + 1)
                pos = match.end()
                continue
            pos = _directive(line, cut, number, source, current)
    if current is not None:
        turns.append(current.build(source))
    return turns


def _directive(line: str, cut: int, number: int, source: str, current: _TurnBuilder | None) -> int:
    """Handle '(' at `cut`: a directive, or plain parenthesised text; returns the next position."""
    close = line.find(")", cut)
    if close < 0:
        raise _error(source, number, cut + 1, "unclosed '('")
    match = _DIRECTIVE.fullmatch(line, cut, close + 1)
    if not match or (match.group(1).lower() != "pause" and " " in line[cut + 1 : close].strip()):
        # More than one word and not a pause: parenthesised speech, spoken as text.
        if current is None:
            raise _error(source, number, cut + 1, "text before the first turn; start with '[S1] '")
        current.add_text(line[cut + 1 : close])
        return close + 1
    if current is None:
        raise _error(source, number, cut + 1, "a directive before the first turn")
    name, args = match.group(1).lower(), match.group(2).split()
    if name != "pause":
        raise _error(
            source, number, cut + 1, f"unknown directive '({match.group(1)})'; known: (pause SECONDS)"
        )
    try:
        seconds = float(args[0]) if len(args) == 1 else None
    except ValueError:
        seconds = None
    if seconds is None or not 0 < seconds <= MAX_PAUSE_S:
        raise _error(source, number, cut + 1, f"(pause SECONDS) needs one number in (0, {MAX_PAUSE_S:g}]")
    current.add_pause(Pause(seconds))
    return close + 1


def format_script(script: Script) -> str:
    """Write a script back in the format `parse_script` reads (one turn per line)."""
    out = []
    if script.voices or script.title is not None:
        import yaml

        front = {}
        if script.title is not None:
            front["title"] = script.title
        if script.voices:
            front["voices"] = dict(script.voices)
        out += ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip("\n"), "---"]
    for turn in script.turns:
        pieces = [p if isinstance(p, str) else f"(pause {p.seconds:g})" for p in turn.parts]
        out.append(f"[{turn.speaker}] " + " ".join(pieces))
    return "\n".join(out) + "\n"
