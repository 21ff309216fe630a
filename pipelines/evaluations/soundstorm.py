"""SoundStorm on held-out speakers: `python -m pipelines.evaluations.soundstorm --config ... [--bundle DIR]`.

1. Single utterances of the test split: ground-truth semantic tokens, a 3 s
   prompt from another utterance of the same held-out speaker. Whisper tiny.en
   CER of SoundStorm's audio vs of the codec's own resynthesis; resemblyzer
   similarity to the prompt of both.
2. Held-out two-speaker dialogues rendered in one pass with one 3 s prompt per
   speaker: the share of turns closer in voice to their own speaker's prompt, and
   the same share for the real turns (codec resynthesis): the test's ceiling; and
   each turn's CER, of SoundStorm's audio and of the resynthesis.
With `--soft` (a decoder that renders SoundStorm's level-1 distribution), each
utterance also reports the decoder's ceiling, the CER of its rendering of the
true level 1 (a one-hot distribution), and how far SoundStorm's distribution is
from it: the true codes' mean negative log-probability and top-1 agreement.
`--split valid|train` takes the training speakers' utterances instead.
Writes `soundstorm/eval.json` under the data set's out_dir.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.batching import speaker_track
from pipelines.config import config_of, config_parser
from pipelines.stages.shards import TokenShards
from soundstorm.chain.codec import load_codec
from soundstorm.chain.decoding import (
    DecodingOptions,
    PromptTokens,
    decode_prompted,
    first_level_posterior,
    overlap_frames,
)
from soundstorm.chain.prompts import REFERENCE_PROMPT_S
from soundstorm.chain.semantic import SEMANTIC_RATE, semantic_to_codec
from soundstorm.io.audio import write_audio
from soundstorm.measures.evaluate import Transcriber, VoiceSimilarity, cer
from soundstorm.models.soundstorm import load_soundstorm

ITERATIONS = DecodingOptions.paper(32).iterations  # the paper's schedule, for any number of levels


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


def generate(model, prompts, target_semantic, target_speakers, seed, options=None):
    """[prompt 1, prompt 2, ..., target] -> generated codes [Q, T] of the target, as `soundstorm` renders.

    `prompts`: (codes [Q, P], codec-rate semantic [P]) per speaker, labelled 1, 2, ... on the track;
    `options`: DecodingOptions whose seed is replaced by `seed` (default: the paper's schedule)."""
    levels = model.config.levels
    options = dataclasses.replace(options or DecodingOptions.paper(levels), seed=seed)
    options = dataclasses.replace(options, iterations=options.iterations[:levels])
    voices = [PromptTokens(codes, semantic, label) for label, (codes, semantic) in enumerate(prompts, 1)]
    overlap = overlap_frames(model.config.window, model.config.semantic_ratio * SEMANTIC_RATE)
    return decode_prompted(model, target_semantic, target_speakers, voices, options, overlap).codes


@dataclasses.dataclass
class Evaluation:
    """What both halves of the evaluation share."""

    model: object
    codec: object
    shards: TokenShards
    rng: np.random.Generator
    options: DecodingOptions
    frames: int  # prompt frames
    soft: bool = False
    asr: Transcriber = dataclasses.field(default_factory=Transcriber)
    sim: VoiceSimilarity = dataclasses.field(default_factory=VoiceSimilarity)
    audio_dir: Path | None = None  # write each single's render here (ID.wav), to listen or look at

    @property
    def ratio(self) -> int:
        return self.model.config.semantic_ratio

    def prompt(self, speaker: int, exclude: str):
        levels = self.model.config.levels
        return _prompt_for(self.shards, speaker, exclude, self.rng, self.frames, self.ratio, levels)

    def render(self, prompts, semantic, track, seed, item):
        """The target's audio: SoundStorm's codes decoded, or (`soft`) its first pass's level-1 distribution
        rendered by a decoder tuned on such distributions (`decoder_tune generate --soft`)."""
        voice = self.voice(prompts, track)
        if not self.soft:
            codes = generate(self.model, prompts, semantic, track, seed, self.options)
            return self.decode(codes, item, voice)
        return self.render_posterior(self.posterior(prompts, semantic, track), item, voice)

    def posterior(self, prompts, semantic, track):
        """SoundStorm's level-1 distribution [T, K] for the target (its first pass, every code hidden)."""
        voices = [PromptTokens(codes, sem, label) for label, (codes, sem) in enumerate(prompts, 1)]
        return first_level_posterior(self.model, semantic, track, voices)[0]

    def render_posterior(self, probs, item, voice):
        tokens = item["semantic_tokens"] if self.codec.needs_semantic else None
        return self.codec.decode_posterior(probs, semantic=tokens, voice=voice).numpy()

    def voice(self, prompts, track):
        """Each frame's voice vector [T, V], that of its speaker's prompt (None where the decoder reads none)."""
        if not self.codec.reads_voice:
            return None
        vectors = torch.stack([self.codec.voice(codes) for codes, _ in prompts])  # speaker n + 1 -> row n
        return vectors[track - 1]

    def decode(self, codes, item, voice=None):
        """Audio of codes [Q, T] (with the item's semantic tokens, for a codec that needs them); without a
        `voice`, a decoder that reads one takes the codes' own."""
        tokens = item["semantic_tokens"] if self.codec.needs_semantic else None
        return self.codec.decode(codes, semantic=tokens, voice=voice).numpy()


def _singles(ev: Evaluation, count: int) -> list[dict]:
    """Single utterances with a 3 s prompt of another utterance of the same speaker: CER, similarity."""
    singles = [i for i, r in enumerate(ev.shards.items) if r["kind"] == "single"]
    rows = []
    for n, i in enumerate(sorted(ev.rng.choice(singles, size=min(count, len(singles)), replace=False))):
        item = ev.shards[int(i)]
        full = torch.from_numpy(item["codes"])
        gt = full[: ev.model.config.levels]
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), ev.ratio, gt.shape[1])
        prompt = ev.prompt(item["speakers"][0], item["id"])
        if prompt is None:  # no other utterance of this speaker to prompt with
            continue
        track = torch.ones(gt.shape[1], dtype=torch.long)
        extra = {}
        if ev.soft:
            # the decoder's ceiling (the true level 1, as a one-hot distribution) and how far SoundStorm's
            # distribution is from it: the true code's negative log-probability and top-1 agreement
            probs = ev.posterior([prompt], semantic, track).float()
            voice = ev.voice([prompt], track)
            generated = ev.render_posterior(probs, item, voice)
            truth = F.one_hot(gt[0].long(), probs.shape[1]).float()
            extra = {
                "cer_true_level1": cer(item["text"], ev.asr(ev.render_posterior(truth, item, voice))),
                "level1_nll": float(-probs.gather(1, gt[0].long()[:, None]).clamp_min(1e-12).log().mean()),
                "level1_top1": float((probs.argmax(1) == gt[0]).float().mean()),
            }
        else:
            generated = ev.render([prompt], semantic, track, n, item)
        resynth = ev.decode(gt, item)
        if ev.audio_dir is not None:
            write_audio(ev.audio_dir / f"{item['id']}.wav", generated, ev.codec.sample_rate)
        prompt_audio = _decode_prompt(ev.codec, prompt, ev.ratio)
        rows.append(
            extra
            | {
                "id": item["id"],
                "cer_soundstorm": cer(item["text"], ev.asr(generated)),
                "cer_resynthesis": cer(item["text"], ev.asr(resynth)),
                "cer_resynthesis_all_levels": cer(item["text"], ev.asr(ev.decode(full, item))),
                "similarity_soundstorm": ev.sim(generated, prompt_audio),
                "similarity_resynthesis": ev.sim(resynth, prompt_audio),
            }
        )
    return rows


