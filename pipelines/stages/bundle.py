"""Assemble the embedded bundle from a built data set: `python -m pipelines.stages.bundle --config ... --name tiny`.

Copies the shipped form of each trained component into
`soundstorm/assets/NAME/<component>/` (large weights in int8 rows, `pipelines/int8.py`), and records
every file's sha256 in `checkpoints.yaml`.

`--folder DIR` instead writes a bundle folder to try (`--checkpoint DIR`) and changes nothing in the package:
the data set's trained components as they are, the others and the voices from a registered bundle
(`--base`, default `tiny`), e.g. a data set's codec, semantic tokenizer and SoundStorm measured through the
chain with the shipped T5, AR baseline and voices.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from pipelines.config import load_config, set_overrides
from pipelines.evaluations.model_card import model_card
from pipelines.int8 import store_int8
from soundstorm.bundles.checkpoints import ASSETS, PACKAGE_ROOT, sha256_file

REGISTRY = PACKAGE_ROOT.parent / "checkpoints.yaml"
# component -> (source folder under out_dir, files)
SOURCES = {
    "codec": ("codec", ("config.json", "model.safetensors")),
    "semantic": ("semantic", ("semantic.safetensors",)),
    "text": ("text_tokenizer", ("spm.model",)),
    "soundstorm": ("soundstorm", ("config.json", "model.safetensors")),
    "t2s": ("t2s", ("config.json", "generation_config.json", "model.safetensors", "t2s.json")),
    "ar_baseline": ("ar_baseline", ("config.json", "model.safetensors")),
}
VOICE_SECONDS = (3.0, 6.0)  # a bundled voice: one whole held-out utterance of this length


def _natural(row: dict) -> bool:
    """A row spoken by a natural voice (Kokoro's, `pipelines/data/natural_voices.py`)."""
    return any(v.get("engine") == "kokoro" for v in (row.get("voice") or {}).values())


def bundle_voices(out_dir: Path, target: Path, per_speaker: int = 1) -> list[dict]:
    """Copy one short single utterance of each held-out speaker (the test split) as a bundled voice.

    Held-out voices were never trained on, so they show how the model follows a voice it has not met.
    Natural voices come first (`say` without --prompt takes the first) and, where the corpus has any, they
    are at least half of the voices: synthetic ones (flite-derived first, the most natural of them) are kept
    up to the natural ones' count.
    """
    from pipelines.data.manifest import read_manifest

    target.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, list[dict]] = {}
    natural: set[str] = set()
    for row in read_manifest(out_dir, "test"):
        speaker = row["speakers"][0]
        if row["kind"] == "single" and VOICE_SECONDS[0] <= row["duration_s"] <= VOICE_SECONDS[1]:
            if len(chosen.setdefault(speaker, [])) < per_speaker:
                chosen[speaker].append(row)
                if _natural(row):
                    natural.add(speaker)
    synthetic = sorted((s for s in chosen if s not in natural), key=lambda s: (not s.startswith("flite"), s))
    if natural:
        synthetic = synthetic[: len(natural)]
    entries = []
    for speaker in sorted(natural) + synthetic:
        for row in chosen[speaker]:
            name = speaker
            shutil.copyfile(row["path"], target / f"{name}.wav")
            entries.append({"name": name, "file": f"{name}.wav", "text": row["text"]})
    (target / "voices.json").write_text(json.dumps(entries, indent=1))
    return entries


TESTSET_SECONDS = (5.0, 10.0)


def bundle_testset(out_dir: Path, target: Path, per_speaker: int = 2) -> list[str]:
    """`soundstorm eval`'s default test set: 5-10 s single utterances of each held-out speaker (wav + txt)."""
    from pipelines.data.manifest import read_manifest

    target.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    names = []
    for row in read_manifest(out_dir, "test"):
        speaker = row["speakers"][0]
        if row["kind"] != "single" or not TESTSET_SECONDS[0] <= row["duration_s"] <= TESTSET_SECONDS[1]:
            continue
        if counts.get(speaker, 0) >= per_speaker:
            continue
        counts[speaker] = counts.get(speaker, 0) + 1
        name = f"{speaker}-{counts[speaker]}"
        shutil.copyfile(row["path"], target / f"{name}.wav")
        (target / f"{name}.txt").write_text(row["text"] + "\n")
        names.append(name)
    return names


