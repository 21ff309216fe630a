"""Teach the feature codec's decoder to render SoundStorm's level-1 distribution, not only the true codes.

    python -m pipelines.stages.feature_tune --config C [--out-dir D] [--items 600] [--steps 1500]

The feature codec's decoder (`codec.decoder_levels: 1`) is trained on the vector of the true level-1 code;
at inference it reads the expected vector under SoundStorm's first pass (posterior decoding), a blur of
many codes it never saw. As `decoder_tune --soft` did for the frame codec, this stage takes `--items`
single utterances of the training split, gives each a 3 s prompt of another utterance of the same speaker,
stores SoundStorm's first-pass expected level-1 vector given that prompt and the true semantic tokens, and
fine-tunes the codec's decoder (from its weights, its normalisation kept) to render the utterance's FARGAN
features from it (and, for a decoder that reads a voice, `codec.voice`, from the prompt's voice vector); `--true-share` of the crops still read the true level 1, so resynthesis keeps working.
A codec whose decoder was trained on the tokens of voice-perturbed copies (`codec.perturb_voice`) is tuned on
such tokens too (`perturb_tokens`). `--dialogue-share` of the items are read beside another speaker's prompt, as a dialogue's turns are (measured
level on 2026-12-07: turns' own-voice margin +0.005, standard error 0.004; docs/history/2026-12-07.md).
Reads `D/codec`, `D/soundstorm`, `D/shards` and the corpus's audio; writes `D/codec_tuned`, a codec folder
(`load_codec`) that can take the codec's place in a data set or a bundle.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import soundfile as sf
import torch

from pipelines.stages.feature_codec import CROP, fit_decoder

PROMPT_S = 3.0


def posteriors(
    model, codec, shards, wavs: dict[str, str], items: int, seed: int, dialogue_share: float = 0.0
) -> list[dict]:
    """Per training single: SoundStorm's expected level-1 vector [T, D], the true level 1 [T], the codec-rate
    semantic tokens [T] and the utterance's FARGAN features [2T, 20] (its audio: `wavs`, id -> path).

    For `dialogue_share` of them SoundStorm reads the prompts as a dialogue gives them: the speaker's and
    another speaker's, in a random order and with random labels, the target on its speaker's label."""
    from soundstorm.chain.decoding import PromptTokens, first_level_posterior
    from soundstorm.chain.semantic import semantic_to_codec
    from soundstorm.vocoder import fargan

    rng = np.random.default_rng(seed)
    ratio, levels = model.config.semantic_ratio, model.config.levels
    frames = int(PROMPT_S * codec.frame_rate)
    singles = [i for i, r in enumerate(shards.items) if r["kind"] == "single"]
    by_speaker = shards.singles_by_speaker
    rows = []
    for i in sorted(rng.choice(singles, size=min(items, len(singles)), replace=False)):
        item = shards[int(i)]
        speaker = item["speakers"][0]
        others = [j for j in by_speaker[speaker] if j != int(i)]
        if not others:
            continue
        source = shards[int(rng.choice(others))]
        codes = torch.from_numpy(item["codes"].astype(np.int64))
        T = codes.shape[1]
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"].astype(np.int64)), ratio, T)
        src = torch.from_numpy(source["codes"].astype(np.int64))
        src_sem = semantic_to_codec(
            torch.from_numpy(source["semantic_tokens"].astype(np.int64)), ratio, src.shape[1]
        )
        label, stranger = 1, None
        if dialogue_share > 0 and rng.random() < dialogue_share and len(by_speaker) > 1:
            stranger = shards[int(rng.choice([j for s, js in by_speaker.items() if s != speaker for j in js]))]
            label = int(rng.integers(1, 3))
        prompt = PromptTokens(src[:levels, :frames], src_sem[:frames], label)
        prompts = [prompt]
        if stranger is not None:
            s_codes = torch.from_numpy(stranger["codes"].astype(np.int64))
            s_sem = semantic_to_codec(
                torch.from_numpy(stranger["semantic_tokens"].astype(np.int64)), ratio, s_codes.shape[1]
            )
            other = PromptTokens(s_codes[:levels, :frames], s_sem[:frames], 3 - label)
            prompts = [prompt, other] if rng.random() < 0.5 else [other, prompt]
        with torch.inference_mode():
            probs, _ = first_level_posterior(model, semantic, torch.full_like(semantic, label), prompts)
            expected = codec.model.expected(probs.float()[None])  # [T, D]
            voice = codec.model.voice_vector(prompt.codes[None])[0] if codec.reads_voice else None
        audio, _ = sf.read(wavs[item["id"]], dtype="float32")
        features = fargan.analyze(audio)
        features = np.concatenate([features, fargan.silence_features(max(0, 2 * T - len(features)))])[: 2 * T]
        rows.append(
            {
                "expected": expected.float(),
                "level1": codes[0],
                "codec_semantic": semantic,
                "voice": voice,
                "features": torch.from_numpy(features.astype(np.float32)),
            }
        )
    return rows


def perturb_tokens(rows: list[dict], tokenizer, ratio: int, seed: int) -> None:
    """A codec trained with `codec.perturb_voice`: each row's decoder tokens (`codec_semantic`) become those of a
    voice-perturbed copy of its utterance (`perturbed_tokens` of its FARGAN features), as the codec stage's
    were; SoundStorm's posterior, already made from the true tokens, is kept."""
    from pipelines.data.perturbed_voices import perturbed_tokens
    from soundstorm.chain.semantic import semantic_to_codec
    from soundstorm.vocoder.fargan import FRAME

    features = [r["features"].numpy() for r in rows]
    for row, tokens in zip(rows, perturbed_tokens(tokenizer, features, [len(f) * FRAME for f in features], seed),
                           strict=True):
        row["codec_semantic"] = semantic_to_codec(torch.from_numpy(tokens.astype(np.int64)), ratio, len(row["level1"]))


