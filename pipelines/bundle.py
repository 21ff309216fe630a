"""Assemble the embedded bundle from a built data set: `python -m pipelines.bundle --config ... --name tiny`.

Copies the shipped form of each trained component into
`soundstorm_cli/assets/NAME/<component>/`, and records every file's sha256 in `checkpoints.yaml`.
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
    "t2s": ("t2s", ("config.json", "generation_config.json", "model.safetensors", "t2s.json")),
    "ar_baseline": ("ar_baseline", ("config.json", "model.safetensors")),
}
VOICE_SECONDS = (3.0, 6.0)  # a bundled voice: one whole held-out utterance of this length


def bundle_voices(out_dir: Path, target: Path, per_speaker: int = 1) -> list[dict]:
    """Copy one short single utterance of each held-out speaker (the test split) as a bundled voice.

    Held-out voices were never trained on, so they show how the model follows a voice it has not met.
    """
    from pipelines.corpus import read_manifest

    target.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, list[dict]] = {}
    for row in read_manifest(out_dir, "test"):
        speaker = row["speakers"][0]
        if row["kind"] == "single" and VOICE_SECONDS[0] <= row["duration_s"] <= VOICE_SECONDS[1]:
            if len(chosen.setdefault(speaker, [])) < per_speaker:
                chosen[speaker].append(row)
    entries = []
    # flite-derived voices first (the most natural): `say` without --prompt takes the first.
    for speaker in sorted(chosen, key=lambda s: (not s.startswith("flite"), s)):
        for row in chosen[speaker]:
            name = speaker
            shutil.copyfile(row["path"], target / f"{name}.wav")
            entries.append({"name": name, "file": f"{name}.wav", "text": row["text"]})
    (target / "voices.json").write_text(json.dumps(entries, indent=1))
    return entries


TESTSET_SECONDS = (5.0, 10.0)


def bundle_testset(out_dir: Path, target: Path, per_speaker: int = 2) -> list[str]:
    """`soundstorm eval`'s default test set: 5-10 s single utterances of each held-out speaker (wav + txt)."""
    from pipelines.corpus import read_manifest

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


def assemble(out_dir: Path, name: str, only: list[str] | None = None) -> dict:
    target = ASSETS / name
    components = {}
    for component, (folder, files) in SOURCES.items():
        if only and component not in only:
            continue
        src = out_dir / folder
        if not all((src / f).is_file() for f in files):
            continue
        dst = target / component
        dst.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(src / f, dst / f)
        if component == "t2s":  # shipped in bf16 (half the size); loaded back in fp32
            _t2s_to_bf16(dst)
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


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _soundstorm_section(train: dict, result: dict) -> list[str]:
    if not train:
        return []
    parts = [
        "## SoundStorm",
        "",
        f"{train.get('params_m')} M parameters, {train.get('steps')} steps, {round(train.get('wall_s', 0) / 60)} min of "
        f"training on {train.get('trained_on', 'this CPU')} (settings in the config's `soundstorm:` section); "
        "final valid loss "
        f"{train.get('valid_loss')}, masked-token accuracy per level (valid split, the paper's mask) "
        f"{train.get('valid_accuracy')}.",
        "",
    ]
    if result:
        single = result["single"]
        parts += [
            f"{len(result['single_rows'])} held-out utterances of the 10 held-out speakers, their ground-truth semantic "
            "tokens, a 3 s prompt from another utterance of the same speaker, 16/1/1/1 iterations; Whisper tiny.en CER, "
            "resemblyzer similarity to the prompt:",
            "",
            _table(
                [
                    ["SoundStorm", single["cer_soundstorm"], single["similarity_soundstorm"]],
                    [
                        "codec resynthesis (same levels)",
                        single["cer_resynthesis"],
                        single["similarity_resynthesis"],
                    ],
                    ["codec resynthesis (8 levels)", single.get("cer_resynthesis_all_levels", "-"), "-"],
                ],
                ["audio", "Whisper CER", "similarity to the prompt"],
            ),
            "",
            f"Held-out two-speaker dialogues ({result.get('turns')} turns, the longest, each rendered in one call with "
            f"a 3 s prompt per speaker): {result.get('turns_right')} of the turns are closer in voice to their own "
            "speaker's prompt than to the other's"
            + (
                f" (the real turns, codec-resynthesised, pass the same test {result['turns_right_resynthesis']}"
                " of the time: the test's ceiling)."
                if result.get("turns_right_resynthesis") is not None
                else "."
            ),
            "",
        ]
    return parts


