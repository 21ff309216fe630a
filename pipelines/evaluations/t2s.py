"""T2S on held-out speakers: `python -m pipelines.evaluations.t2s --config pipelines/configs/tiny.yaml`.

For held-out single utterances, with a 3 s prompt from another utterance of the
same held-out speaker, three sources of semantic tokens go through the same
SoundStorm and codec (the trained ones under out_dir):

- `ground truth`: the utterance's own tokens (the upper bound);
- `t2s`: the T5 text-to-semantic model, continuing the prompt (its transcript and tokens);
- `espeak`: espeak-ng's rendering of the text, tokenized (the `espeak` front end).

Reports Whisper tiny.en CER of each, and the T2S duration against the original.
Held-out dialogues: T2S in dialogue mode (`<spkN>` turns), the number of `turn`
tokens against the script's turns. Writes `t2s/eval.json`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.config import config_of, config_parser
from pipelines.stages.bundle import write_bundle_folder
from pipelines.stages.shards import TokenShards
from soundstorm.chain.prompts import REFERENCE_PROMPT_S
from soundstorm.chain.semantic import SAMPLE_RATE, SEMANTIC_RATE
from soundstorm.chain.synthesize import Segment, SynthesisOptions, Synthesizer
from soundstorm.measures.evaluate import Transcriber, cer


def build_bundle(out_dir: Path, folder: Path) -> Path:
    """A bundle folder of the trained components under out_dir (what pipelines.stages.bundle would ship)."""
    meta = json.loads((out_dir / "shards" / "meta.json").read_text())
    facts = {
        "sample_rate": SAMPLE_RATE,
        "codec_frame_rate": meta["codec_frame_rate"],
        "semantic_rate": SEMANTIC_RATE,
    }
    components = {
        "codec": out_dir / "codec",
        "semantic": out_dir / "semantic",
        "text": out_dir / "text_tokenizer",
        "soundstorm": out_dir / "soundstorm",
        "t2s": out_dir / "t2s",
    }
    for kind, src in components.items():  # only the shipped files, not training state
        keep = folder / "src" / kind
        keep.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if (
                f.is_file()
                and f.suffix in (".json", ".safetensors", ".model")
                and not f.name.startswith(("part-", "train"))
            ):
                (keep / f.name).write_bytes(f.read_bytes())
        components[kind] = keep
    return write_bundle_folder(folder / "bundle", "eval", facts, components)


def _turn_counts(synth, shards, dialogues: int, temperature: float) -> list[dict]:
    """The first `dialogues` test dialogues' turn counts, in the script and in what the T5 generates."""
    turns = []
    for i in [i for i, r in enumerate(shards.items) if r["kind"] == "dialogue"][:dialogues]:
        item = shards[i]
        result = synth.t2s.generate(
            [list(item["text_tokens"])], turns=[len(item["turns"])], seed=i, temperature=temperature
        )[0]
        turns.append({"id": item["id"], "script_turns": len(item["turns"]), "t2s_turns": len(result.turn_starts)})
    return turns


def _summary(rows: list[dict]) -> dict:
    """Each source's mean CER and seconds, and the T5's durations against the ground truth's."""
    summary = {
        k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k.startswith(("cer_", "seconds_"))
    }
    summary["duration_ratio_t2s"] = round(
        float(np.mean([r["seconds_t2s"] / r["seconds_ground_truth"] for r in rows])), 4
    )
    return summary


def main(argv=None) -> int:
    parser = config_parser(__doc__)
    parser.add_argument("--utterances", type=int, default=50)
    parser.add_argument("--dialogues", type=int, default=19)
    parser.add_argument(
        "--t2s-temperature",
        type=float,
        default=SynthesisOptions.t2s_temperature,
        help="the T5's sampling temperature",
    )
    parser.add_argument("--report", type=Path, help="write here instead of OUT_DIR/t2s/eval.json")
    args = parser.parse_args(argv)
    config = config_of(args)
    started = time.time()
    shards = TokenShards(config.out_dir / "shards", "test")
    rng = np.random.default_rng(config.seed)
    asr = Transcriber()
    with tempfile.TemporaryDirectory() as tmp:
        synth = Synthesizer.from_checkpoint(str(build_bundle(config.out_dir, Path(tmp))), device="cpu")
        options = SynthesisOptions(prompt_seconds=REFERENCE_PROMPT_S, t2s_temperature=args.t2s_temperature)
        singles = [i for i, r in enumerate(shards.items) if r["kind"] == "single"]
        rows = []
        for n, i in enumerate(
            sorted(rng.choice(singles, size=min(args.utterances, len(singles)), replace=False))
        ):
            item = shards[int(i)]
            others = [j for j in shards.singles_by_speaker[item["speakers"][0]] if j != i]
            if not others:
                continue
            other = shards[int(rng.choice(others))]
            wav = config.out_dir / "corpus" / "wavs" / f"{other['id']}.wav"
            voice = synth.prompt(
                wav, 10.0, text=other["text"]
            )  # the whole prompt utterance and its transcript
            segment = [Segment(0, "S1", item["text"], 0.0)]
            sources = {
                "ground_truth": [item["semantic_tokens"]],
                "t2s": synth.front_end("t2s").tokens(segment, {"S1": voice}, n, options),
                "espeak": synth.front_end("espeak").tokens(segment),
            }
            short = synth.prompt(wav, REFERENCE_PROMPT_S)  # SoundStorm's prompt: its first 3 s
            row = {"id": item["id"], "text": item["text"], "original_s": item["duration_s"]}
            for name, tokens in sources.items():
                codes, semantic, _, _ = synth.acoustic(
                    segment, tokens, {"S1": short}, ["S1"], n, options, lambda *_: None
                )
                voice = synth.voice_track(segment, [(0, len(semantic))], len(semantic), {"S1": short})
                audio = synth.decode_codes(codes, semantic, voice)
                row[f"cer_{name}"] = round(cer(item["text"], asr(audio)), 4)
                row[f"seconds_{name}"] = round(len(tokens[0]) / SEMANTIC_RATE, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
        turns = _turn_counts(synth, shards, args.dialogues, args.t2s_temperature)
    report = {
        "utterances": len(rows),
        "summary": _summary(rows),
        "dialogues": len(turns),
        "dialogues_turns_match": round(
            float(np.mean([t["script_turns"] == t["t2s_turns"] for t in turns])), 4
        ),
        "t2s_temperature": args.t2s_temperature,
        "rows": rows,
        "dialogue_rows": turns,
        "wall_s": round(time.time() - started, 1),
    }
    out = args.report or config.out_dir / "t2s" / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("rows", "dialogue_rows")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
