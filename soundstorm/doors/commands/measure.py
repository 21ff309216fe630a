"""`soundstorm bench` and `soundstorm eval`: SoundStorm against the AR baseline, for speed and quality."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from soundstorm.base.errors import InputError
from soundstorm.doors.flags import (
    Fp32Opt,
    Precision,
    PrecisionOpt,
    RunFlags,
    parse_durations,
    run_flags,
    warn,
    with_flags,
)


def against_ar_baseline(synth, without_weights: str, quiet: bool, run):
    """`run(ar_model, weights, progress)` with the bundle's AR baseline (a random-init one of the same size,
    with a warning that says `without_weights`, where the bundle has none) under one progress bar."""
    from soundstorm.doors.progress import stage_progress
    from soundstorm.measures.bench import ar_baseline_of

    ar_model, weights = ar_baseline_of(synth, without_weights, warn)
    with stage_progress(quiet) as progress:
        return run(ar_model, weights, progress)


def print_report(report, json_out: bool, table) -> None:
    """A report as one JSON line, or as its rich table."""
    if json_out:
        print(json.dumps(report.to_dict()))
        return
    from rich.console import Console

    Console().print(table(report))


@with_flags(RunFlags, run_flags)
def bench(
    durations: Annotated[
        str, typer.Option("--durations", help="Comma-separated durations in seconds.")
    ] = "5,10,20,30",
    runs: Annotated[
        int, typer.Option("--runs", min=1, max=100, help="Timed runs per point (median reported).")
    ] = 3,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write time vs duration as a PNG.")] = None,
    precision: PrecisionOpt = Precision.auto,
    fp32: Fp32Opt = False,
    *,
    flags: RunFlags,
) -> None:
    """Time SoundStorm against the autoregressive baseline on the same input."""
    from soundstorm.measures.bench import bench_table, plot_bench, run_bench

    seconds = parse_durations(durations)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot '{plot}': the plot is a .png file")
    synth = flags.load()

    def timed(ar_model, weights, progress):
        weights += "" if weights == "trained" else ", timing only"
        chosen = "fp32" if fp32 else Precision(precision).value
        return run_bench(synth, ar_model, weights, seconds, runs, chosen, flags.seed, progress)

    report = against_ar_baseline(synth, "timing a random-init one of the same size", flags.silent, timed)
    if plot is not None:
        plot_bench(report, plot)
    print_report(report, flags.json_out, bench_table)


@with_flags(RunFlags, run_flags)
def eval_command(
    test_set: Annotated[
        Path | None,
        typer.Option(
            "--test-set", help="Folder of NAME.wav + NAME.txt pairs; the bundle's held-out set otherwise."
        ),
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write one row per utterance and system.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate the first N utterances.")
    ] = None,
    asr_model: Annotated[
        str | None, typer.Option("--asr-model", help="faster-whisper model name or folder (default tiny.en).")
    ] = None,
    *,
    flags: RunFlags,
) -> None:
    """The paper's quality table: intelligibility, voice similarity, consistency."""
    from soundstorm.bundles.checkpoints import component_path
    from soundstorm.measures.quality import quality_table, read_test_set, run_eval, write_csv

    if test_set is not None and not test_set.is_dir():
        raise InputError(f"--test-set '{test_set}' is not a folder")
    if csv is not None and (csv.is_dir() or not csv.parent.is_dir() or not os.access(csv.parent, os.W_OK)):
        raise InputError(f"--csv '{csv}': not a file in an existing, writable folder")
    synth = flags.load()
    if test_set is None:
        synth.bundle.require("testset", command="`eval` without --test-set")
        test_set = component_path(synth.bundle, "testset")
    items = read_test_set(test_set, limit)
    report = against_ar_baseline(
        synth,
        "its row is of a random-init one",
        flags.silent,
        lambda ar_model, weights, progress: run_eval(
            synth, ar_model, weights, items, flags.seed, asr_model, progress
        ),
    )
    if csv is not None:
        write_csv(report, csv)
    print_report(report, flags.json_out, quality_table)
