"""SoundStorm on held-out speakers: `python -m pipelines.soundstorm_eval --config ... [--bundle DIR]`.

1. Single utterances of the test split: ground-truth semantic tokens, a 3 s
   prompt from another utterance of the same held-out speaker. Whisper tiny.en
   CER of SoundStorm's audio vs of the codec's own resynthesis; resemblyzer
   similarity to the prompt of both.
2. Held-out two-speaker dialogues rendered in one pass with one 3 s prompt per
   speaker: the share of turns closer in voice to their own speaker's prompt, and
   the same share for the real turns (codec resynthesis): the test's ceiling.
Writes `soundstorm/eval.json` under the data set's out_dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.config import load_config
from pipelines.shards import TokenShards
from pipelines.soundstorm_train import speaker_track
from soundstorm_cli.codec import load_codec
from soundstorm_cli.decoding import DecodingOptions, decode, decode_long
from soundstorm_cli.evaluate import Transcriber, VoiceSimilarity, cer
from soundstorm_cli.models.soundstorm import load_soundstorm
from soundstorm_cli.semantic import semantic_to_codec

PROMPT_S = 3.0
ITERATIONS = (16,) + (1,) * 31  # the paper's schedule


def _prompt_for(shards: TokenShards, speaker: int, exclude: str, rng, frames: int, ratio: int, levels: int):
    choices = [i for i in shards.singles_by_speaker.get(speaker, []) if shards.items[i]["id"] != exclude]
    if not choices:
        return None
    item = shards[int(rng.choice(choices))]
    codes = torch.from_numpy(item["codes"][:levels, :frames])
    semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), ratio, item["codes"].shape[1])[
        :frames
    ]
    return codes, semantic


def _decode_prompt(codec, prompt, ratio: int):
    """A prompt's audio from its codes (and, for a codec that needs them, its codec-rate semantic tokens)."""
    codes, semantic = prompt
    return codec.decode(codes, semantic=semantic[::ratio] if codec.needs_semantic else None).numpy()


