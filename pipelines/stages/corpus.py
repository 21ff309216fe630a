"""Stage 1: the multi-voice speech corpus (single utterances and two-speaker dialogues).

    python -m pipelines corpus --config pipelines/configs/tiny.yaml [--hours H]

With `corpus.natural_hours` the same sentence and dialogue plans are also read
by natural voices (Kokoro's, `natural_voices.py`), in groups of their own: the
synthetic items keep their ids, and the natural ones are rendered first (the
held-out ones before all), since they are the slow part (~0.7x real time a core).

Plans every item from the seed first (who says what, how fast, how loud), then
renders the items in parallel. Each finished item leaves `wavs/ID.wav` and
`wavs/ID.json` (its manifest row), so an interrupted run resumes where it
stopped and a finished one is skipped. The manifest `manifest.jsonl` lists
every item in plan order: id, path, text, speaker, voice recipe, duration,
split (train / valid / test = held-out speakers), and the turns of dialogues.
Dialogues are also written as scripts in the design's format (`wavs/ID.txt`).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.config import DataConfig
from pipelines.data.manifest import corpus_stats
from pipelines.data.natural_voices import NaturalVoice, kokoro_model, select_natural
from pipelines.data.synthetic_voices import Voice, select_voices
from pipelines.data.texts import sentence_pool
from soundstorm.io.audio import write_audio

SECONDS_PER_CHAR = 0.061  # flite and espeak at their default pace, measured on this corpus
TEST_SHARE = 0.03  # of the hours, spoken by the held-out speakers


@dataclass
class Turn:
    speaker: str
    text: str
    stretch: float
    gain_db: float
    gap_s: float = 0.0  # silence before this turn


@dataclass
class Item:
    id: str
    kind: str  # "single" | "dialogue"
    split: str  # "train" | "valid" | "test"
    turns: list[Turn] = field(default_factory=list)


def plan(config: DataConfig) -> list[Item]:
    """Every item of the corpus, decided by the seed alone.

    Each (speaker group, kind) has its own random stream and numbering, so a
    larger `hours` only appends items: what was rendered stays valid.
    """
    cfg = config.corpus
    voices, held_out = select_voices(cfg.speakers)
    train_speakers = [v.name for v in voices if v.name not in held_out]
    test_speakers = [v.name for v in voices if v.name in held_out]
    pool = sentence_pool(config.seed)
    n_test = max(10, int(len(pool) * cfg.test_sentence_fraction))
    test_sentences, train_sentences = pool[:n_test], pool[n_test:]

    total_s, natural_s = cfg.hours * 3600, cfg.natural_hours * 3600
    groups = [
        ("a", train_speakers, train_sentences, total_s * (1 - TEST_SHARE)),
        ("h", test_speakers, test_sentences, total_s * TEST_SHARE),
    ]
    if natural_s > 0:
        natural, natural_held_out = select_natural(cfg.speakers)
        groups += [
            ("n", [v.name for v in natural if v.name not in natural_held_out], train_sentences,
             natural_s * (1 - TEST_SHARE)),
            ("k", [v.name for v in natural if v.name in natural_held_out], test_sentences,
             natural_s * TEST_SHARE),
        ]
    items: list[Item] = []
    for group, speakers, sentences, budget in groups:
        for kind, share, make in (
            ("single", 1 - cfg.dialogue_fraction, _single),
            ("dialogue", cfg.dialogue_fraction, _dialogue),
        ):
            rng = random.Random(f"{config.seed}-{group}-{kind}")
            spent, number = 0.0, 0
            while spent < budget * share:
                number += 1
                item = make(rng, speakers, sentences)
                item.id = f"{kind[0]}{group}{number:06d}"
                if group in ("h", "k"):
                    item.split = "test"
                else:
                    item.split = (
                        "valid"
                        if random.Random(f"{config.seed}-valid-{item.id}").random() < cfg.valid_fraction
                        else "train"
                    )
                spent += _estimate(item)
                items.append(item)
    return items


def corpus_voices(config: DataConfig) -> dict[str, Voice | NaturalVoice]:
    """Every speaker the plan can name, synthetic and (with `natural_hours`) natural."""
    voices = {v.name: v for v in select_voices(config.corpus.speakers)[0]}
    if config.corpus.natural_hours > 0:
        voices |= {v.name: v for v in select_natural(config.corpus.speakers)[0]}
    return voices


def render_order(items: list[Item]) -> list[Item]:
    """Natural held-out items, then natural training items, then the synthetic ones (plan order within)."""
    rank = {"k": 0, "n": 1}
    return sorted(items, key=lambda item: rank.get(item.id[1], 2))


def _estimate(item: Item) -> float:
    return sum(len(t.text) * SECONDS_PER_CHAR * t.stretch + t.gap_s for t in item.turns)


def _turn(rng: random.Random, speaker: str, text: str, gap_s: float = 0.0) -> Turn:
    return Turn(
        speaker,
        text,
        stretch=round(rng.uniform(0.9, 1.12), 3),
        gain_db=round(rng.uniform(-6, -1), 1),
        gap_s=gap_s,
    )


def _single(rng: random.Random, speakers: list[str], sentences: list[str]) -> Item:
    text = rng.choice(sentences)
    if rng.random() < 0.3:
        other = rng.choice(sentences)
        if len(text) + len(other) < 180:
            text = f"{text} {other}"
    return Item(id="", kind="single", split="", turns=[_turn(rng, rng.choice(speakers), text)])


def _dialogue(rng: random.Random, speakers: list[str], sentences: list[str]) -> Item:
    """Two speakers taking turns for 10-30 s, with natural gaps between turns."""
    pair = rng.sample(speakers, 2)
    target = rng.uniform(11, 27)
    turns: list[Turn] = []
    item = Item(id="", kind="dialogue", split="", turns=turns)
    while _estimate(item) < target or len(turns) < 2:
        text = rng.choice(sentences)
        if len(text) * SECONDS_PER_CHAR + _estimate(item) > 29 and len(turns) >= 2:
            break
        turns.append(
            _turn(rng, pair[len(turns) % 2], text, gap_s=round(rng.uniform(0.15, 0.6), 2) if turns else 0.1)
        )
    return item


def render_item(job: tuple[Item, str, int, dict[str, Voice | NaturalVoice]]) -> dict:
    """Render one item (all its turns) and write its wav, row and (dialogue) script."""
    item, out_dir, sample_rate, voices = job
    wav_dir = Path(out_dir) / "wavs"
    row_path = wav_dir / f"{item.id}.json"
    if row_path.exists():
        row = json.loads(row_path.read_text())
        same = row["text"] == " ".join(t.text for t in item.turns) and row["split"] == item.split
        if same and row.get("speakers") == list(dict.fromkeys(t.speaker for t in item.turns)):
            return row  # rendered before, by the same speakers (a changed voice list renders it again)
    pieces, turns, cursor = [], [], 0.0
    tmp_wav = wav_dir / f".{item.id}.turn.wav"
    for turn in item.turns:
        voices[turn.speaker].render(
            turn.text, tmp_wav, sample_rate, stretch=turn.stretch, gain_db=turn.gain_db
        )
        audio, _ = sf.read(tmp_wav, dtype="float32")
        gap = np.zeros(int(round(turn.gap_s * sample_rate)), dtype=np.float32)
        cursor += len(gap) / sample_rate
        turns.append(
            {
                "speaker": turn.speaker,
                "text": turn.text,
                "start_s": round(cursor, 3),
                "end_s": round(cursor + len(audio) / sample_rate, 3),
            }
        )
        cursor += len(audio) / sample_rate
        pieces += [gap, audio]
    tmp_wav.unlink(missing_ok=True)
    samples = np.concatenate(pieces)
    write_audio(wav_dir / f"{item.id}.wav", samples, sample_rate)  # atomic, 16-bit
    speakers = list(dict.fromkeys(t.speaker for t in item.turns))
    row = {
        "id": item.id,
        "kind": item.kind,
        "split": item.split,
        "path": f"wavs/{item.id}.wav",
        "text": " ".join(t.text for t in item.turns),
        "speaker": speakers[0],
        "speakers": speakers,
        "voice": {s: asdict(voices[s]) for s in speakers},
        "duration_s": round(len(samples) / sample_rate, 3),
        "turns": turns if item.kind == "dialogue" else None,
    }
    if item.kind == "dialogue":
        labels = {s: f"S{i + 1}" for i, s in enumerate(speakers)}
        script = "".join(f"[{labels[t['speaker']]}] {t['text']}\n" for t in turns)
        header = "".join(f"# {labels[s]} is {s}\n" for s in speakers)
        (wav_dir / f"{item.id}.txt").write_text(header + script)
    row_path.write_text(json.dumps(row))
    return row


def run(config: DataConfig, progress=None) -> dict:
    """Build (or finish) the corpus; returns its statistics."""
    if config.corpus.source != "synthetic":
        from pipelines.data import real_corpus

        return real_corpus.run(config, progress)
    out_dir = config.out_dir / "corpus"
    manifest = out_dir / "manifest.jsonl"
    started = time.time()
    items = plan(config)
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    voices = corpus_voices(config)
    if any(isinstance(v, NaturalVoice) for v in voices.values()):
        kokoro_model()  # assembled here once, not by every worker at the same time
    jobs = [(item, str(out_dir), config.sample_rate, voices) for item in render_order(items)]
    rows_by_id = {}
    with Pool(max(1, config.corpus.workers)) as pool:
        for row in pool.imap_unordered(render_item, jobs, chunksize=1):
            rows_by_id[row["id"]] = row
            if progress:
                progress(len(rows_by_id), len(jobs))
    rows = [rows_by_id[item.id] for item in items]
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, manifest)
    stats = corpus_stats(rows)
    stats["wall_s"] = round(time.time() - started, 1)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats
