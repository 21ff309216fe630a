"""Subtitles of a rendered dialogue's turns: SubRip (.srt) or WebVTT (.vtt), written atomically."""

from __future__ import annotations

import contextlib
import os
import unicodedata
from pathlib import Path

from soundstorm.base.errors import OutputError
from soundstorm.io.audio import check_file_name, replaced_atomically

FORMATS = (".srt", ".vtt")


def _stamp(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def cue_text(text: str, kind: str) -> str:
    """A turn's text made safe for a cue: no control characters or line breaks, no '-->' (which would start
    a new cue), and in WebVTT '&' and '<' '>' escaped (they are its markup)."""
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    text = " ".join(text.split()).replace("-->", "->")
    if kind == ".vtt":
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def format_subtitles(turns, kind: str) -> str:
    """`turns`: objects with speaker, text, start_s, end_s; kind '.srt' or '.vtt'."""
    sep = "," if kind == ".srt" else "."
    blocks = []
    for n, turn in enumerate(turns, start=1):
        cue = f"{_stamp(turn.start_s, sep)} --> {_stamp(turn.end_s, sep)}"
        text, speaker = cue_text(turn.text, kind), cue_text(turn.speaker, kind)
        body = f"{speaker}: {text}" if kind == ".srt" else f"<v {speaker}>{text}"
        blocks.append(f"{n}\n{cue}\n{body}\n")
    head = "WEBVTT\n\n" if kind == ".vtt" else ""
    return head + "\n".join(blocks)


def check_subtitle_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise OutputError(f"cannot write timings '{path}': use a .srt or .vtt file")
    check_file_name(path, "timings ")
    if path.is_dir():
        raise OutputError(f"cannot write timings '{path}': it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write timings '{path}': folder '{parent}' is missing or not writable")
    return path


@contextlib.contextmanager
def staged_subtitles(path: str | os.PathLike, turns):
    """Write the subtitles beside `path`; they replace it when the block succeeds, else nothing changes.

    So a command writing audio and subtitles does both or neither (`cli.py`)."""
    path = check_subtitle_path(path)
    text = format_subtitles(turns, path.suffix.lower())
    with replaced_atomically(path, "timings ") as tmp:
        tmp.write_text(text, encoding="utf-8")
        yield path