def _dialogues(ev: Evaluation, count: int) -> list[dict]:
    """The longest held-out dialogues (up to 30 s), each rendered in one call: is each turn nearer its own
    speaker's prompt? The same test on the real turns (resynthesised) is the metric's ceiling."""
    longest = sorted(
        (i for i, r in enumerate(ev.shards.items) if r["kind"] == "dialogue"),
        key=lambda i: -ev.shards.items[i]["duration_s"],
    )
    rows = []
    for n, i in enumerate(longest[:count]):
        item = ev.shards[i]
        gt = torch.from_numpy(item["codes"][: ev.model.config.levels])
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), ev.ratio, gt.shape[1])
        labels = {s: k + 1 for k, s in enumerate(item["speakers"])}
        prompts = [ev.prompt(s, item["id"]) for s in item["speakers"]]
        if any(p is None for p in prompts):
            continue
        track = speaker_track(item, gt.shape[1])
        audio = ev.render(prompts, semantic, track, 1000 + n, item)
        resynthesis = ev.decode(gt, item)
        prompt_audio = [_decode_prompt(ev.codec, p, ev.ratio) for p in prompts]
        hop = ev.codec.hop_length
        for turn in item["turns"]:
            span = slice(turn["start"] * hop, turn["end"] * hop)
            scores = [ev.sim(audio[span], p) for p in prompt_audio]
            real = [ev.sim(resynthesis[span], p) for p in prompt_audio]
            own = labels[turn["speaker"]] - 1
            rows.append(
                {
                    "dialogue": item["id"],
                    "duration_s": item["duration_s"],
                    "cer": cer(turn["text"], ev.asr(audio[span])),
                    "cer_resynthesis": cer(turn["text"], ev.asr(resynthesis[span])),
                    "own": scores[own],
                    "other": scores[1 - own],
                    "right": scores[own] > scores[1 - own],
                    "right_resynthesis": real[own] > real[1 - own],
                }
            )
    return rows


