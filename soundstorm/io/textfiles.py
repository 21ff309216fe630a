"""Bounded reads of the small text files soundstorm takes in: scripts, registries, configs, JSON sidecars.

Every text file is read through `read_text_file`: it must be a regular file (not a
device such as /dev/zero, a FIFO or a folder) and at most `limit` bytes, so that a
wrong path fails in one line instead of reading until memory runs out (issue 24).
`read_json` and `read_yaml` add parsing, with the failures a user can cause (bad
syntax, nesting deep enough to exhaust the parser's recursion) reported the same way.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from soundstorm.base.errors import SoundstormError

# Limits by kind of file: far above any real one, far below what could hurt.
SCRIPT_LIMIT = 2 * 2**20  # a dialogue script (the spoken-text cap is much lower: synthesize.MAX_SPOKEN_CHARS)
REGISTRY_LIMIT = 1 * 2**20  # checkpoints.yaml, bundle.yaml
CONFIG_LIMIT = 256 * 2**10  # a model's config.json, voices.json, hash pins


def _size_text(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def read_bytes_file(path: str | os.PathLike, limit: int, error: type[SoundstormError], what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else raises `error` in one line."""
    path = Path(path)
    label = f"{what} '{path}'"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise error(f"cannot read {label}: no such file") from None
    except IsADirectoryError:
        raise error(f"cannot read {label}: it is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {label}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise error(f"cannot read {label}: it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"cannot read {label}: not a regular file (a device, pipe or socket)")
        if info.st_size > limit:
            raise error(f"cannot read {label}: {info.st_size} bytes, over the {_size_text(limit)} limit")
        try:
            data = handle.read(limit + 1)  # the file may grow after the stat
        except OSError as exc:
            raise error(f"cannot read {label}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"cannot read {label}: over the {_size_text(limit)} limit")
    return data


def read_text_file(path: str | os.PathLike, limit: int, error: type[SoundstormError], what: str) -> str:
    """`read_bytes_file` decoded as UTF-8 (a byte-order mark dropped)."""
    data = read_bytes_file(path, limit, error, what)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {what} '{path}': not UTF-8 text (byte {exc.start})") from None


def read_json(path: str | os.PathLike, error: type[SoundstormError], what: str, limit: int = CONFIG_LIMIT):
    """A JSON file's value; bad syntax or absurd nesting raises `error`."""
    text = read_text_file(path, limit, error, what)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0]
        raise error(f"cannot read {what} '{path}': not valid JSON ({reason})") from None


def read_json_object(path: str | os.PathLike, error: type[SoundstormError], what: str) -> dict:
    """A JSON file that must hold an object (a model's config)."""
    value = read_json(path, error, what)
    if not isinstance(value, dict):
        raise error(f"cannot read {what} '{path}': expected a JSON object, got {type(value).__name__}")
    return value


def load_yaml(text: str):
    """`yaml.safe_load`, with nesting deep enough to exhaust the recursion limit raised as a YAMLError."""
    import yaml

    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