def generate(model, prompts, target_codes_len, target_semantic, target_speakers, seed, options=None):
    """One pass: [prompt 1, prompt 2, ..., target] -> generated codes of the target part.

    `options`: DecodingOptions whose seed is replaced by `seed` (default: the paper's schedule)."""
    options = dataclasses.replace(options or DecodingOptions(iterations=ITERATIONS), seed=seed)
    options = dataclasses.replace(options, iterations=options.iterations[: model.config.levels])
    codes = torch.cat([p[0] for p in prompts], dim=1)
    P = codes.shape[1]
    semantic = torch.cat([*[p[1] for p in prompts], target_semantic])[None]
    speakers = torch.cat(
        [
            *[torch.full((p[0].shape[1],), label, dtype=torch.long) for label, p in enumerate(prompts, 1)],
            target_speakers,
        ]
    )[None]
    T = P + target_codes_len
    if T > model.config.window:  # longer than training: window by window, as `soundstorm dialogue` does
        result = decode_long(
            model,
            semantic[0, P:],
            speakers[0, P:],
            codes,
            semantic[0, :P],
            speakers[0, :P],
            model.config.window,
            model.config.window // 10,
            options,
        )
        return result.codes
    prompt_codes = torch.zeros(1, model.config.levels, T, dtype=torch.long)
    prompt_codes[0, :, :P] = codes
    result = decode(
        model,
        semantic,
        speakers,
        torch.tensor([T]),
        prompt_codes,
        torch.tensor([P]),
        options,
    )
    return result.codes[0, :, P:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--out-dir", type=Path, help="override the config's out_dir")
    parser.add_argument("--utterances", type=int, default=30)
    parser.add_argument("--dialogues", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=1.0, help="decoding temperature (annealed)")
    parser.add_argument("--level1-iterations", type=int, default=16, help="passes on level 1")
    parser.add_argument(
        "--iterations",
        help="passes per level, comma-separated, e.g. 16,4,4,4 (overrides --level1-iterations)",
    )
    parser.add_argument("--top-k", type=int, help="sample among the k likeliest codes")
    parser.add_argument("--top-p", type=float, help="sample within this probability mass")
    parser.add_argument("--noise", type=float, default=1.0, help="confidence noise scale")
    parser.add_argument("--report", type=Path, help="write here instead of soundstorm/eval.json")
    args = parser.parse_args(argv)
    iterations = (args.level1_iterations,) + ITERATIONS[1:]
    if args.iterations:
        given = tuple(int(n) for n in args.iterations.split(","))
        iterations = given + ITERATIONS[len(given) :]
    options = DecodingOptions(
        iterations=iterations,
        temperature=args.temperature,
        confidence_noise=args.noise,
        top_k=args.top_k,
        top_p=args.top_p,
    )
    config = load_config(args.config, {"out_dir": str(args.out_dir)} if args.out_dir else None)
    torch.set_num_threads(2)
    out = config.out_dir / "soundstorm"
    model = load_soundstorm(out)
    codec = load_codec(config.out_dir / "codec")
    asr, sim = Transcriber(), VoiceSimilarity()
    shards = TokenShards(config.out_dir / "shards", "test")
    rng = np.random.default_rng(config.seed)
    # 3 s prompts (a quarter of the window at most: a toy model's window is short)
    frames, ratio = (
        min(int(PROMPT_S * codec.frame_rate), model.config.window // 4),
        model.config.semantic_ratio,
    )
    levels = model.config.levels
    started = time.time()
    singles = [i for i, r in enumerate(shards.items) if r["kind"] == "single"]
    rows = []
    for n, i in enumerate(
        sorted(rng.choice(singles, size=min(args.utterances, len(singles)), replace=False))
    ):
        item = shards[int(i)]
        full = torch.from_numpy(item["codes"])
        gt = full[:levels]
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), ratio, gt.shape[1])
        prompt = _prompt_for(shards, item["speakers"][0], item["id"], rng, frames, ratio, levels)
        if prompt is None:  # no other utterance of this speaker to prompt with
            continue
        codes = generate(
            model, [prompt], gt.shape[1], semantic, torch.ones(gt.shape[1], dtype=torch.long), n, options
        )
        tokens = item["semantic_tokens"] if codec.needs_semantic else None
        generated = codec.decode(codes, semantic=tokens).numpy()
        resynth = codec.decode(gt, semantic=tokens).numpy()
        prompt_audio = _decode_prompt(codec, prompt, ratio)
        rows.append(
            {
                "id": item["id"],
                "cer_soundstorm": cer(item["text"], asr(generated)),
                "cer_resynthesis": cer(item["text"], asr(resynth)),
                "cer_resynthesis_all_levels": cer(
                    item["text"], asr(codec.decode(full, semantic=tokens).numpy())
                ),
                "similarity_soundstorm": sim(generated, prompt_audio),
                "similarity_resynthesis": sim(resynth, prompt_audio),
            }
        )
    summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in (rows or [{}])[0] if k != "id"}
    dialogues = []
    # The longest held-out dialogues (up to 30 s), each rendered in one call.
    longest = sorted(
        (i for i, r in enumerate(shards.items) if r["kind"] == "dialogue"),
        key=lambda i: -shards.items[i]["duration_s"],
    )
    for n, i in enumerate(longest[: args.dialogues]):
        item = shards[i]
        gt = torch.from_numpy(item["codes"][:levels])
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), ratio, gt.shape[1])
        labels = {s: k + 1 for k, s in enumerate(item["speakers"])}
        track = speaker_track(item, gt.shape[1])
        prompts = [_prompt_for(shards, s, item["id"], rng, frames, ratio, levels) for s in item["speakers"]]
        if any(p is None for p in prompts):
            continue
        codes = generate(model, prompts, gt.shape[1], semantic, track, 1000 + n, options)
        tokens = item["semantic_tokens"] if codec.needs_semantic else None
        audio = codec.decode(codes, semantic=tokens).numpy()
        # the same test on the real turns: the metric's ceiling
        resynthesis = codec.decode(gt, semantic=tokens).numpy()
        prompt_audio = [_decode_prompt(codec, p, ratio) for p in prompts]
        hop = codec.hop_length
        for turn in item["turns"]:
            span = slice(turn["start"] * hop, turn["end"] * hop)
            scores = [sim(audio[span], p) for p in prompt_audio]
            real = [sim(resynthesis[span], p) for p in prompt_audio]
            own = labels[turn["speaker"]] - 1
            dialogues.append(
                {
                    "dialogue": item["id"],
                    "duration_s": item["duration_s"],
                    "own": scores[own],
                    "other": scores[1 - own],
                    "right": scores[own] > scores[1 - own],
                    "right_resynthesis": real[own] > real[1 - own],
                }
            )
    if not rows and not dialogues:
        raise SystemExit(
            "soundstorm_eval: nothing to evaluate: no held-out utterance or dialogue whose speakers have "
            "another utterance to prompt with"
        )
    report = {
        "single": summary,
        "single_rows": rows,
        "turns_right": round(float(np.mean([d["right"] for d in dialogues])), 4) if dialogues else None,
        "turns_right_resynthesis": (
            round(float(np.mean([d["right_resynthesis"] for d in dialogues])), 4) if dialogues else None
        ),
        "turns": len(dialogues),
        "dialogue_rows": dialogues,
        "wall_s": round(time.time() - started, 1),
        "decoding": dataclasses.asdict(options) | {"seed": "per item"},
    }
    (args.report or out / "eval.json").write_text(json.dumps(report, indent=1))
    print(
        json.dumps(
            {
                "single": summary,
                "turns_right": report["turns_right"],
                "turns_right_resynthesis": report["turns_right_resynthesis"],
                "turns": len(dialogues),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