def _options(args) -> DecodingOptions:
    iterations = (args.level1_iterations,) + ITERATIONS[1:]
    if args.iterations:
        given = tuple(int(n) for n in args.iterations.split(","))
        iterations = given + ITERATIONS[len(given) :]
    return DecodingOptions(
        iterations=iterations,
        temperature=args.temperature,
        confidence_noise=args.noise,
        top_k=args.top_k,
        top_p=args.top_p,
    )


def _mean(rows: list[dict], key: str):
    return round(float(np.mean([r[key] for r in rows])), 4) if rows else None


def main(argv=None) -> int:
    parser = config_parser(__doc__)
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
    parser.add_argument("--audio", type=Path, help="also write each single utterance's render here (ID.wav)")
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "valid", "train"),
        help="whose utterances: test (held-out speakers), valid or train (the training speakers)",
    )
    parser.add_argument(
        "--soft",
        action="store_true",
        help="render SoundStorm's first-pass expected level-1 latent (a decoder tuned with --soft)",
    )
    args = parser.parse_args(argv)
    config = config_of(args)
    torch.set_num_threads(2)
    out = config.out_dir / "soundstorm"
    model, codec = load_soundstorm(out), load_codec(config.out_dir / "codec")
    # 3 s prompts (a quarter of the window at most: a toy model's window is short)
    frames = min(int(REFERENCE_PROMPT_S * codec.frame_rate), model.config.window // 4)
    shards = TokenShards(config.out_dir / "shards", args.split)
    ev = Evaluation(
        model, codec, shards, np.random.default_rng(config.seed), _options(args), frames, args.soft,
        audio_dir=args.audio,
    )
    if args.audio is not None:
        args.audio.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = _singles(ev, args.utterances)
    dialogues = _dialogues(ev, args.dialogues)
    if not rows and not dialogues:
        raise SystemExit(
            "soundstorm_eval: nothing to evaluate: no held-out utterance or dialogue whose speakers have "
            "another utterance to prompt with"
        )
    summary = {k: _mean(rows, k) for k in (rows or [{}])[0] if k != "id"}
    report = {
        "single": summary,
        "single_rows": rows,
        "turns_right": _mean(dialogues, "right"),
        "turns_right_resynthesis": _mean(dialogues, "right_resynthesis"),
        "turns": len(dialogues),
        "turn_cer": _mean(dialogues, "cer"),
        "turn_cer_resynthesis": _mean(dialogues, "cer_resynthesis"),
        "dialogue_rows": dialogues,
        "wall_s": round(time.time() - started, 1),
        "decoding": dataclasses.asdict(ev.options) | {"seed": "per item", "soft": args.soft},
        "split": args.split,
    }
    (args.report or out / "eval.json").write_text(json.dumps(report, indent=1))
    brief = ("single", "turns_right", "turns_right_resynthesis", "turns", "turn_cer", "turn_cer_resynthesis")
    print(json.dumps({k: report[k] for k in brief}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
