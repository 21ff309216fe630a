"""A built corpus's manifest (`corpus/manifest.jsonl`): reading it, and its statistics.

Apart from `corpus.py` and `real_corpus.py`, which both write manifests, so that neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    from pipelines.config import DataConfig


def corpus_stats(rows: list[dict]) -> dict:
    stats: dict = {"items": len(rows), "hours": round(sum(r["duration_s"] for r in rows) / 3600, 3)}
    for split in ("train", "valid", "test"):
        part = [r for r in rows if r["split"] == split]
        stats[split] = {
            "items": len(part),
            "dialogues": sum(r["kind"] == "dialogue" for r in part),
            "hours": round(sum(r["duration_s"] for r in part) / 3600, 3),
            "speakers": sorted({s for r in part for s in r["speakers"]}),
        }
    return stats


def read_manifest(out_dir: Path, split: str | None = None) -> list[dict]:
    """Rows of a built corpus (optionally one split); paths made absolute."""
    corpus = Path(out_dir) / "corpus"
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line]
    for row in rows:
        row["path"] = str(corpus / row["path"])
    return [r for r in rows if split is None or r["split"] == split]


TRAIN_HOURS = 4.0  # the codec stages' training audio, held in memory


def load_training_audio(config: DataConfig, hours: float, with_ids: bool = False):
    """int16 arrays of training-split files, in manifest order (or a seeded shuffle of it, with
    `codec.train_order: shuffled`), up to `hours` (and their item ids)."""
    rows = list(read_manifest(config.out_dir, "train"))
    if config.codec.train_order == "shuffled":
        rows = [rows[i] for i in np.random.default_rng(config.seed).permutation(len(rows))]
    elif config.codec.train_order != "manifest":
        raise SystemExit(f"codec.train_order: manifest or shuffled, got {config.codec.train_order!r}")
    clips, ids, total = [], [], 0.0
    for row in rows:
        if total >= hours * 3600:
            break
        data, _ = sf.read(row["path"], dtype="int16")
        clips.append(data)
        ids.append(row["id"])
        total += len(data) / config.sample_rate
    return (clips, ids) if with_ids else clips
