"""Batch rendering: many scripts (or many lines of text) with the models loaded once.

    soundstorm dialogue a.txt b.txt scripts/ -o out/      # every .txt of a folder, in name order
    soundstorm say --lines lines.txt -o out/              # one file per non-empty line

Every item is checked before any model loads (its script parses and passes the caps, its voices can be
read, its output is not one of its inputs); an item that fails, then or while rendering, is reported
in one line and skipped, and the others still render. Outputs are `OUT/<script name>.<format>` and
`OUT/line-NNN.<format>`, each written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soundstorm.base.errors import InputError, SoundstormError

MAX_ITEMS = 10000


@dataclass
class BatchItem:
    """One item: where it came from, where it goes, its checked request (`plan.Plan`), or why it cannot."""

    source: str
    output: Path
    plan: object | None = None
    error: str | None = None


def _planned(source: str, output: Path, inputs: dict, make_plan) -> BatchItem:
    """The item with its plan, or its error: the request's checks (`plan.py`; its voices decoded once for
    the whole batch by the shared reader), and its output writable and none of its inputs."""
    from soundstorm.io.audio import check_output_path, check_outputs_apart

    try:
        plan = make_plan()
        voices = {f"{s}'s voice": v.source for s, v in plan.voices.items()}
        check_outputs_apart({"the output": output}, inputs | voices)
        check_output_path(output)
    except SoundstormError as exc:
        return BatchItem(
            source, output, error=str(exc) if str(exc).startswith(source) else f"{source}: {exc}"
        )
    return BatchItem(source, output, plan)


def script_paths(paths: list[Path]) -> list[Path]:
    """The scripts named, a folder standing for its `.txt` files in name order."""
    found: list[Path] = []
    for path in paths:
        found += sorted(p for p in path.glob("*.txt") if p.is_file()) if path.is_dir() else [path]
    if not found:
        raise InputError("no scripts: the folders given hold no .txt file")
    if len(found) > MAX_ITEMS:
        raise InputError(f"{len(found)} scripts; at most {MAX_ITEMS} in one batch")
    return found


def plan_dialogues(
    paths: list[Path], out_dir: Path, suffix: str, seed: int, options, voices
) -> list[BatchItem]:
    """One item per script, checked (parse, caps, voices, output) before any model loads; `voices`: the
    `plan.VoiceReader` every item shares."""
    from soundstorm.chain.plan import plan_dialogue
    from soundstorm.chain.script import read_script

    items, taken = [], set()
    for path in script_paths(paths):
        output = _unique(out_dir / f"{path.stem}{suffix}", taken)
        items.append(
            _planned(
                str(path),
                output,
                {"the script": path},
                lambda path=path: plan_dialogue(read_script(path), None, options, seed, voices),
            )
        )
    return items


def plan_lines(
    lines_file: Path, out_dir: Path, suffix: str, prompt, seed: int, options, voices
) -> list[BatchItem]:
    """One item per non-empty line of `lines_file`, spoken in one voice (decoded once for them all)."""
    from soundstorm.chain.plan import plan_say
    from soundstorm.io.textfiles import SCRIPT_LIMIT, read_text_file

    text = read_text_file(lines_file, SCRIPT_LIMIT, InputError, "lines file")
    numbered = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not numbered:
        raise InputError(f"lines file '{lines_file}' has no line to say")
    if len(numbered) > MAX_ITEMS:
        raise InputError(f"{len(numbered)} lines; at most {MAX_ITEMS} in one batch")
    width = max(3, len(str(len(numbered))))
    items = []
    for k, (n, line) in enumerate(numbered, 1):
        output = out_dir / f"line-{k:0{width}d}{suffix}"
        items.append(
            _planned(
                f"{lines_file}:{n}",
                output,
                {"the lines file": lines_file},
                lambda line=line: plan_say(line, prompt, None, options, seed, voices),
            )
        )
    return items


def render_items(items: list[BatchItem], synth, production, report, on_error) -> list[dict]:
    """Render every item that passed its checks with one loaded `synth`, produced as `production` says;
    an item that fails gets its error (said through `on_error`) and the others go on. One row per item."""
    from soundstorm.io.audio import write_audio
    from soundstorm.io.production import produce

    rows = {id(i): {"input": i.source, "output": str(i.output), "ok": False, "error": i.error} for i in items}
    runnable = [i for i in items if not i.error]
    for n, item in enumerate(runnable):
        report("batch", n, len(runnable))
        try:
            result = synth.render(item.plan)
            produced = produce(result.audio, result.turns, result.sample_rate, production)
            write_audio(item.output, produced.mix, result.sample_rate)
        except SoundstormError as exc:
            item.error = rows[id(item)]["error"] = f"{item.source}: {exc}"
            on_error(item.error)
            continue
        rows[id(item)] |= {"ok": True} | result.report()
    if runnable:
        report("batch", len(runnable), len(runnable))
    return list(rows.values())


def _unique(path: Path, taken: set) -> Path:
    """`path`, or `path` with -2, -3, ... before the extension when an earlier item took it."""
    candidate, n = path, 1
    while candidate in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    taken.add(candidate)
    return candidate
