"""Named voices: a user's own voice prompts, kept under a name in the user's data folder.

    soundstorm voices add alice alice.wav --text "What alice says in it."
    soundstorm say "Hello." --prompt alice        # a name wherever a prompt file is taken

Each voice is `NAME.wav` (its speech, trimmed of silence and cut to the longest prompt used, 10 s) and
`NAME.json` (its transcript, where it came from) in `voices_home()`: `$SOUNDSTORM_HOME/voices`, else
platformdirs' user data folder. A name is 1-64 letters, digits, '_' or '-', starting with a letter or
digit, so it is always one file name inside that folder and never a path out of it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from soundstorm.base.errors import InputError
from soundstorm.chain.prompts import MAX_PROMPT_S, MAX_PROMPT_TEXT_CHARS, BundledVoice, load_prompt_audio
from soundstorm.io.audio import replaced_atomically, write_audio
from soundstorm.io.home import voices_home

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class UserVoice:
    name: str
    path: Path
    text: str | None


def is_voice_name(value: str) -> bool:
    return _NAME.fullmatch(value) is not None


def check_name(name: str) -> str:
    if not is_voice_name(name):
        raise InputError(
            f"voice name '{name}': use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def list_voices() -> list[UserVoice]:
    home = voices_home()
    if not home.is_dir():
        return []
    found = []
    for wav in sorted(home.glob("*.wav")):
        if not is_voice_name(wav.stem):
            continue
        meta = _meta(home / f"{wav.stem}.json")
        found.append(UserVoice(wav.stem, wav, meta.get("text")))
    return found


def find_voice(name: str) -> UserVoice | None:
    """The user's voice of that name, or None."""
    if not is_voice_name(name):
        return None
    wav = voices_home() / f"{name}.wav"
    return UserVoice(name, wav, _meta(wav.with_suffix(".json")).get("text")) if wav.is_file() else None


def add_voice(
    name: str, audio: str | os.PathLike | bytes, text: str | None = None, replace: bool = False
) -> UserVoice:
    """Store `audio`'s speech (trimmed, at most 10 s) under `name`; refuses a taken name unless `replace`.
    `audio` is a file, or a file's bytes (an upload to the server, decoded in memory)."""
    from soundstorm.chain.semantic import SAMPLE_RATE

    check_name(name)
    if text is not None and (not text.strip() or len(text) > MAX_PROMPT_TEXT_CHARS):
        raise InputError(f"--text: the transcript must be 1-{MAX_PROMPT_TEXT_CHARS} characters")
    home = voices_home()
    wav = home / f"{name}.wav"
    if wav.exists() and not replace:
        raise InputError(f"a voice named '{name}' exists; `soundstorm voices remove {name}` or add --replace")
    speech = load_prompt_audio(audio, SAMPLE_RATE, MAX_PROMPT_S)
    home.mkdir(parents=True, exist_ok=True)
    write_audio(wav, speech, SAMPLE_RATE)
    with replaced_atomically(wav.with_suffix(".json")) as tmp:
        source = "an upload" if isinstance(audio, bytes) else str(Path(audio).resolve())
        tmp.write_text(json.dumps({"name": name, "text": text, "source": source}))
    return UserVoice(name, wav, text)


def remove_voice(name: str) -> None:
    check_name(name)
    wav = voices_home() / f"{name}.wav"
    if not wav.is_file():
        raise InputError(f"there is no voice named '{name}' (`soundstorm voices` lists them)")
    wav.unlink()
    wav.with_suffix(".json").unlink(missing_ok=True)


def is_bare_name(source) -> bool:
    """Whether a prompt argument can only be a voice's name: no folder and no extension in it."""
    text = str(source)
    return bool(text) and text == Path(text).name and "." not in text


def voice_by_name(name: str, bundled=()) -> BundledVoice | None:
    """The voice a name stands for: the user's voice of that name, else the bundle's; None if neither.
    The one place a voice name is resolved (the CLI, scripts, batches and the server all come here)."""
    user = find_voice(name)
    if user is not None:
        return BundledVoice(user.name, user.path, user.text)
    return next((v for v in bundled if v.name == name), None)


def resolve_prompt(source, bundled=()):
    """What a prompt argument names: an existing file as it is; else a bare name (`is_bare_name`) of a
    user voice, then of a bundled voice (`voices.BundledVoice`); else the path, for its loader to refuse."""
    if isinstance(source, BundledVoice):
        return source
    path = Path(source)
    if path.exists() or not is_bare_name(source):
        return path
    return voice_by_name(path.name, bundled) or path


def _meta(path: Path) -> dict:
    from soundstorm.base.errors import SoundstormError
    from soundstorm.io.textfiles import CONFIG_LIMIT, read_json

    try:
        value = read_json(path, SoundstormError, "voice", CONFIG_LIMIT) if path.is_file() else {}
    except SoundstormError:
        return {}
    return value if isinstance(value, dict) else {}