def _t2s_section(train: dict, result: dict) -> list[str]:
    if not train:
        return []
    parts = [
        "## Text to semantic (T5)",
        "",
        f"{train.get('params_m')} M parameters, {train.get('steps')} steps, {round(train.get('wall_s', 0) / 60)} min on "
        f"{train.get('trained_on', 'this CPU')}; final training loss {train.get('final_loss')}"
        + (f", validation loss {train['valid_loss']}." if train.get("valid_loss") is not None else "."),
        "",
    ]
    if result:
        m = result["summary"]
        parts += [
            f"{result['utterances']} held-out utterances; a prompt from another utterance of the same held-out "
            "speaker; the semantic tokens of three sources through the same SoundStorm and codec:",
            "",
            _table(
                [
                    ["ground truth", m["cer_ground_truth"], m["seconds_ground_truth"]],
                    ["T2S (T5)", m["cer_t2s"], m["seconds_t2s"]],
                    ["espeak front end", m["cer_espeak"], m["seconds_espeak"]],
                ],
                ["semantic tokens", "Whisper CER", "mean seconds"],
            ),
            "",
            f"T2S duration / original: {m['duration_ratio_t2s']} on average. Dialogue mode: the number of turn "
            f"boundaries equals the script's turns in {round(result['dialogues_turns_match'] * result['dialogues'])} "
            f"of {result['dialogues']} held-out dialogues (the guards make this hold for any weights).",
            "",
        ]
    return parts


def _ar_section(train: dict, result: dict) -> list[str]:
    if not train:
        return []
    parts = [
        "## AR baseline",
        "",
        f"Decoder-only Transformer of SoundStorm's width and depth over the flattened tokens (frame by frame, level "
        f"by level), {train.get('params_m')} M parameters, {train.get('steps')} steps, "
        f"{round((train.get('train_s') or train.get('wall_s', 0)) / 60)} min of training on this CPU (settings in the "
        f"config's `ar:` section); final valid loss {train.get('valid_loss')}, teacher-forced next-token accuracy "
        f"per level (valid split) {train.get('valid_accuracy')}.",
        "",
    ]
    if result:
        rows = [
            [system, m["cer"], m["wer"], m["similarity"], m["consistency"]]
            for system, m in result["summary"].items()
        ]
        parts += [
            f"`soundstorm eval` ({result['utterances']} held-out utterances, their first 3 s as the prompt, "
            "ground-truth semantic tokens; SoundStorm 16/1/1/1 passes, temperature 1 annealed to 0; the AR baseline "
            "sampling every token at temperature 1; the paper's Table 1):",
            "",
            _table(rows, ["system", "Whisper CER", "WER", "similarity to the prompt", "consistency"]),
            "",
        ]
    return parts


def _default_commands(config_path, name: str) -> list[str]:
    return [
        "```bash",
        f"python -m pipelines all --config {config_path}        # corpus, tokenizers, codec, shards",
        f"python -m pipelines.codec_eval --config {config_path}   # codec figures below",
        f"python -m pipelines soundstorm --config {config_path} & python -m pipelines t2s --config {config_path}",
        f"python -m pipelines.soundstorm_eval --config {config_path}   # SoundStorm figures below",
        f"python -m pipelines.t2s_eval --config {config_path}          # T2S and front-end figures below",
        f"python -m pipelines.bundle --config {config_path} --name {name}",
        "```",
        "",
    ]


