"""The package's shape: its import graph has no cycle (issue 38, issue 49), and its public API loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's own modules a file imports, at the top or inside a function (`from a.b import c`
    counts a.b.c where that is a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.add(target if target in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in known}


def graph(packages=("soundstorm", "pipelines")) -> dict[str, set[str]]:
    paths = [p for package in packages for p in (ROOT / package).rglob("*.py")]
    known = {_module_name(p) for p in paths}
    # a package's __init__ is not an edge to everything under it
    return {_module_name(p): imports_of(p, known) - {_module_name(p)} for p in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_package_and_the_pipelines_have_no_import_cycle():
    edges = graph()
    assert {"soundstorm.chain.synthesize", "soundstorm.doors.cli", "pipelines.stages.corpus"} <= set(edges)
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_public_api_loads_lazily():
    probe = (
        "import sys, soundstorm; assert 'torch' not in sys.modules; "
        "from soundstorm import Synthesizer, SynthesisOptions, Synthesis, read_script, SoundstormError; "
        "print(Synthesizer.__module__, read_script.__module__, SoundstormError.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["soundstorm.chain.synthesize", "soundstorm.chain.script", "soundstorm.base.errors"]
