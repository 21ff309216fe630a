"""Sentences for the corpus: what installed packages hold, plus generated ones.

Sources: Debian's fortunes (`/usr/share/games/fortunes`), the licences in
`/usr/share/common-licenses`, and templates that exercise numbers, dates,
money, times, questions and names. Every sentence goes through the same
`normalize` the tool applies at inference.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from soundstorm.chain.text import normalize

FORTUNES = Path("/usr/share/games/fortunes")
LICENSES = Path("/usr/share/common-licenses")

NAMES = (
    "Alice Bob Carol David Emma Frank Grace Henry Isabel Jack Karen Liam Maria Noah Olivia Peter Quinn Rachel "
    "Samuel Tara Victor Wendy Xavier Yasmin Zoe Ahmed Bianca Chen Diego Elena Fatima George Hannah Ivan "
    "Julia Kenji Laura Marco Nadia Oscar Priya Rosa Stefan Tomas Ursula Vera Walter"
).split()
PLACES = tuple(
    "the " + p for p in "station library market harbour museum airport park office bakery school".split()
)
NOUNS = "ticket book lamp bicycle coat ladder camera guitar kettle map parcel umbrella violin watch".split()
MONTHS = "January February March April May June July August September October November December".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

TEMPLATES = (
    "{name} paid ${money} for the {noun} on {day}.",
    "The train to {place} leaves at {time}.",
    "Did {name} really buy {count} {noun}s for ${money}?",
    "We met {name} on {month} {ordinal}, {year}, near {place}.",
    "Is it true that {name} arrived at {time}?",
    "Please call {name} before {time} on {day}.",
    "The {noun} costs ${money}, which is {percent}% more than last year.",
    "Room {count} is on the {ordinal} floor, next to {place}.",
    "{name} and {name2} walked to {place} on {day} morning.",
    "Why did {name} leave the {noun} at {place}?",
    "In {year}, {name} moved to a house with {count} windows.",
    "Where is the {noun} that {name} lent you in {month}?",
    "The meeting starts at {time}, and {name} will bring {count} copies.",
    "Can you tell {name2} that the {noun} is ready?",
    "About {big} people visited {place} in {year}.",
)


def _fill(template: str, rng: random.Random) -> str:
    hour, minute = rng.randint(1, 12), rng.choice([0, 5, 10, 15, 20, 30, 45, 50, rng.randint(0, 59)])
    return (
        template.format(
            name=rng.choice(NAMES),
            name2=rng.choice(NAMES),
            noun=rng.choice(NOUNS),
            place=rng.choice(PLACES),
            day=rng.choice(DAYS),
            month=rng.choice(MONTHS),
            ordinal=f"{rng.randint(1, 28)}" + "th",
            year=rng.randint(1950, 2030),
            count=rng.randint(2, 40),
            big=f"{rng.randint(2, 900) * 1000:,}",
            percent=rng.randint(2, 60),
            time=f"{hour}:{minute:02d} {rng.choice(['am', 'pm'])}",
            money=f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}"
            if rng.random() < 0.6
            else str(rng.randint(2, 2000)),
        )
        .replace("1th", "1st")
        .replace("2th", "2nd")
        .replace("3th", "3rd")
        .replace("11st", "11th")
        .replace("12nd", "12th")
        .replace("13rd", "13th")
    )


def generated_sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [_fill(rng.choice(TEMPLATES), rng) for _ in range(count)]


def _paragraphs_from_fortunes() -> list[str]:
    paragraphs = []
    for path in sorted(FORTUNES.glob("*")):
        if path.suffix or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        paragraphs += [" ".join(entry.split()) for entry in text.split("\n%\n")]
    return paragraphs


def _paragraphs_from_licenses() -> list[str]:
    paragraphs = []
    for path in sorted(LICENSES.glob("*")):
        if path.is_file() and not path.is_symlink():
            text = path.read_text(errors="ignore")
            paragraphs += [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return paragraphs


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z\"'])")
_BAD = re.compile(r"https?:|www\.|@|\.com|\.org|[=<>{}|\\_#]|\b[A-Z]{5,}\b|\t|--|\.\.|^\W")


def sentence_pool(seed: int, generated: int = 6000) -> list[str]:
    """Normalised, deduplicated, shuffled sentences of 4-30 words."""
    raw = []
    for paragraph in _paragraphs_from_fortunes() + _paragraphs_from_licenses():
        if "--" in paragraph:  # drop attributions ("-- Mark Twain")
            paragraph = paragraph.split(" -- ")[0]
        raw += _SENTENCE_END.split(paragraph)
    raw += generated_sentences(generated, seed)
    seen, pool = set(), []
    for sentence in raw:
        sentence = sentence.strip()
        if _BAD.search(sentence) or sentence[-1:] not in ".?!":
            continue
        text = normalize(sentence)
        words = text.split()
        if not 4 <= len(words) <= 30 or len(text) > 200 or text.lower() in seen:
            continue
        if sum(c.isalpha() for c in text) < 0.75 * len(text):
            continue
        seen.add(text.lower())
        pool.append(text)
    pool.sort()
    random.Random(seed).shuffle(pool)
    return pool
