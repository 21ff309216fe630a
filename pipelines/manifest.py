"""A built corpus's manifest (`corpus/manifest.jsonl`): reading it, and its statistics.

Apart from `corpus.py` and `real_corpus.py`, which both write manifests, so that neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path


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
