"""The T5 front end's decoding time by weight format: `python benchmarks/t5_weights.py [--tokens 750] [--runs 3]`.

Samples `--tokens` semantic tokens (30 s of speech at 25 Hz) with the shipped T5 through `T5Stepper`, its
guards off (no end token, no floor), once per run and weight format, in one process, one thread (as the
tool runs it), and prints the best time of each. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from soundstorm.bundles.checkpoints import ASSETS
from soundstorm.models.t2s import load_t2s
from soundstorm.models.t5_step import T5Stepper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=750)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkpoint", default=str(ASSETS / "tiny" / "t2s"))
    args = parser.parse_args()
    t2s = load_t2s(args.checkpoint)
    text = t2s.input_ids(list(range(10, 40)))  # 30 text pieces
    report = {}
    for weights in ("fp32", "int8"):
        stepper = T5Stepper(t2s.model, weights=weights)
        times = []
        for _ in range(args.runs):
            torch.manual_seed(0)
            started = time.perf_counter()
            out = stepper.sample(text, [0], args.tokens, lambda *a: None, end=-1)
            times.append(time.perf_counter() - started)
        report[weights] = {
            "best_s": round(min(times), 3),
            "runs_s": [round(t, 3) for t in times],
            "tokens": len(out),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