def tune(
    codec_model,
    rows: list[dict],
    steps: int,
    true_share: float,
    seed: int,
    lr: float = 3e-4,
    variance_weight: float = 0.0,
) -> list[float]:
    """Fine-tune `codec_model.decoder` on `rows` (`fit_decoder`: the codec stage's loss and loop) at `lr` with
    100 warm-up steps: a crop reads SoundStorm's expected level-1 vector, or for `true_share` of them the true
    level 1's, and the prompt's voice where the decoder reads one; `variance_weight` as the codec stage's
    (`experimental.feature_variance_weight`). Returns the mean loss every 100 steps."""

    def crop(rng):
        r = rows[int(rng.integers(len(rows)))]
        T = len(r["level1"])
        lo, n = int(rng.integers(max(1, T - CROP))), min(CROP, T)
        if rng.random() < true_share:
            latent = codec_model.embed(r["level1"][None, lo : lo + n])
        else:
            latent = r["expected"][lo : lo + n]
        return latent, r["codec_semantic"][lo : lo + n], r["features"][2 * lo : 2 * (lo + n)], r["voice"]

    return fit_decoder(codec_model.decoder, crop, steps, seed, lr, 100, 100, variance_weight)


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import save_file

    from pipelines.config import config_of, config_parser
    from pipelines.data.manifest import read_manifest
    from pipelines.stages.shards import TokenShards
    from soundstorm.chain.codec import load_codec
    from soundstorm.models.soundstorm import load_soundstorm

    parser = config_parser(__doc__)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--true-share", type=float, default=0.5)  # 0.25 measured no better (history, 2026-12-06)
    parser.add_argument("--dialogue-share", type=float, default=0.0)  # 0.5 measured level (history, 2026-12-07)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    config = config_of(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(config.seed)
    out = config.out_dir
    codec = load_codec(out / "codec")
    if not getattr(codec, "renders_posterior", False) or getattr(codec.model.config, "decoder_levels", 0) != 1:
        raise SystemExit(
            "error: feature_tune needs a feature codec whose decoder reads level 1 alone "
            "(codec.kind: feature, codec.semantic: true, codec.decoder_levels: 1)"
        )
    started = time.time()
    model = load_soundstorm(out / "soundstorm")
    wavs = {row["id"]: row["path"] for row in read_manifest(out, "train")}
    shards = TokenShards(out / "shards", "train")
    rows = posteriors(model, codec, shards, wavs, args.items, config.seed, args.dialogue_share)
    # a decoder taught on voice-perturbed copies' tokens (codec.perturb_voice) is tuned on them too
    trained = out / "codec" / "train_stats.json"
    perturbed = trained.exists() and bool(json.loads(trained.read_text()).get("settings", {}).get("perturb_voice"))
    if perturbed:
        from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder

        tokenizer = SemanticTokenizer.load(out / "semantic" / "semantic.safetensors", WhisperEncoder(threads=2))
        perturb_tokens(rows, tokenizer, model.config.semantic_ratio, config.seed)
    generated_s = round(time.time() - started, 1)
    weight = config.experimental.feature_variance_weight
    losses = tune(codec.model, rows, args.steps, args.true_share, config.seed, variance_weight=weight)
    target = out / "codec_tuned"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "codec" / "config.json", target / "config.json")
    state = {k: v.contiguous() for k, v in codec.model.state_dict().items()}
    save_file(state, str(target / "model.safetensors"))
    stats = {
        "items": len(rows),
        "steps": args.steps,
        "true_share": args.true_share,
        "dialogue_share": args.dialogue_share,
        "perturb_voice": perturbed,
        "variance_weight": weight,
        "loss": losses,
        "generate_s": generated_s,
        "wall_s": round(time.time() - started, 1),
    }
    (target / "train_stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps({k: v for k, v in stats.items() if k != "loss"} | {"final_loss": losses[-1]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
