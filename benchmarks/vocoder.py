"""FARGAN's speed: `python benchmarks/vocoder.py [--seconds 30] [--runs 3]`.

Analyses `--seconds` of espeak-ng speech into LPCNet features and renders them back with FARGAN, in one
thread, and prints the best time of each and the real-time factor. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time

import numpy as np

from soundstorm_cli.audio import read_audio
from soundstorm_cli.phonemes import espeak_env
from soundstorm_cli.vocoder import fargan

TEXT = "The quick brown fox jumps over the lazy dog, and the five boxing wizards jump quickly. "


def speech(seconds: float) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-w", tmp.name, TEXT * 3], check=True, env=espeak_env())
        audio = read_audio(tmp.name, fargan.SAMPLE_RATE).samples
    reps = int(np.ceil(seconds * fargan.SAMPLE_RATE / audio.size))
    return np.tile(audio, reps)[: int(seconds * fargan.SAMPLE_RATE)]


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    audio = speech(args.seconds)
    features = fargan.analyze(audio)
    analyse_s = best_of(args.runs, lambda: fargan.analyze(audio))
    render_s = best_of(args.runs, lambda: fargan.synthesize(features))
    report = {
        "seconds": args.seconds,
        "analyse_s": round(analyse_s, 4),
        "synthesize_s": round(render_s, 4),
        "synthesize_rtf": round(render_s / args.seconds, 5),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