def model_card(out_dir: Path, config_path: Path, name: str, notes: str = "") -> str:
    """The bundle's model card, from the numbers the stages recorded."""
    stages = _read(out_dir / "stages.json")
    corpus = _read(out_dir / "corpus" / "stats.json")
    codec_eval = _read(out_dir / "codec" / "eval.json")
    codec_train = _read(out_dir / "codec" / "train_stats.json")
    storm_eval = _read(out_dir / "soundstorm" / "eval.json")
    # the exact commands of a run, when they differ from the defaults
    commands_file = out_dir / "commands.txt"
    parts = [
        f"# Model card: `{name}` bundle",
        "",
        "Everything here was made on a 2-core CPU machine from installed packages only, by:",
        "",
    ]
    if commands_file.exists():
        parts += ["```bash", commands_file.read_text().strip(), "```", ""]
    else:
        parts += _default_commands(config_path, name)
    if corpus:
        parts += [
            "## Data",
            "",
            f"{corpus['hours']} hours, {corpus['items']} items (single utterances and two-speaker dialogues of 10-30 s), "
            "16 kHz, voices of flite (built from real recordings), sox pitch-shifted variants of them, and espeak-ng.",
            "",
            _table(
                [
                    [
                        s,
                        corpus[s]["items"],
                        corpus[s]["dialogues"],
                        corpus[s]["hours"],
                        len(corpus[s]["speakers"]),
                    ]
                    for s in ("train", "valid", "test")
                ],
                ["split", "items", "dialogues", "hours", "speakers"],
            ),
            "",
            "Held-out speakers (test split only, never in train or valid): "
            + ", ".join(corpus["test"]["speakers"])
            + ".",
            "",
        ]
    if stages:
        rows = []
        for stage, st in stages.items():
            facts = {k: v for k, v in st.items() if not isinstance(v, (dict, list)) and k != "wall_s"}
            rows.append([stage, st.get("wall_s"), ", ".join(f"{k}={v}" for k, v in facts.items())])
        parts += [
            "## Stages (wall time; on 2 CPU cores unless a row says where else)",
            "",
            _table(rows, ["stage", "wall s", "sizes"]),
            "",
        ]
    if codec_train:
        parts += [
            "## Codec",
            "",
            "Frame-rate codec (`soundstorm_cli/models/frame_codec.py`): log-mel encoder, 8 x 1024 EMA residual VQ at 50 Hz "
            "(k-means init, dead-code restarts, quantizer dropout), ConvNeXt decoder, iSTFT head. "
            f"{codec_train['params_m']} M parameters; {codec_train['steps']} steps of batch {codec_train['batch_size']} x "
            f"{codec_train['segment_s']} s on {codec_train['train_audio_hours']} h of the train split; final mel L1 "
            f"{codec_train['final_mel_l1']}. Shipped weights fp16 (codebooks fp32).",
            "",
        ]
    if codec_eval:
        summary = codec_eval["summary"]
        rows = [
            [k, v.get("cer"), v.get("wer"), v.get("similarity", "-"), v.get("mel_distance", "-")]
            for k, v in summary.items()
        ]
        parts += [
            f"Held-out evaluation: {codec_eval['utterances']} single utterances of the {len(codec_eval['speakers'])} held-out "
            "speakers; Whisper tiny.en (faster-whisper, greedy) CER/WER against the text; resemblyzer similarity and "
            "log-mel L1 distance to the original.",
            "",
            _table(rows, ["audio", "CER", "WER", "similarity to original", "mel distance"]),
            "",
        ]
    parts += _soundstorm_section(stages.get("soundstorm", {}), storm_eval)
    parts += _t2s_section(stages.get("t2s", {}), _read(out_dir / "t2s" / "eval.json"))
    parts += _ar_section(stages.get("ar", {}), _read(out_dir / "ar_baseline" / "eval.json"))
    if notes:
        parts += ["## Notes", "", notes, ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--name", default="tiny")
    parser.add_argument("--components", nargs="*", help="ship only these (default: every trained one)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    components = assemble(config.out_dir, args.name, args.components)
    notes_file = ASSETS / args.name / "NOTES.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    (ASSETS / args.name / "MODEL_CARD.md").write_text(
        model_card(config.out_dir, args.config, args.name, notes)
    )
    card = f"{args.name}/MODEL_CARD.md" if (ASSETS / args.name / "MODEL_CARD.md").exists() else None
    update_registry(args.name, components, card, merge=bool(args.components))
    print(json.dumps({k: list(v["files"]) for k, v in components.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
