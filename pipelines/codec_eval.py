"""Codec evaluation on held-out speakers: `python -m pipelines.codec_eval --config ... [--codec DIR]`.

On `codec.eval_utterances` single utterances of the test split (held-out
speakers), for the original audio and the codec's resynthesis with 8, 4 and 2
levels: Whisper tiny.en CER and WER, resemblyzer similarity to the original,
and log-mel distance to the original. Writes `codec/eval.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipelines.config import load_config
from pipelines.corpus import read_manifest
from soundstorm_cli.codec import load_codec
from soundstorm_cli.evaluate import Transcriber, VoiceSimilarity, cer, log_mel_distance, wer


def evaluate_codec(codec_dir: Path, rows: list[dict], levels=(8, 4, 2)) -> dict:
    codec = load_codec(codec_dir)
    asr, sim = Transcriber(), VoiceSimilarity()
    results = {"original": []} | {f"codec_{q}": [] for q in levels if q <= codec.num_levels}
    for row in rows:
        wav = sf.read(row["path"], dtype="float32")[0]
        text = asr(wav)
        results["original"].append(
            {"id": row["id"], "cer": cer(row["text"], text), "wer": wer(row["text"], text)}
        )
        codes = codec.encode(torch.from_numpy(wav))
        for q in levels:
            if q > codec.num_levels:
                continue
            resynth = codec.decode(codes[:q], length=len(wav)).numpy()
            heard = asr(resynth)
            results[f"codec_{q}"].append(
                {
                    "id": row["id"],
                    "cer": cer(row["text"], heard),
                    "wer": wer(row["text"], heard),
                    "similarity": sim(wav, resynth),
                    "mel_distance": log_mel_distance(wav, resynth),
                }
            )
    summary = {}
    for name, per in results.items():
        summary[name] = {
            key: round(float(np.mean([p[key] for p in per])), 4) for key in per[0] if key != "id"
        }
    return {
        "utterances": len(rows),
        "speakers": sorted({r["speaker"] for r in rows}),
        "summary": summary,
        "per_utterance": results,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--codec", type=Path, help="codec folder (default: OUT_DIR/codec)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    torch.set_num_threads(2)
    test = [r for r in read_manifest(config.out_dir, "test") if r["kind"] == "single"]
    # An even spread over the held-out speakers.
    rng = np.random.default_rng(config.seed)
    rows = [
        test[i]
        for i in sorted(
            rng.choice(len(test), size=min(config.codec.eval_utterances, len(test)), replace=False)
        )
    ]
    started = time.time()
    codec_dir = args.codec or config.out_dir / "codec"
    report = evaluate_codec(codec_dir, rows)
    report["codec"] = str(codec_dir)
    report["wall_s"] = round(time.time() - started, 1)
    out = config.out_dir / "codec" / "eval.json"
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