def _t2s_to_bf16(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    state = {
        k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(str(weights)).items()
    }
    save_file(state, str(weights), metadata={"format": "pt"})


def render_settings(codec_folder: Path, config) -> None:
    """Write the data set config's rendering settings into a copied codec's config.json: a feature codec whose
    decoder reads the voiced voice vector takes `codec.voice_match` (no retraining: it acts after the decoder)."""
    from soundstorm.models.feature_codec import WITH_VOICED_MEAN

    path = codec_folder / "config.json"
    stored = json.loads(path.read_text())
    if stored.get("model_type") != "soundstorm-feature-codec" or stored.get("voice_stats") not in WITH_VOICED_MEAN:
        return
    if stored.get("voice_match", 0.0) != config.codec.voice_match:
        path.write_text(json.dumps({**stored, "voice_match": config.codec.voice_match}, indent=1))


def source_folder(out_dir: Path, component: str) -> Path:
    """Where a component's files come from: its SOURCES folder, for the codec `codec_tuned` where
    `pipelines.stages.feature_tune` wrote one whole (the decoder taught SoundStorm's distributions)."""
    folder, files = SOURCES[component]
    tuned = out_dir / "codec_tuned"
    if component == "codec" and all((tuned / f).is_file() for f in files):
        return tuned
    return out_dir / folder


def assemble(out_dir: Path, name: str, only: list[str] | None = None, config=None) -> dict:
    target = ASSETS / name
    components = {}
    for component, (_, files) in SOURCES.items():
        if only and component not in only:
            continue
        src = source_folder(out_dir, component)
        if component == "text" and (src / "phonemes.json").is_file():  # a phoneme front end's vocabulary
            files = ("phonemes.json",)
        if not all((src / f).is_file() for f in files):
            continue
        dst = target / component
        dst.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(src / f, dst / f)
        if component == "codec" and config is not None:
            render_settings(dst, config)
        if component == "t2s":  # shipped in bf16 (half the size); loaded back in fp32
            _t2s_to_bf16(dst)
        if "model.safetensors" in files:  # and their large weights in int8 rows (`pipelines/int8.py`)
            store_int8(dst / "model.safetensors")
        components[component] = {
            "package": f"{name}/{component}",
            "files": {f: sha256_file(dst / f) for f in files},
        }
    if not only or "testset" in only:
        folder = target / "testset"
        picked = bundle_testset(out_dir, folder)
        if picked:
            components["testset"] = {
                "package": f"{name}/testset",
                "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir())},
            }
    if not only or "voices" in only:
        voices = target / "voices"
        entries = bundle_voices(out_dir, voices)
        if entries:
            files = ["voices.json"] + [e["file"] for e in entries]
            components["voices"] = {
                "package": f"{name}/voices",
                "files": {f: sha256_file(voices / f) for f in files},
            }
    return components


def write_bundle_folder(folder: Path, name: str, facts: dict, components: dict[str, Path]) -> Path:
    """A self-contained bundle folder (`--checkpoint FOLDER`): each component's files, hashed in bundle.yaml.

    `components`: kind -> a folder whose files (all of them, recursively) form that component.
    """
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"name": name, "facts": facts, "components": {}}
    for kind, src in components.items():
        dst = folder / kind
        if Path(src).resolve() != dst.resolve():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        files = sorted(p for p in dst.rglob("*") if p.is_file())
        entry["components"][kind] = {
            "path": kind,
            "files": {str(p.relative_to(dst)): sha256_file(p) for p in files},
        }
    (folder / "bundle.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
    return folder


def update_registry(name: str, components: dict, card: str | None, merge: bool = False) -> None:
    """Write the bundle's components (all of them; with `merge`, only these, keeping the others)."""
    text = REGISTRY.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    registry = yaml.safe_load(text)
    bundle = registry["bundles"][name]
    bundle["components"] = {**bundle["components"], **components} if merge else components
    if card:
        bundle["card"] = card
    REGISTRY.write_text(header + "\n" + yaml.safe_dump(registry, sort_keys=False, width=100))


def trial_folder(out_dir: Path, folder: Path, base: str = "tiny", config=None) -> dict[str, str]:
    """A bundle folder of `out_dir`'s trained components (the codec from `codec_tuned` where whole) and `base`'s
    others; `base`'s facts, with the levels and codebook size of the data set's codec. Returns where each
    component came from."""
    from soundstorm.bundles.checkpoints import component_path, load_registry

    bundle = load_registry().get(base)
    folder.mkdir(parents=True, exist_ok=True)
    components, origin, facts = {}, {}, dict(bundle.facts)
    for component, (_, files) in SOURCES.items():
        src = source_folder(out_dir, component)
        if component == "text" and (src / "phonemes.json").is_file():
            files = ("phonemes.json",)
        if all((src / f).is_file() for f in files):
            (folder / component).mkdir(exist_ok=True)
            for f in files:  # the files alone, not a stage's checkpoints and logs
                shutil.copyfile(src / f, folder / component / f)
            if component == "codec" and config is not None:
                render_settings(folder / component, config)
            components[component], origin[component] = folder / component, str(src)
        elif component in bundle.components:
            components[component] = component_path(bundle, component)
            origin[component] = f"{base}/{component}"
    if "voices" in bundle.components:
        components["voices"], origin["voices"] = component_path(bundle, "voices"), f"{base}/voices"
    if components.get("codec") == folder / "codec":  # the data set's codec: its sizes
        config = json.loads((folder / "codec" / "config.json").read_text())
        facts |= {k: config[k] for k in ("levels", "codebook_size") if k in config}
    write_bundle_folder(folder, folder.name, facts, components)
    return origin


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--name", default="tiny")
    parser.add_argument("--components", nargs="*", help="ship only these (default: every trained one)")
    parser.add_argument("--out-dir", type=Path, help="override the config's out_dir")
    parser.add_argument("--folder", type=Path, help="write a bundle folder to try instead of shipping")
    parser.add_argument("--base", default="tiny", help="with --folder: the bundle the other components come from")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (YAML value)"
    )
    args = parser.parse_args(argv)
    overrides = set_overrides(args.set)
    if args.out_dir:
        overrides["out_dir"] = str(args.out_dir)
    config = load_config(args.config, overrides)
    if args.folder:
        print(json.dumps(trial_folder(config.out_dir, args.folder, args.base, config), indent=1))
        return 0
    components = assemble(config.out_dir, args.name, args.components, config)
    # What the stages recorded goes beside the data; it becomes the bundle's card only where the bundle has
    # none yet (a shipped bundle's card is kept short and written by hand: what it is, its figures, how to
    # remake it; its run history lives in docs/history/, outside the package).
    report = model_card(config.out_dir, args.config, args.name)
    (config.out_dir / "MODEL_CARD.md").write_text(report)
    card_file = ASSETS / args.name / "MODEL_CARD.md"
    if not card_file.exists():
        card_file.write_text(report)
    card = f"{args.name}/MODEL_CARD.md"
    update_registry(args.name, components, card, merge=bool(args.components))
    print(json.dumps({k: list(v["files"]) for k, v in components.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
