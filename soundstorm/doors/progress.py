"""Progress of a synthesis, stage by stage, as a rich bar on stderr (or nothing with --quiet)."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def stage_progress(quiet: bool):
    """Yields `report(stage, done, total)`; one bar per stage, shown on stderr."""
    if quiet:
        yield lambda *_: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield report
