"""`soundstorm checkpoints`: the bundle registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from soundstorm.base.errors import SoundstormError
from soundstorm.doors.flags import JsonOpt

app = typer.Typer(cls=TyperGroup, help="List, verify and fetch model bundles.", no_args_is_help=True)


@app.command("list")
def checkpoints_list(json_out: JsonOpt = False) -> None:
    """Every bundle of the registry, with its components and facts."""
    from soundstorm.bundles.checkpoints import COMPONENT_KINDS, load_registry

    registry = load_registry()
    rows = []
    for name in registry.names():
        bundle = registry.bundles[name]
        facts = bundle.facts
        rows.append(
            {
                "name": name,
                "default": name == registry.default,
                "components": {
                    k: bundle.components[k].source for k in COMPONENT_KINDS if k in bundle.components
                },
                "sample_rate": facts.get("sample_rate"),
                "frame_rate": facts.get("codec_frame_rate"),
                "levels": facts.get("levels"),
                "description": bundle.description,
            }
        )
    if json_out:
        print(json.dumps({"registry": str(registry.path), "bundles": rows}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bundles in {registry.path}")
    for column in ("name", "components", "sample rate", "frame rate", "levels"):
        table.add_column(column)
    for row in rows:
        comps = ", ".join(f"{k} ({v})" for k, v in row["components"].items()) or "[dim]none yet[/dim]"
        label = row["name"] + (" [bold](default)[/bold]" if row["default"] else "")
        table.add_row(label, comps, f"{row['sample_rate']} Hz", f"{row['frame_rate']} Hz", str(row["levels"]))
    Console().print(table)


@app.command("verify")
def checkpoints_verify(
    name: Annotated[str | None, typer.Argument(help="Bundle to verify; all bundles otherwise.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Hash every file of a bundle (or all); exit 1 on any mismatch or missing file."""
    from soundstorm.bundles.checkpoints import load_registry, verify_bundle

    registry = load_registry()
    bundles = [registry.get(name)] if name else [registry.bundles[n] for n in registry.names()]
    checks = [check for bundle in bundles for check in verify_bundle(bundle)]
    if json_out:
        print(
            json.dumps(
                [
                    {"bundle": c.bundle, "component": c.component, "path": str(c.path), "status": c.status}
                    for c in checks
                ]
            )
        )
    else:
        for c in checks:
            print(
                f"{c.status:12s} {c.bundle}/{c.component}: {c.path}",
                file=sys.stderr if c.failed else sys.stdout,
            )
        if not checks:
            print("no files to verify: the chosen bundles have no components yet")
    failed = [c for c in checks if c.failed]
    if failed:
        raise SoundstormError(
            f"{len(failed)} of {len(checks)} files failed verification (first: {failed[0].path})"
        )


@app.command("fetch")
def checkpoints_fetch(
    name: Annotated[str, typer.Argument(help="Bundle whose hub components to download.")],
) -> None:
    """Download a bundle's hub-hosted components into the cache (needs a network)."""
    from soundstorm.bundles.checkpoints import component_path, load_registry

    bundle = load_registry().get(name)
    for kind in bundle.components:
        print(f"{kind}: {component_path(bundle, kind, command='fetch')}")


@app.command("import-encodec")
def checkpoints_import_encodec(
    path: Annotated[
        Path, typer.Argument(help="The original EnCodec checkpoint, e.g. encodec_24khz-d7cc33bc.th.")
    ],
    bundle: Annotated[str, typer.Option("--bundle", help="Bundle whose codec it becomes.")] = "encodec-24khz",
    out: Annotated[Path | None, typer.Option("--out", help="Write the converted model here instead.")] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Expected sha256 (else the name's prefix).")
    ] = None,
) -> None:
    """Convert the `encodec` package's checkpoint (.th) into the Hugging Face form the bundle loads."""
    from soundstorm.bundles.checkpoints import load_registry
    from soundstorm.bundles.encodec_import import import_encodec

    target = out
    if target is None:
        chosen = load_registry().get(bundle)
        chosen.require("codec", command="import-encodec")
        target = chosen.components["codec"].folder
    folder = import_encodec(path, target, sha256=sha256)
    print(f"imported {path} -> {folder}")
