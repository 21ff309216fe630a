"""Where `soundstorm dialogue` spends its time: a per-stage table and the heaviest operators, in one run.

    python benchmarks/profile_dialogue.py [--script examples/dialogue.txt] [--runs 3] [--top 12]

Stages: import, model loading (cold, then warm), then each render's own timings (prompts, front end,
SoundStorm, codec) as `Synthesis.timings` reports them, median of `--runs` renders after a warm-up; then
one more render under the PyTorch profiler (CPU), whose heaviest operators by self time are listed.
Peak RSS is the process's. Run it on a quiet machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

STAGES = ("prompt", "t2s", "acoustic", "decode", "total")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, default=Path("examples/dialogue.txt"))
    parser.add_argument("--checkpoint")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import torch

    from soundstorm_cli.script import read_script
    from soundstorm_cli.synthesize import Synthesizer

    imported = time.perf_counter() - started
    synth = Synthesizer.from_checkpoint(args.checkpoint, device="cpu")
    cold_load = synth.load_s
    script = read_script(args.script)
    synth.dialogue(script, seed=0)  # warm-up
    runs = [synth.dialogue(script, seed=0) for _ in range(args.runs)]
    rows = {stage: statistics.median(r.timings[stage] for r in runs) for stage in STAGES}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        synth.dialogue(script, seed=0)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.top]
    report = {
        "audio_s": round(runs[0].duration_s, 2),
        "threads": torch.get_num_threads(),
        "import_s": round(imported, 3),
        "load_s": round(cold_load, 3),
        "stages_s": {k: round(v, 3) for k, v in rows.items()},
        "forward_passes": runs[0].forward_passes,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "top_ops": [
            {"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count} for e in ops
        ],
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{args.script}: {report['audio_s']} s of audio, {report['threads']} threads, median of {args.runs}"
    )
    print(f"| stage | seconds |\n|---|---|\n| import | {report['import_s']} |\n| load | {report['load_s']} |")
    for stage, seconds in report["stages_s"].items():
        print(f"| {stage} | {seconds} |")
    print(f"\npeak RSS {report['peak_rss_mb']} MB; {report['forward_passes']} SoundStorm passes\n")
    print("| operator (one profiled render) | self s | calls |\n|---|---|---|")
    for op in report["top_ops"]:
        print(f"| `{op['op']}` | {op['self_s']} | {op['calls']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
