"""The package's import graph: the voice lookup forms no cycle (issue 38: script, user_voices,
synthesize and prompt_cache imported each other, inside functions to dodge the loop)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "soundstorm_cli"
VOICE_MODULES = {"script", "user_voices", "voices", "home", "prompt_cache", "synthesize"}


def imports_of(module: Path) -> set[str]:
    """Every soundstorm_cli module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("soundstorm_cli."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("soundstorm_cli.")}
    return found


def graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}


def reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += edges.get(node, ())
    return False


def test_the_voice_lookup_forms_no_import_cycle():
    edges = graph()
    assert VOICE_MODULES <= set(edges)
    cycles = sorted(m for m in VOICE_MODULES if reaches(edges, m, m))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_the_cycle_finder_finds_a_cycle():
    assert reaches({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a", "a")
    assert not reaches({"a": {"b"}, "b": {"c"}, "c": set()}, "a", "a")
