"""Assemble the embedded bundle from a built data set: `python -m pipelines.bundle --config ... --name tiny`.

Copies the shipped form of each trained component into
`soundstorm_cli/assets/NAME/<component>/`, writes weights at half precision
where inference does not need more (codebooks stay fp32), and records every
file's sha256 in `checkpoints.yaml`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from pipelines.config import load_config
from soundstorm_cli.checkpoints import ASSETS, PACKAGE_ROOT, sha256_file

REGISTRY = PACKAGE_ROOT.parent / "checkpoints.yaml"
# component -> (source folder under out_dir, files)
SOURCES = {
    "codec": ("codec", ("config.json", "model.safetensors")),
    "semantic": ("semantic", ("semantic.safetensors",)),
    "text": ("text_tokenizer", ("spm.model",)),
    "soundstorm": ("soundstorm", ("config.json", "model.safetensors")),
}
# Buffers only training needs (EMA statistics of the codebooks).
TRAINING_ONLY = ("embed_sum", "cluster_size", "initted")


def _half_codec(src: Path, dst: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(src))
    kept = {}
    for key, value in state.items():
        if key.rsplit(".", 1)[-1] in TRAINING_ONLY:
            continue
        is_codebook = key.endswith(".embed")
        kept[key] = value if is_codebook or not value.is_floating_point() else value.to(torch.float16)
    save_file({k: v.contiguous() for k, v in kept.items()}, str(dst))


def assemble(out_dir: Path, name: str) -> dict:
    target = ASSETS / name
    components = {}
    for component, (folder, files) in SOURCES.items():
        src = out_dir / folder
        if not all((src / f).is_file() for f in files):
            continue
        dst = target / component
        dst.mkdir(parents=True, exist_ok=True)
        for f in files:
            if component == "codec" and f == "model.safetensors":
                _half_codec(src / f, dst / f)
            else:
                shutil.copyfile(src / f, dst / f)
        components[component] = {
            "package": f"{name}/{component}",
            "files": {f: sha256_file(dst / f) for f in files},
        }
    return components


def update_registry(name: str, components: dict, card: str | None) -> None:
    text = REGISTRY.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    registry = yaml.safe_load(text)
    bundle = registry["bundles"][name]
    bundle["components"] = components
    if card:
        bundle["card"] = card
    REGISTRY.write_text(header + "\n" + yaml.safe_dump(registry, sort_keys=False, width=100))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--name", default="tiny")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    components = assemble(config.out_dir, args.name)
    card = f"{args.name}/MODEL_CARD.md" if (ASSETS / args.name / "MODEL_CARD.md").exists() else None
    update_registry(args.name, components, card)
    print(json.dumps({k: list(v["files"]) for k, v in components.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
