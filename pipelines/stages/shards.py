"""Stage 5: token shards, the training data of T2S, SoundStorm and the AR baseline.

    python -m pipelines shards --config pipelines/configs/tiny.yaml

For every item: codec codes [Q, T] (50 Hz), semantic tokens [T25] (25 Hz),
text tokens, speakers and turn times, concatenated into compact safetensors
shards (`shards/shard-NNNN.safetensors`) with an index (`shards/index.jsonl`)
that gives each item's offsets, so `TokenShards` reads any item at random.
Finished shards are skipped on a rerun.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipelines.config import DataConfig
from pipelines.data.manifest import read_manifest
from soundstorm.chain.codec import load_codec
from soundstorm.chain.phonemes import load_text_tokenizer
from soundstorm.chain.semantic import SEMANTIC_RATE

SHARD_ITEMS = 512


def _text_ids(tokenizer, row: dict, labels: dict[str, int]) -> list[int]:
    """Text tokens; a dialogue's turns are each prefixed with their speaker piece (<spk1>, <spk2>)."""
    if row["kind"] != "dialogue":
        return tokenizer.encode(row["text"])
    text = " ".join(f"<spk{labels[t['speaker']] + 1}> {t['text']}" for t in row["turns"])
    return tokenizer.encode(text)


def _build_shard(
    rows: list[dict], codec, tokenizer, semantic: dict, speakers: dict[str, int], path: Path
) -> list[dict]:
    from safetensors.numpy import save_file

    codes_all, sem_all, text_all, index = [], [], [], []
    offsets = {"codes": 0, "semantic": 0, "text": 0}
    for row in rows:
        wav = sf.read(row["path"], dtype="float32")[0]
        sem = semantic[row["id"]].astype(np.int16)
        given = torch.from_numpy(sem.astype(np.int64)) if codec.needs_semantic else None
        codes = codec.encode(torch.from_numpy(wav), semantic=given).numpy().astype(np.int16)  # [Q, T]
        labels = {s: i for i, s in enumerate(row["speakers"])}
        text = np.asarray(_text_ids(tokenizer, row, labels), dtype=np.int16)
        turns = [
            {
                "speaker": speakers[t["speaker"]],
                "start": round(t["start_s"] * codec.frame_rate),
                "end": round(t["end_s"] * codec.frame_rate),
                "text": t["text"],
            }
            for t in (row["turns"] or [])
        ]
        index.append(
            {
                "id": row["id"],
                "split": row["split"],
                "kind": row["kind"],
                "shard": path.name,
                "speakers": [speakers[s] for s in row["speakers"]],
                "text": row["text"],
                "duration_s": row["duration_s"],
                "codes": [offsets["codes"], codes.shape[1]],
                "semantic": [offsets["semantic"], len(sem)],
                "text_ids": [offsets["text"], len(text)],
                "turns": turns,
            }
        )
        offsets["codes"] += codes.shape[1]
        offsets["semantic"] += len(sem)
        offsets["text"] += len(text)
        codes_all.append(codes)
        sem_all.append(sem)
        text_all.append(text)
    tmp = path.with_suffix(".tmp")
    save_file(
        {
            "codes": np.ascontiguousarray(np.concatenate(codes_all, axis=1)),
            "semantic": np.concatenate(sem_all),
            "text": np.concatenate(text_all),
        },
        str(tmp),
    )
    tmp.rename(path)
    return index


def codec_folder(config: DataConfig) -> Path:
    """The trained codec under out_dir, or the pretrained one a bundle names (`codec.pretrained`)."""
    if not config.codec.pretrained:
        return config.out_dir / "codec"
    from soundstorm.bundles.checkpoints import component_path, load_registry

    return component_path(load_registry().get(config.codec.pretrained), "codec", command="the shards stage")


def load_semantic(folder: Path) -> dict:
    """Every item's 25 Hz semantic tokens, by id, from the semantic stage's parts."""
    from safetensors.numpy import load_file

    tokens = {}
    for part in sorted(folder.glob("part-*.safetensors")):
        tokens.update(load_file(str(part)))
    return tokens


def run(config: DataConfig, progress=None) -> dict:
    out = config.out_dir / "shards"
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.set_num_threads(max(1, config.codec.threads))
    codec = load_codec(codec_folder(config))
    tokenizer = load_text_tokenizer(config.out_dir / "text_tokenizer")
    semantic = load_semantic(config.out_dir / "semantic")
    rows = read_manifest(config.out_dir)
    speakers = {name: i for i, name in enumerate(sorted({s for r in rows for s in r["speakers"]}))}
    (out / "speakers.json").write_text(json.dumps(speakers, indent=1))
    index = []
    chunks = range(0, len(rows), SHARD_ITEMS)
    for n, start in enumerate(chunks):
        path = out / f"shard-{n:04d}.safetensors"
        sidecar = path.with_suffix(".index.json")
        if not (path.exists() and sidecar.exists()):
            part = _build_shard(rows[start : start + SHARD_ITEMS], codec, tokenizer, semantic, speakers, path)
            sidecar.write_text(json.dumps(part))
        index += json.loads(sidecar.read_text())
        if progress:
            progress(n + 1, len(chunks))
    (out / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in index))
    meta = {
        "codec_frame_rate": codec.frame_rate,
        "semantic_rate": SEMANTIC_RATE,
        "levels": codec.num_levels,
        "codebook_size": codec.codebook_size,
        "codec_needs_semantic": codec.needs_semantic,
        "text_vocab": tokenizer.vocab_size,
        "speakers": len(speakers),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    frames = sum(r["codes"][1] for r in index)
    return {
        "items": len(index),
        "shards": len(chunks),
        "codec_frames": frames,
        "codec_tokens": frames * codec.num_levels,
        "semantic_tokens": sum(r["semantic"][1] for r in index),
        "text_tokens": sum(r["text_ids"][1] for r in index),
        "bytes": sum(p.stat().st_size for p in out.glob("shard-*.safetensors")),
        "wall_s": round(time.time() - started, 1),
    }


class TokenShards:
    """Random access to the items of a shards folder (memory-mapped safetensors)."""

    def __init__(self, folder: str | Path, split: str | None = None):
        from safetensors import safe_open

        self.folder = Path(folder)
        rows = [json.loads(line) for line in (self.folder / "index.jsonl").read_text().splitlines() if line]
        self.items = [r for r in rows if split is None or r["split"] == split]
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self._files = {
            name: safe_open(str(self.folder / name), framework="np")
            for name in sorted({r["shard"] for r in self.items})
        }

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ratio(self) -> int:
        """Codec frames per semantic frame."""
        return self.meta["codec_frame_rate"] // self.meta["semantic_rate"]

    @functools.cached_property
    def singles_by_speaker(self) -> dict[int, list[int]]:
        """Indices of the single utterances of each speaker (where voice prompts come from)."""
        found: dict[int, list[int]] = {}
        for i, row in enumerate(self.items):
            if row["kind"] == "single":
                found.setdefault(row["speakers"][0], []).append(i)
        return found

    def __getitem__(self, i: int) -> dict:
        row = self.items[i]
        handle = self._files[row["shard"]]
        (c0, cn), (s0, sn), (t0, tn) = row["codes"], row["semantic"], row["text_ids"]
        return {
            **row,
            "codes": handle.get_slice("codes")[:, c0 : c0 + cn].astype(np.int64),
            "semantic_tokens": handle.get_slice("semantic")[s0 : s0 + sn].astype(np.int64),
            "text_tokens": handle.get_slice("text")[t0 : t0 + tn].astype(np.int64),
        }
