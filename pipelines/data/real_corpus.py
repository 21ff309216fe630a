"""Stage 1 for a real corpus: LibriTTS-style trees or any folder of wav + txt pairs.

    corpus:
      source: libritts        # ROOT/SPEAKER/CHAPTER/NAME.wav + NAME.normalized.txt (LibriTTS, LibriTTS-R)
      root: /data/LibriTTS/train-clean-100
    # or
      source: folder          # ROOT/SPEAKER/.../NAME.wav + NAME.txt (speaker = first folder under ROOT)

Produces the same `corpus/manifest.jsonl` as the synthetic corpus, so every later
stage (tokenizers, codec, shards, training) runs unchanged. Streaming and
resumable: files are converted (downmix, resample, 16-bit) one by one by parallel
workers, each leaving `wavs/ID.wav` + `wavs/ID.json`; only manifest rows are kept
in memory; a rerun skips finished files. `held_out_speakers` speakers (chosen by a
hash of their name, so stable as the corpus grows) form the test split.
Two-speaker dialogues (share `dialogue_fraction` of the hours) are assembled from
single utterances of two speakers of the same split, with 0.15-0.6 s gaps, up to
30 s, as the synthetic corpus does.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from pipelines.config import DataConfig
from soundstorm.io.audio import read_audio, write_audio

MAX_DIALOGUE_S = 30.0


def find_utterances(root: Path, layout: str) -> list[tuple[str, Path, Path]]:
    """(speaker, wav, transcript) of every utterance under `root`, sorted."""
    if not root.is_dir():
        raise FileNotFoundError(f"corpus.root '{root}' is not a folder")
    suffix = ".normalized.txt" if layout == "libritts" else ".txt"
    found = []
    for wav in sorted(root.rglob("*.wav")):
        text = wav.with_name(wav.stem + suffix)
        if not text.is_file():
            continue
        speaker = wav.relative_to(root).parts[0] if len(wav.relative_to(root).parts) > 1 else "speaker"
        found.append((speaker, wav, text))
    if not found:
        raise FileNotFoundError(f"no NAME.wav with a NAME{suffix} beside it under '{root}'")
    return found


def _stable_rank(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}-{name}".encode()).hexdigest()


def _split(speaker: str, utterance: str, held_out: set[str], seed: int, valid_fraction: float) -> str:
    if speaker in held_out:
        return "test"
    draw = int(_stable_rank(utterance, seed)[:8], 16) / 16**8
    return "valid" if draw < valid_fraction else "train"


def _convert(job) -> dict | None:
    """One source file -> wavs/ID.wav + its row (skipped when done; None when unreadable)."""
    uid, speaker, wav, text_path, split, out_dir, sample_rate = job
    row_path = Path(out_dir) / "wavs" / f"{uid}.json"
    if row_path.exists():
        return json.loads(row_path.read_text())
    try:
        audio = read_audio(wav, sample_rate=sample_rate)
        text = " ".join(Path(text_path).read_text(encoding="utf-8").split())
    except Exception:  # noqa: BLE001 - one bad file of a real corpus is skipped, not fatal
        return None
    if not text or audio.duration_s < 0.5:
        return None
    write_audio(Path(out_dir) / "wavs" / f"{uid}.wav", audio.samples, sample_rate)
    row = {
        "id": uid,
        "kind": "single",
        "split": split,
        "path": f"wavs/{uid}.wav",
        "text": text,
        "speaker": speaker,
        "speakers": [speaker],
        "voice": {speaker: {"source": str(wav)}},
        "duration_s": round(audio.duration_s, 3),
        "turns": None,
    }
    row_path.write_text(json.dumps(row))
    return row


def _dialogues(rows: list[dict], config: DataConfig, out_dir: Path) -> list[dict]:
    """Assemble two-speaker dialogues from single utterances, per split, until their share of the hours."""
    import soundfile as sf

    rng = random.Random(f"{config.seed}-dialogues")
    total = sum(r["duration_s"] for r in rows)
    budget = total * config.corpus.dialogue_fraction / max(1e-9, 1 - config.corpus.dialogue_fraction)
    made, spent, number = [], 0.0, 0
    by_split: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        by_split.setdefault(r["split"], {}).setdefault(r["speaker"], []).append(r)
    pools = [(split, spk) for split, spk in by_split.items() if len(spk) >= 2]
    while pools and spent < budget:
        split, speakers = rng.choice(pools)
        pair = rng.sample(sorted(speakers), 2)
        number += 1
        uid = f"d{split[0]}{number:06d}"
        row_path = out_dir / "wavs" / f"{uid}.json"
        if row_path.exists():
            row = json.loads(row_path.read_text())
        else:
            pieces, turns, cursor = [], [], 0.0
            while len(turns) < 2 or cursor < rng.uniform(10, 25):
                source = rng.choice(speakers[pair[len(turns) % 2]])
                if cursor + source["duration_s"] > MAX_DIALOGUE_S and len(turns) >= 2:
                    break
                gap = round(rng.uniform(0.15, 0.6), 2) if turns else 0.1
                audio = sf.read(out_dir / source["path"], dtype="float32")[0]
                pieces += [np.zeros(int(gap * config.sample_rate), np.float32), audio]
                cursor += gap
                turns.append(
                    {
                        "speaker": source["speaker"],
                        "text": source["text"],
                        "start_s": round(cursor, 3),
                        "end_s": round(cursor + len(audio) / config.sample_rate, 3),
                    }
                )
                cursor += len(audio) / config.sample_rate
            write_audio(out_dir / "wavs" / f"{uid}.wav", np.concatenate(pieces), config.sample_rate)
            row = {
                "id": uid,
                "kind": "dialogue",
                "split": split,
                "path": f"wavs/{uid}.wav",
                "text": " ".join(t["text"] for t in turns),
                "speaker": pair[0],
                "speakers": pair,
                "voice": {},
                "duration_s": round(cursor, 3),
                "turns": turns,
            }
            row_path.write_text(json.dumps(row))
        made.append(row)
        spent += row["duration_s"]
    return made


def run(config: DataConfig, progress=None) -> dict:
    from pipelines.data.manifest import corpus_stats

    c = config.corpus
    if not c.root:
        raise ValueError(f"corpus.source '{c.source}' needs corpus.root, the folder of the corpus")
    out_dir = config.out_dir / "corpus"
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    started = time.time()
    found = find_utterances(Path(c.root).expanduser(), c.source)
    speakers = sorted({s for s, _, _ in found}, key=lambda s: _stable_rank(s, config.seed))
    held_out = set(speakers[: c.held_out_speakers]) if len(speakers) > c.held_out_speakers else set()
    jobs = [
        (
            f"s{n:07d}",
            speaker,
            str(wav),
            str(text),
            _split(speaker, wav.stem, held_out, config.seed, c.valid_fraction),
            str(out_dir),
            config.sample_rate,
        )
        for n, (speaker, wav, text) in enumerate(found)
    ]
    rows = []
    with Pool(max(1, c.workers)) as pool:
        for done, row in enumerate(pool.imap(_convert, jobs, chunksize=8), start=1):
            if row is not None:
                rows.append(row)
            if progress:
                progress(done, len(jobs))
    rows += _dialogues(rows, config, out_dir)
    manifest = out_dir / "manifest.jsonl"
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, manifest)
    stats = corpus_stats(rows)
    stats.update(
        {
            "source": c.source,
            "files_found": len(found),
            "skipped": len(found) - sum(r["kind"] == "single" for r in rows),
        }
    )
    stats["wall_s"] = round(time.time() - started, 1)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats
