"""Checks of values a user gives that more than one layer takes, each defined once.

Torch-free, so that the CLI runs them before any model loads.
"""

from __future__ import annotations

from soundstorm.base.errors import InputError

MAX_TEMPERATURE = 5.0


def check_temperature(value: float, what: str = "temperature") -> float:
    """A sampling temperature (SoundStorm's and the T5's): in [0, MAX_TEMPERATURE]."""
    if not 0 <= value <= MAX_TEMPERATURE:
        raise InputError(f"{what} {value:g}: must be in [0, {MAX_TEMPERATURE:g}]")
    return value
