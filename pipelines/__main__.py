"""`python -m pipelines STAGE --config pipelines/configs/tiny.yaml`: build the data and models.

Stages, in order: corpus, text-tokenizer, semantic, codec, shards; `all` runs
them in turn. Each is deterministic under the config's seed, skips what is
already done and resumes after an interruption. Stage timings and sizes are
collected in OUT_DIR/stages.json for the model card. A stage run before the one that writes what it
reads stops with one `error:` line naming that stage (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipelines.config import load_config, set_overrides  # noqa: F401 (set_overrides: tests import it here)

STAGES = ("corpus", "text-tokenizer", "semantic", "codec", "shards")  # `all`: the data set
TRAINING = ("soundstorm", "t2s", "ar")
MODULES = {  # pipelines/stages/
    "soundstorm": "soundstorm",
    "t2s": "t2s",
    "ar": "ar",
    "corpus": "corpus",
    "text-tokenizer": "text_tokenizer",
    "semantic": "semantic",
    "codec": "codec",
    "shards": "shards",
}


# what each stage reads from out_dir, and the stage that writes it
NEEDS = {
    "text-tokenizer": (("corpus/manifest.jsonl", "corpus"),),
    "semantic": (("corpus/manifest.jsonl", "corpus"),),
    "codec": (("corpus/manifest.jsonl", "corpus"),),
    "shards": (("corpus/manifest.jsonl", "corpus"), ("text_tokenizer", "text-tokenizer"), ("semantic", "semantic")),
    "soundstorm": (("shards/index.jsonl", "shards"),),
    "ar": (("shards/index.jsonl", "shards"),),
    "t2s": (("shards/index.jsonl", "shards"), ("text_tokenizer", "text-tokenizer")),
}


class MissingInput(Exception):
    """A stage run before the stage that writes what it reads."""


def missing_input(stage: str, config) -> str | None:
    """One line naming the first thing `stage` reads that is not under out_dir yet, and the stage that makes
    it (None when all is there). The shards stage also reads the codec folder (`codec_folder`)."""
    for relative, maker in NEEDS.get(stage, ()):
        if not (config.out_dir / relative).exists():
            return f"the {stage} stage needs {config.out_dir / relative}: run the {maker} stage first"
    if stage == "shards" and not config.codec.pretrained and not (config.out_dir / "codec").is_dir():
        return f"the shards stage needs {config.out_dir / 'codec'}: run the codec stage first"
    return None


def _progress_bar():
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def _record(out_dir: Path, stage: str, stats: dict) -> None:
    path = out_dir / "stages.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record[stage] = stats
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))


def run_stage(stage: str, config, quiet: bool = False) -> dict:
    import importlib

    problem = missing_input(stage, config)
    if problem:
        raise MissingInput(problem)
    module = importlib.import_module(f"pipelines.stages.{MODULES[stage]}")
    started = time.time()
    with _progress_bar() as bar:
        task = bar.add_task(stage, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        bar.disable = quiet
        stats = module.run(config, progress=progress)
    stats.setdefault("wall_s", round(time.time() - started, 1))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone records
        _record(config.out_dir, stage, stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=(*STAGES, "all", *TRAINING))
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--hours", type=float, help="override corpus.hours")
    parser.add_argument("--steps", type=int, help="override the stage's steps (STAGE.steps; codec.steps with all)")
    parser.add_argument("--out-dir", type=Path, help="override out_dir")
    parser.add_argument("--root", type=Path, help="override corpus.root (a real corpus's folder)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, dotted (soundstorm.steps=4000); the value is read as YAML",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        overrides = set_overrides(args.set)
    except ValueError as error:
        parser.error(str(error))
    if args.hours is not None:
        overrides["corpus.hours"] = args.hours
    if args.steps is not None:  # the steps of the stage that runs: `soundstorm --steps N` is soundstorm.steps
        owner = "codec" if args.stage == "all" else args.stage
        if owner not in ("codec", *TRAINING):
            parser.error(f"--steps: the {args.stage} stage takes no steps")
        overrides[f"{owner}.steps"] = args.steps
    if args.out_dir is not None:
        overrides["out_dir"] = str(args.out_dir)
    if args.root is not None:
        overrides["corpus.root"] = str(args.root)
    try:
        config = load_config(args.config, overrides)
    except (OSError, ValueError, TypeError, yaml.YAMLError) as error:
        parser.error(f"{args.config}: {error}")
    for stage in STAGES if args.stage == "all" else (args.stage,):
        try:
            stats = run_stage(stage, config, quiet=args.quiet)
        except MissingInput as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        summary = {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}
        print(f"{stage}: {json.dumps(summary)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
