"""Where `soundstorm dialogue` spends its time: a per-stage table and the heaviest operators, in one run.

    python benchmarks/profile_dialogue.py [--script examples/dialogue.txt] [--runs 3] [--top 12]
    python benchmarks/profile_dialogue.py --memory [--repeat 6]

Stages: import, model loading, the first render (an empty prompt cache: its prompts are encoded), then
each render's own timings (prompts, front end, SoundStorm, codec) as `Synthesis.timings` reports them,
median of `--runs` more renders (their prompts come from the cache); then one more render under the
PyTorch profiler (CPU), whose heaviest operators by self time are listed. Peak RSS is the process's.
`--memory`: peak RSS of one render of the script and of the script's turns repeated `--repeat` times
(about 3 minutes for the example), each in a fresh process. Run it on a quiet machine: the figures are
wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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
    parser.add_argument("--precision", default="auto", help="auto (bf16 where native), bf16 or fp32")
    parser.add_argument("--memory", action="store_true", help="peak RSS of a short and a long render")
    parser.add_argument("--repeat", type=int, default=6, help="--memory: the long script's repeats")
    parser.add_argument("--render-once", type=int, help=argparse.SUPPRESS)  # --memory's child: N repeats
    args = parser.parse_args(argv)
    if args.render_once:
        return _render_once(args.script, args.render_once, args.checkpoint)
    if args.memory:
        return _memory(args)
    os.environ["SOUNDSTORM_HOME"] = tempfile.mkdtemp(prefix="soundstorm-profile-")  # an empty prompt cache

    started = time.perf_counter()
    import torch

    from soundstorm.chain.script import read_script
    from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer

    imported = time.perf_counter() - started
    options = SynthesisOptions(precision=args.precision).check()
    synth = Synthesizer.from_checkpoint(args.checkpoint, device="cpu")
    cold_load = synth.load_s
    script = read_script(args.script)
    first = synth.dialogue(script, seed=0, options=options)  # also the warm-up
    runs = [synth.dialogue(script, seed=0, options=options) for _ in range(args.runs)]
    rows = {stage: statistics.median(r.timings[stage] for r in runs) for stage in STAGES}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        synth.dialogue(script, seed=0, options=options)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.top]
    report = {
        "audio_s": round(runs[0].duration_s, 2),
        "threads": torch.get_num_threads(),
        "precision": runs[0].precision,
        "import_s": round(imported, 3),
        "load_s": round(cold_load, 3),
        "first_render_s": {k: round(first.timings[k], 3) for k in STAGES},
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
        f"{args.script}: {report['audio_s']} s of audio, {report['threads']} threads, "
        f"{report['precision']}, median of {args.runs}"
    )
    print("| stage | first render, s | later renders, s |\n|---|---|---|")
    print(f"| import | {report['import_s']} | |\n| load | {report['load_s']} | |")
    for stage, seconds in report["stages_s"].items():
        print(f"| {stage} | {report['first_render_s'][stage]} | {seconds} |")
    print(f"\npeak RSS {report['peak_rss_mb']} MB; {report['forward_passes']} SoundStorm passes\n")
    print("| operator (one profiled render) | self s | calls |\n|---|---|---|")
    for op in report["top_ops"]:
        print(f"| `{op['op']}` | {op['self_s']} | {op['calls']} |")
    return 0


def _render_once(script_path: Path, repeat: int, checkpoint) -> int:
    """One render of the script's turns repeated `repeat` times; prints its length and this process's peak RSS."""
    import dataclasses

    from soundstorm.chain.script import read_script
    from soundstorm.chain.synthesize import Synthesizer

    script = read_script(script_path)
    script = dataclasses.replace(script, turns=tuple(script.turns) * repeat)
    result = Synthesizer.from_checkpoint(checkpoint, device="cpu").dialogue(script, seed=0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"audio_s": round(result.duration_s, 1), "peak_rss_mb": round(rss, 1)}))
    return 0


def _memory(args) -> int:
    rows = []
    for repeat in (1, args.repeat):
        cmd = [sys.executable, __file__, "--script", str(args.script), "--render-once", str(repeat)]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    if args.json:
        print(json.dumps(rows))
        return 0
    print("| audio, s | peak RSS, MB |\n|---|---|")
    for row in rows:
        print(f"| {row['audio_s']} | {row['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
