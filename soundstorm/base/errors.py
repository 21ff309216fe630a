"""The error family of soundstorm.

The library raises these; the CLI maps each to one line on stderr and a
non-zero exit (`cli.py`). Messages are written for the user: they say what was
wrong and, where there is one, the next step.
"""

from __future__ import annotations


class SoundstormError(Exception):
    """Base of every error soundstorm reports to its user."""

    exit_code = 1


class InputError(SoundstormError):
    """Something the user gave us cannot be used (a flag value, a text, a path)."""

    exit_code = 2


class AudioError(InputError):
    """An audio file is missing, unreadable, empty or unusable."""


class ScriptError(InputError):
    """A dialogue script is malformed or cannot be rendered; where a place in it is to blame, its
    `source`, `line` and `column` are fields (and the message starts `source:line:column: `)."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None,
                 column: int | None = None):
        super().__init__(message)
        self.source, self.line, self.column = source, line, column


class UnknownSpeakerError(ScriptError):
    """A voice was given for a speaker who has no turn in the script."""

    code = "unknown_speaker"


class OutputError(SoundstormError):
    """The output cannot be written where the user asked."""

    exit_code = 3


class BatchError(SoundstormError):
    """Some items of a batch failed (each was reported in its own line); the others rendered."""

    exit_code = 5


class CheckpointError(SoundstormError):
    """A bundle or one of its files is unknown, missing, corrupt or unsafe."""

    exit_code = 4


class ModelNotAvailableError(CheckpointError):
    """The chosen bundle lacks a component the command needs (not trained yet, or not fetched)."""


class CodecError(SoundstormError):
    """The codec cannot encode or decode what it was given."""


class VocoderError(SoundstormError):
    """The FARGAN vocoder is not built, its source is missing or corrupt, or its features are unusable."""
