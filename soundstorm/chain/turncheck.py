"""The per-turn check: hear every rendered turn, re-render the weak ones with other seeds, keep the best.

`--check` transcribes each turn of a render with Whisper tiny.en and scores it by
word recall (the share of the turn's words found in the transcript). `--retries N`
then renders the whole dialogue again with seeds `seed + 1 ... seed + N`, each time
only while some turn is below the threshold, and for each such turn keeps the try
that Whisper heard best: its codes replace that turn's frames (a turn's frames run
from its first word to the next turn's first word, so the splice falls in the gap
between turns). The front end's semantic tokens stay those of the first try, so the
timing of every turn is unchanged; what changes is SoundStorm's sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from soundstorm.base.errors import InputError
from soundstorm.measures.evaluate import word_recall

MAX_RETRIES = 10


@dataclass
class TurnCheck:
    """One turn as Whisper heard it: its recall, and how many renders were tried for it."""

    turn: int
    speaker: str
    recall: float
    tries: int
    heard: str

    def to_dict(self) -> dict:
        return asdict(self) | {"recall": round(self.recall, 3)}


def check_retry_options(retries: int, threshold: float) -> None:
    if not 0 <= retries <= MAX_RETRIES:
        raise InputError(f"--retries must be in [0, {MAX_RETRIES}], got {retries}")
    if not 0 < threshold <= 1:
        raise InputError(f"--check-threshold is a share of the words heard, in (0, 1], got {threshold}")


def turn_frames(
    turn_of_segment: list[int], spans: list[tuple[int, int]], frames: int
) -> list[tuple[int, int]]:
    """Frame ranges [start, end) that tile [0, frames): each turn from its first spoken frame (the first
    turn from 0) to the next turn's first spoken frame (the last turn to the end)."""
    starts: dict[int, int] = {}
    for turn, (start, _) in zip(turn_of_segment, spans, strict=True):
        starts.setdefault(turn, start)
    order = [starts[t] for t in sorted(starts)]
    order[0] = 0
    return [(a, b) for a, b in zip(order, order[1:] + [frames], strict=True)]


def best_of_tries(
    render: Callable[[int], object],
    decode: Callable[[object], np.ndarray],
    hear: Callable[[np.ndarray], str],
    turns: list[tuple[str, str, tuple[int, int]]],
    ranges: list[tuple[int, int]],
    retries: int,
    threshold: float,
):
    """(codes [Q, T], [TurnCheck]): try 0's codes with each weak turn replaced by its best retry.

    render(k): codes of try k (k = 0 the first render); decode(codes): audio; hear(audio piece): text;
    turns: (speaker, text, (first, last sample spoken)) per turn; ranges: each turn's frames."""
    codes = render(0)
    checks = [
        TurnCheck(n, speaker, word_recall(text, heard), 1, heard)
        for n, (speaker, text, heard) in enumerate(_hear_turns(decode(codes), hear, turns, range(len(turns))))
    ]
    for k in range(1, retries + 1):
        weak = [c.turn for c in checks if c.recall < threshold]
        if not weak:
            break
        other = render(k)
        for n, (_, text, heard) in zip(weak, _hear_turns(decode(other), hear, turns, weak), strict=True):
            check = checks[n]
            check.tries = k + 1
            recall = word_recall(text, heard)
            if recall > check.recall:
                start, end = ranges[n]
                codes[:, start:end] = other[:, start:end]
                check.recall, check.heard = recall, heard
    return codes, checks


def _hear_turns(audio: np.ndarray, hear, turns, which):
    for n in which:
        speaker, text, (start, end) = turns[n]
        yield speaker, text, hear(audio[start:end])
