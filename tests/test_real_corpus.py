"""A LibriTTS-style tree (generated, a few files) through every data stage: the real-corpus recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from pipelines.__main__ import main as pipelines_main
from pipelines.data.real_corpus import find_utterances

SPEAKERS = {"103": 120.0, "1034": 180.0, "1040": 240.0}


def libritts_tree(root):
    """ROOT/SPEAKER/CHAPTER/S_C_000N_00000.wav + .normalized.txt (and .original.txt, ignored)."""
    for n, (speaker, pitch) in enumerate(SPEAKERS.items()):
        for chapter in ("1240", "1241"):
            folder = root / speaker / chapter
            folder.mkdir(parents=True)
            for k in range(2):
                name = f"{speaker}_{chapter}_{k:06d}_000000"
                audio = voice_like(1.5 + 0.5 * k, 24000, pitch, n * 10 + k)
                sf.write(folder / f"{name}.wav", np.stack([audio, audio], axis=1), 24000)  # stereo 24 kHz
                (folder / f"{name}.normalized.txt").write_text(f"Speaker {speaker} reads sentence {k}.\n")
                (folder / f"{name}.original.txt").write_text("ignored\n")
    (root / "103" / "1240" / "broken_000000.wav").write_bytes(b"not audio")
    (root / "103" / "1240" / "broken_000000.normalized.txt").write_text("A broken file.\n")
    return root


def test_find_utterances_by_layout(tmp_path):
    root = libritts_tree(tmp_path / "LibriTTS")
    found = find_utterances(root, "libritts")
    assert len(found) == 13 and {s for s, _, _ in found} == set(SPEAKERS)
    with pytest.raises(FileNotFoundError, match="NAME.txt"):
        find_utterances(root, "folder")


@pytest.mark.slow
def test_libritts_recipe_end_to_end(tmp_path):
    root = libritts_tree(tmp_path / "LibriTTS")
    out = tmp_path / "out"
    config = tmp_path / "mini.yaml"
    toy = Path("pipelines/configs/toy.yaml").read_text()
    config.write_text(toy.replace("  speakers: toy\n", "  source: libritts\n  held_out_speakers: 1\n"))
    args = [
        "--config",
        str(config),
        "--out-dir",
        str(out),
        "--root",
        str(root),
        "--quiet",
    ]  # as the README says
    assert pipelines_main(["all", *args]) == 0
    rows = [json.loads(line) for line in (out / "corpus" / "manifest.jsonl").read_text().splitlines()]
    singles = [r for r in rows if r["kind"] == "single"]
    assert len(singles) == 12  # the broken file is skipped, not fatal
    assert len({r["speaker"] for r in singles if r["split"] == "test"}) == 1
    assert not {r["speaker"] for r in singles if r["split"] == "test"} & {
        r["speaker"] for r in singles if r["split"] != "test"
    }
    assert all(
        sf.info(out / "corpus" / r["path"]).samplerate == 16000 for r in rows
    )  # resampled to the config's rate
    dialogues = [r for r in rows if r["kind"] == "dialogue"]
    assert dialogues and all(len(set(t["speaker"] for t in d["turns"])) == 2 for d in dialogues)
    from pipelines.stages.shards import TokenShards

    shards = TokenShards(out / "shards")
    assert len(shards) == len(rows) and shards[0]["codes"].shape[0] == 2
    # A rerun converts nothing again.
    stamp = (out / "corpus" / "wavs" / f"{singles[0]['id']}.wav").stat().st_mtime
    assert pipelines_main(["corpus", *args]) == 0
    assert (out / "corpus" / "wavs" / f"{singles[0]['id']}.wav").stat().st_mtime == stamp
