"""A bundle's model card (`MODEL_CARD.md`), written from what its stages recorded.

`stages.json` (wall times, sizes, final losses), each stage's `eval.json` and the commands that made the
bundle are gathered into one page (`python -m pipelines.stages.bundle` writes it beside the data, and into a new
bundle's folder).
"""

from __future__ import annotations

import json
from pathlib import Path


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _section(title: str, train: dict, intro: str, result: dict, details) -> list[str]:
    """A trained model's section: its title, how it was trained, and `details(result)` of its evaluation
    (nothing where the model was not trained here)."""
    if not train:
        return []
    return [f"## {title}", "", intro, ""] + (details(result) if result else [])


def _soundstorm_section(train: dict, result: dict) -> list[str]:
    intro = (
        f"{train.get('params_m')} M parameters, {train.get('steps')} steps, {round(train.get('wall_s', 0) / 60)} min of "
        f"training on {train.get('trained_on', 'this CPU')} (settings in the config's `soundstorm:` section); "
        "final valid loss "
        f"{train.get('valid_loss')}, masked-token accuracy per level (valid split, the paper's mask) "
        f"{train.get('valid_accuracy')}."
    )
    return _section("SoundStorm", train, intro, result, _soundstorm_details)


def _soundstorm_details(result: dict) -> list[str]:
    single = result["single"]
    return [
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


def _t2s_section(train: dict, result: dict) -> list[str]:
    intro = (
        f"{train.get('params_m')} M parameters, {train.get('steps')} steps, {round(train.get('wall_s', 0) / 60)} min on "
        f"{train.get('trained_on', 'this CPU')}; final training loss {train.get('final_loss')}"
        + (f", validation loss {train['valid_loss']}." if train.get("valid_loss") is not None else ".")
    )
    return _section("Text to semantic (T5)", train, intro, result, _t2s_details)


def _t2s_details(result: dict) -> list[str]:
    m = result["summary"]
    return [
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


def _ar_section(train: dict, result: dict) -> list[str]:
    intro = (
        f"Decoder-only Transformer of SoundStorm's width and depth over the flattened tokens (frame by frame, level "
        f"by level), {train.get('params_m')} M parameters, {train.get('steps')} steps, "
        f"{round((train.get('train_s') or train.get('wall_s', 0)) / 60)} min of training on this CPU (settings in the "
        f"config's `ar:` section); final valid loss {train.get('valid_loss')}, teacher-forced next-token accuracy "
        f"per level (valid split) {train.get('valid_accuracy')}."
    )
    return _section("AR baseline", train, intro, result, _ar_details)


def _ar_details(result: dict) -> list[str]:
    rows = [
        [system, m["cer"], m["wer"], m["similarity"], m["consistency"]]
        for system, m in result["summary"].items()
    ]
    return [
        f"`soundstorm eval` ({result['utterances']} held-out utterances, their first 3 s as the prompt, "
        "ground-truth semantic tokens; SoundStorm 16/1/1/1 passes, temperature 1 annealed to 0; the AR baseline "
        "sampling every token at temperature 1; the paper's Table 1):",
        "",
        _table(rows, ["system", "Whisper CER", "WER", "similarity to the prompt", "consistency"]),
        "",
    ]


def _default_commands(config_path, name: str) -> list[str]:
    return [
        "```bash",
        f"python -m pipelines all --config {config_path}        # corpus, tokenizers, codec, shards",
        f"python -m pipelines.evaluations.codec --config {config_path}   # codec figures below",
        f"python -m pipelines soundstorm --config {config_path} & python -m pipelines t2s --config {config_path}",
        f"python -m pipelines.evaluations.soundstorm --config {config_path}   # SoundStorm figures below",
        f"python -m pipelines.evaluations.t2s --config {config_path}          # T2S and front-end figures below",
        f"python -m pipelines.stages.bundle --config {config_path} --name {name}",
        "```",
        "",
    ]


def _data_section(corpus: dict) -> list[str]:
    if not corpus:
        return []
    rows = [
        [s, corpus[s]["items"], corpus[s]["dialogues"], corpus[s]["hours"], len(corpus[s]["speakers"])]
        for s in ("train", "valid", "test")
    ]
    return [
        "## Data",
        "",
        f"{corpus['hours']} hours, {corpus['items']} items (single utterances and two-speaker dialogues of 10-30 s), "
        "16 kHz, voices of flite (built from real recordings), sox pitch-shifted variants of them, and espeak-ng.",
        "",
        _table(rows, ["split", "items", "dialogues", "hours", "speakers"]),
        "",
        "Held-out speakers (test split only, never in train or valid): "
        + ", ".join(corpus["test"]["speakers"])
        + ".",
        "",
    ]


def _stages_section(stages: dict) -> list[str]:
    if not stages:
        return []
    rows = []
    for stage, st in stages.items():
        facts = {k: v for k, v in st.items() if not isinstance(v, (dict, list)) and k != "wall_s"}
        rows.append([stage, st.get("wall_s"), ", ".join(f"{k}={v}" for k, v in facts.items())])
    return [
        "## Stages (wall time; on 2 CPU cores unless a row says where else)",
        "",
        _table(rows, ["stage", "wall s", "sizes"]),
        "",
    ]


def _codec_section(codec_train: dict, codec_eval: dict) -> list[str]:
    parts = []
    if codec_train:
        parts += [
            "## Codec",
            "",
            "Frame-rate codec (`soundstorm/models/frame_codec.py`): log-mel encoder, 8 x 1024 EMA residual VQ at 50 Hz "
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
    return parts


def model_card(out_dir: Path, config_path: Path, name: str) -> str:
    """The bundle's model card, from the numbers the stages recorded."""
    stages = _read(out_dir / "stages.json")
    commands_file = (
        out_dir / "commands.txt"
    )  # the exact commands of a run, when they differ from the defaults
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
    parts += _data_section(_read(out_dir / "corpus" / "stats.json"))
    parts += _stages_section(stages)
    parts += _codec_section(
        _read(out_dir / "codec" / "train_stats.json"), _read(out_dir / "codec" / "eval.json")
    )
    parts += _soundstorm_section(stages.get("soundstorm", {}), _read(out_dir / "soundstorm" / "eval.json"))
    parts += _t2s_section(stages.get("t2s", {}), _read(out_dir / "t2s" / "eval.json"))
    parts += _ar_section(stages.get("ar", {}), _read(out_dir / "ar_baseline" / "eval.json"))
    return "\n".join(parts)
