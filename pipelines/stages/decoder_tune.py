"""Teach the codec's decoder to render what SoundStorm generates, with the words from the semantic tokens.

    python -m pipelines.stages.decoder_tune generate --config C --out-dir D --soundstorm S [--shard k/n] [--items N]
        [--soft --base-codec B [--cross-voice]]
    python -m pipelines.stages.decoder_tune train --config C --out-dir D --base-codec B [--steps N] [--voice]
        [--voice-layers] [--cross-share F] [--adversarial] [--time-budget S]

SoundStorm's codes are not the codec's: on the training split its level 1 agrees
with the true codes on about one frame in ten, and the decoder, trained only on
true codes, turns them into babble. Vocoders met the same gap and closed it by
training on the generator's own output ("ground-truth-aligned" fine-tuning).
Here the decoder gets both the codes SoundStorm generated (from the true
semantic tokens and a 3 s prompt of the same speaker, as at inference) and the
semantic tokens themselves, and learns to render the real audio from them: the
words come from the tokens, the voice from the codes.

`generate` writes `generated/part-k.safetensors` (one [Q, T] int16 tensor per
training item); `train` starts from `--base-codec` (its encoder and codebooks
frozen, so the codes SoundStorm learnt stay valid), adds a zero-initialised
semantic embedding to the decoder (`FrameCodecConfig.semantic_encoder = False`),
and writes a codec folder, `decoder_tune/`, that a bundle can hold in place of its codec. A share of the
batches (`--true-share`) uses the true codes, so resynthesis keeps working.

With `--soft`, `generate` stores instead, per item, the expectation of level 1's
latent under SoundStorm's first pass (every code hidden: its distribution given
the semantic tokens and the prompt; [T, C] float16), and `train` teaches the
decoder to render that. Sampled codes are mostly wrong draws (about one in ten
right); their expectation keeps what SoundStorm knows and none of the draw's
noise, and rendering it takes one SoundStorm pass instead of 19. The codec it
writes says so (`soft_level1`), and the chain then renders that way
(`Codec.renders_posterior`). A base codec already tuned is tuned further.

With `--voice`, `train` also gives the decoder a voice vector (the mean and standard deviation of a
prompt's quantized latents over its frames, `FrameCodec.voice_vector`), drawn from a 3 s crop of
another utterance of the same speaker, through a zero-initialised projection: the voice of what it
renders can then come from the prompt as well as from the semantic tokens, which carry the voice of
whatever spoke them (the espeak guide, at inference). The chain gives each frame its speaker's prompt's
vector (`Synthesizer.voice_track`).

With `--cross-voice`, `generate --soft` also writes `generated_cross/`: each training utterance moved to
another voice by `sox pitch` (250-450 cents up or down; the samples stay aligned with the original's
semantic tokens), with a 3 s prompt of another utterance of its speaker moved the same way, and
SoundStorm's level-1 expectation from the *original's* semantic tokens and that prompt. That is the
chain's situation: tokens that carry one voice (the espeak guide's), a prompt of another. `train
--cross-share F` gives that share of the batches to these items, with the moved audio as the target and
the moved prompt's voice vector: the voice has to come from the prompt, not from the tokens.

`train --adversarial` adds the codec stage's discriminators and feature matching to the mel loss
(`pipelines/adversarial.py`, settings under `experimental.adversarial` in the config): the discriminators warm
up alone, then their terms ramp in, so the shipped decoder is refined rather than restarted; their state
is kept in `decoder_tune/adversary.pt` and resumed with the decoder's.

`train --voice-layers` (implies `--voice`) also projects the voice vector into every decoder block's
input, each projection zero-initialised (`FrameCodecConfig.voice_layers`), where `--voice` adds it only
before the first block.

The decoder it tunes is the waveform decoder the bundle rendered with before FARGAN: the shipped codec's
decoder-side weights (its voice layers, its reading of level 1's distribution) come from here; the
feature decoder (`pipelines.stages.feature_decoder`) now renders the chain.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from pipelines.adversarial import Adversary
from pipelines.config import config_of, config_parser
from pipelines.data.manifest import read_manifest
from pipelines.stages.codec import MelLoss, record, save_codec
from pipelines.stages.shards import TokenShards
from pipelines.training import StepBudget, cosine_lr, load_state, optimizer_step, save_state
from soundstorm.base.runtime import native_bf16
from soundstorm.chain.semantic import semantic_to_codec

CPU = torch.device("cpu")
PROMPT_FRAMES = 150  # 3 s at 50 Hz, as the evaluation prompts
TRAINABLE = (
    "decoder_in",
    "decoder",
    "decoder_norm",
    "head",
    "semantic_decoder",
    "voice_decoder",
    "voice_blocks",
)


def generate_part(
    shards: TokenShards, model, part: int, parts: int, items: int, seed: int, codebook=None
) -> dict:
    """SoundStorm's codes [Q, T] for every `parts`-th single training utterance from `part` on; with
    `codebook` (level 1's [K, C]), the expectation of its first pass's level-1 latent [T, C] instead."""
    from pipelines.evaluations.soundstorm import _prompt_for, generate
    from soundstorm.chain.decoding import PromptTokens, first_level_posterior

    ratio, levels = model.config.semantic_ratio, model.config.levels
    singles = [i for i, r in enumerate(shards.items) if r["kind"] == "single"][:items]
    bf16, out = native_bf16(CPU), {}
    for n in singles[part::parts]:
        item = shards[n]
        rng = np.random.default_rng([seed, n])
        prompt = _prompt_for(shards, item["speakers"][0], item["id"], rng, PROMPT_FRAMES, ratio, levels)
        if prompt is None:
            continue
        frames = item["codes"].shape[1]
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), ratio, frames)
        track = torch.ones(frames, dtype=torch.long)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if codebook is not None:
                probs, _ = first_level_posterior(model, semantic, track, [PromptTokens(*prompt, 1)])
                out[item["id"]] = (probs @ codebook).to(torch.float16).contiguous()
                continue
            codes = generate(model, [prompt], semantic, track, seed + n)
        out[item["id"]] = codes.to(torch.int16).contiguous()
    return out


CROSS_CENTS = (250, 450)  # how far (either way) `--cross-voice` moves a voice, in cents


def pitch_shift(audio: np.ndarray, sample_rate: int, cents: int) -> np.ndarray:
    """int16 samples moved by `cents` with `sox pitch` (same length, so still aligned with their tokens)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "a.wav", Path(tmp) / "b.wav"
        sf.write(src, audio, sample_rate, subtype="PCM_16")
        subprocess.run(
            ["sox", "-D", "-R", str(src), str(dst), "pitch", str(cents)], check=True, capture_output=True
        )
        moved = sf.read(dst, dtype="int16")[0]
    out = np.zeros(len(audio), dtype=np.int16)
    out[: min(len(audio), len(moved))] = moved[: len(audio)]
    return out


def cross_part(
    shards: TokenShards, model, codec, paths: dict, part: int, parts: int, items: int, seed: int
) -> dict:
    """For every `parts`-th single training utterance from `part` on, its `--cross-voice` item: the audio
    moved to another voice (`{id}/audio`, int16), a 3 s prompt of another utterance of its speaker moved
    the same way (`{id}/prompt`, codes [Q, P]) and SoundStorm's expected level-1 latent from the original's
    semantic tokens and that prompt (`{id}/latents`, [T, C] float16)."""
    from soundstorm.chain.decoding import PromptTokens, first_level_posterior

    ratio, levels = model.config.semantic_ratio, model.config.levels
    rate, hop = codec.sample_rate, codec.model.config.hop_length
    codebook = codec.model.quantizer.levels[0].embed.float()
    singles = [i for i, r in enumerate(shards.items) if r["kind"] == "single"][:items]
    bf16, out = native_bf16(CPU), {}
    for n in singles[part::parts]:
        item, row = shards[n], shards.items[n]
        others = [i for i in shards.singles_by_speaker.get(item["speakers"][0], []) if i != n]
        if not others or row["id"] not in paths:
            continue
        rng = np.random.default_rng([seed, n, 1])
        cents = int(rng.choice([-1, 1]) * rng.integers(CROSS_CENTS[0], CROSS_CENTS[1] + 1))
        m = int(rng.choice(others))
        other = shards[m]
        source = sf.read(paths[shards.items[m]["id"]], dtype="int16")[0]
        start = int(rng.integers(max(1, len(source) // hop - PROMPT_FRAMES))) // ratio * ratio
        crop = pitch_shift(source[start * hop : (start + PROMPT_FRAMES) * hop], rate, cents)
        with torch.inference_mode():  # the encoder reads no tokens: the decoder's are not needed here
            prompt = codec.model.encode(torch.from_numpy(crop.astype(np.float32) / 32768)[None], levels)[0]
        prompt_semantic = semantic_to_codec(
            torch.from_numpy(other["semantic_tokens"]), ratio, other["codes"].shape[1]
        )[start : start + prompt.shape[1]]
        frames = item["codes"].shape[1]
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), ratio, frames)
        track = torch.ones(frames, dtype=torch.long)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            probs, _ = first_level_posterior(
                model, semantic, track, [PromptTokens(prompt, prompt_semantic, 1)]
            )
        key = row["id"]
        out[f"{key}/latents"] = (probs.float() @ codebook).to(torch.float16).contiguous()
        out[f"{key}/prompt"] = prompt.to(torch.int16).contiguous()
        out[f"{key}/audio"] = torch.from_numpy(
            pitch_shift(sf.read(paths[key], dtype="int16")[0], rate, cents)
        )
    return out


def tuned_model(base: Path, semantic_vocab: int, voice: bool = False, voice_layers: bool = False):
    """The base codec with a zero-initialised semantic embedding on its decoder (and, with `voice`, a
    zero-initialised projection of the prompt's voice vector; with `voice_layers`, one into every decoder
    block too); only the decoder trains (never the encoder or the codebooks)."""
    from soundstorm.chain.codec import load_codec
    from soundstorm.models.frame_codec import FrameCodec

    base_model = load_codec(base).model  # safetensors only, its weights checked against its config
    config = base_model.config
    if config.semantic_vocab and (config.semantic_encoder or config.semantic_vocab != semantic_vocab):
        raise SystemExit(f"decoder_tune: {base} is conditioned on semantic tokens in its encoder")
    # A tuned decoder is tuned further; what it lacks starts at zero, so training starts from the base's audio.
    config = dataclasses.replace(
        config,
        semantic_vocab=semantic_vocab,
        semantic_encoder=False,
        voice_decoder=voice or voice_layers or config.voice_decoder,
        voice_layers=voice_layers or config.voice_layers,
    )
    model = FrameCodec(config)
    missing, _ = model.load_state_dict(base_model.state_dict(), strict=False)
    new = {"semantic_decoder.weight", "voice_decoder.weight", "voice_decoder.bias"}
    assert all(name in new or name.startswith("voice_blocks.") for name in missing), missing
    for name in missing:
        torch.nn.init.zeros_(model.get_parameter(name))
    for name, param in model.named_parameters():
        param.requires_grad = name.split(".")[0] in TRAINABLE
    return model


@dataclasses.dataclass
class Pairs:
    """Training items that have generated codes: audio, true and generated codes, codec-rate semantic."""

    audio: list
    true: list
    generated: list
    semantic: list
    ratio: int  # codec frames per semantic frame
    speakers: list = dataclasses.field(default_factory=list)  # each item's speaker
    by_speaker: dict = dataclasses.field(default_factory=dict)  # speaker -> the indices of their items

    soft: bool = False  # generated: expected level-1 latents [T, C] (float), not codes
    # `--cross-voice` items, by index into the lists above: (audio moved to another voice, its expected
    # level-1 latents [T, C], its prompt's codes [Q, P])
    cross: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: Path, shards: TokenShards, levels: int, soft: bool = False) -> Pairs:
        from safetensors.torch import load_file

        generated = {}
        for part in sorted((out_dir / "generated").glob("part-*.safetensors")):
            generated.update(load_file(str(part)))
        paths = {r["id"]: r["path"] for r in read_manifest(out_dir, "train")}
        pairs, ids = cls([], [], [], [], shards.ratio, soft=soft), []
        for n, row in enumerate(shards.items):
            if row["id"] not in generated or row["id"] not in paths:
                continue
            ids.append(row["id"])
            item = shards[n]
            frames = item["codes"].shape[1]
            pairs.audio.append(sf.read(paths[row["id"]], dtype="int16")[0])
            pairs.true.append(torch.from_numpy(item["codes"][:levels]))
            pairs.speakers.append(item["speakers"][0])
            pairs.by_speaker.setdefault(item["speakers"][0], []).append(len(pairs.true) - 1)
            pairs.generated.append(generated[row["id"]].float() if soft else generated[row["id"]].long())
            pairs.semantic.append(
                semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), shards.ratio, frames)
            )
        cross = {}
        for part in sorted((out_dir / "generated_cross").glob("part-*.safetensors")):
            cross.update(load_file(str(part)))
        for k, row_id in enumerate(ids):
            if f"{row_id}/audio" in cross:
                audio, latents = cross[f"{row_id}/audio"].numpy(), cross[f"{row_id}/latents"].float()
                pairs.cross[k] = (audio, latents, cross[f"{row_id}/prompt"].long())
        if not pairs.audio:
            raise SystemExit(
                f"decoder_tune: no generated codes under {out_dir / 'generated'}: run generate first"
            )
        return pairs

    def voice(self, rng: np.random.Generator, n: int, model):
        """A voice vector for item `n`, as a prompt would give it: a 3 s crop of the true codes of another
        utterance of its speaker (of itself where it has none)."""
        same = self.by_speaker[self.speakers[n]]
        other = [m for m in same if m != n] or [n]
        m = other[int(rng.integers(len(other)))]
        codes = self.true[m]
        start = int(rng.integers(max(1, codes.shape[1] - PROMPT_FRAMES)))
        with torch.no_grad():
            return model.voice_vector(codes[None, :, start : start + PROMPT_FRAMES].long())[0]

    def batch(
        self,
        rng: np.random.Generator,
        size: int,
        frames: int,
        hop: int,
        true_share: float,
        model,
        cross_share: float = 0.0,
    ):
        """(latents [B, frames, C], semantic [B, frames], audio [B, frames * hop], voice [B, 2C] or None,
        true [B] bool: the items that took the true codes);
        crops start on a semantic frame, so latents, tokens and samples stay aligned. Voice vectors come
        from another utterance of the speaker, for a decoder that reads one. A `cross_share` of the items
        are `--cross-voice` ones: their tokens are the original's, their audio and voice another's."""
        quantizer = model.quantizer
        codes, semantic, audio, voices, true = [], [], [], [], []
        crossed = sorted(self.cross)
        for _ in range(size):
            if crossed and rng.random() < cross_share:
                n = crossed[int(rng.integers(len(crossed)))]
                target, source, prompt = self.cross[n]
                if model.config.voice_decoder:
                    with torch.no_grad():
                        voices.append(model.voice_vector(prompt[None])[0])
            else:
                n = int(rng.integers(len(self.audio)))
                target = self.audio[n]
                if model.config.voice_decoder:
                    voices.append(self.voice(rng, n, model))
                source = self.true[n] if rng.random() < true_share else self.generated[n]
            true.append(source is self.true[n])
            total = self.true[n].shape[1]
            start = int(rng.integers(max(1, total - frames))) // self.ratio * self.ratio
            take = min(frames, total - start)
            if source.dtype == torch.long:  # codes [Q, T]: this crop's latents [take, C]
                with torch.no_grad():
                    piece = quantizer.decode(source[:, start : start + take])
            else:  # expected level-1 latents [T, C]
                piece = source[start : start + take]
            c = torch.zeros(frames, piece.shape[1])
            c[:take] = piece
            s = torch.zeros(frames, dtype=torch.long)
            s[:take] = self.semantic[n][start : start + take]
            a = np.zeros(frames * hop, dtype=np.float32)
            piece = target[start * hop : (start + frames) * hop].astype(np.float32) / 32768
            a[: len(piece)] = piece
            codes.append(c), semantic.append(s), audio.append(torch.from_numpy(a))
        voice = torch.stack(voices) if voices else None
        return torch.stack(codes), torch.stack(semantic), torch.stack(audio), voice, torch.tensor(true)


def _optimizer(model, lr: float):
    """AdamW over the decoder's trainable weights."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=lr, betas=(0.8, 0.99), weight_decay=0.01)


def train(
    config,
    base: Path,
    steps: int,
    true_share: float,
    lr: float,
    shards,
    voice: bool = False,
    cross_share: float = 0.0,
    voice_layers: bool = False,
    adversarial: bool = False,
    time_budget_s: float | None = None,
) -> dict:
    out_dir, seed = config.out_dir, config.seed
    model = tuned_model(base, config.semantic.clusters, voice=voice, voice_layers=voice_layers)
    meta = json.loads((out_dir / "generated" / "meta.json").read_text())
    levels = int(meta["levels"])
    pairs = Pairs.load(out_dir, shards, levels=levels, soft=bool(meta.get("soft")))
    mel_loss = MelLoss(model.config.sample_rate)
    optimizer = _optimizer(model, lr)
    folder = out_dir / "decoder_tune"
    step, log = load_state(folder / "train_state.pt", model, optimizer)
    adversary = None
    if adversarial:  # the codec stage's recipe and settings (config.experimental.adversarial)
        adversary = Adversary(config.experimental.adversarial)
        adversary.load(folder / "adversary.pt")
    hop, started, window = model.config.hop_length, time.time(), []
    bf16 = native_bf16(CPU)
    budget = StepBudget(steps, time_budget_s, warmup=100)  # an A/B at equal CPU time: the schedule fits it
    total = steps
    model.train()
    model.quantizer.eval()  # the codebooks never move here: nearest codes only, no EMA update or restart
    while step < total:
        rng = np.random.default_rng([seed, step])
        latents, semantic, wav, voices, _ = pairs.batch(rng, 16, 50, hop, true_share, model, cross_share)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            recon = model.decode_latents(latents, semantic, voices).float()
        mel = mel_loss(recon, wav)
        loss = mel + 0.1 * F.l1_loss(recon, wav)
        if adversary is not None:
            loss = loss + adversary.step(wav, recon, step)[0]
        optimizer_step(model, optimizer, loss, cosine_lr(step, total, lr, 100))
        step += 1
        total = budget.update(step, time.time())
        window.append(mel.item())
        if step % 100 == 0 or step == total:
            record(log, step, window, started)
        if step % 500 == 0 or step == total:
            save_state(folder / "train_state.pt", model, optimizer, step, log)
            if adversary is not None:
                adversary.save(folder / "adversary.pt")
    model.eval()
    if pairs.soft:  # the chain renders this decoder from SoundStorm's level-1 distribution
        model.config = dataclasses.replace(model.config, soft_level1=True)
    save_codec(model, folder)
    stats = {"steps": step, "time_budget_s": time_budget_s, "true_share": true_share, "lr": lr}
    stats |= {"items": len(pairs.audio), "soft": pairs.soft, "voice": model.config.voice_decoder}
    stats |= {"cross_share": cross_share, "voice_layers": model.config.voice_layers, "adversarial": adversarial}
    stats |= {"cross_items": len(pairs.cross)}
    stats |= {"base": str(base), "log": log}
    (folder / "train_stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def _generate(args, config, shards, parser) -> None:
    """`generate`: SoundStorm's codes (or, --soft, its expected level-1 latents) for a part of the items."""
    from safetensors.torch import save_file

    from soundstorm.models.soundstorm import load_soundstorm

    model = load_soundstorm(args.soundstorm)
    part, parts = (int(x) for x in args.shard.split("/"))
    folder = config.out_dir / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    codebook = None
    if args.cross_voice and not args.soft:
        parser.error("--cross-voice needs --soft")
    if args.soft:
        if args.base_codec is None:
            parser.error("generate --soft needs --base-codec (its level-1 codebook)")
        from soundstorm.chain.codec import load_codec

        base = load_codec(args.base_codec)
        codebook = base.model.quantizer.levels[0].embed.float()
    if args.cross_voice:
        paths = {r["id"]: r["path"] for r in read_manifest(config.out_dir, "train")}
        cross = cross_part(shards, model, base, paths, part, parts, args.items, config.seed)
        (config.out_dir / "generated_cross").mkdir(parents=True, exist_ok=True)
        save_file(cross, str(config.out_dir / "generated_cross" / f"part-{part}.safetensors"))
    codes = generate_part(shards, model, part, parts, args.items, config.seed, codebook)
    save_file(codes, str(folder / f"part-{part}.safetensors"))
    meta = {"levels": model.config.levels, "soundstorm": str(args.soundstorm), "soft": args.soft}
    (folder / "meta.json").write_text(json.dumps(meta))
    print(json.dumps({"part": part, "items": len(codes), "wall_s": round(time.time() - started, 1)}))


def _parser():
    """The command line of `generate` and `train`."""
    parser = config_parser(__doc__)
    parser.add_argument("command", choices=("generate", "train"))
    parser.add_argument("--soundstorm", type=Path, help="generate: the SoundStorm folder to generate with")
    parser.add_argument("--shard", default="0/1", help="generate: this part of the items, k/n")
    parser.add_argument("--items", type=int, default=100000, help="generate: at most this many utterances")
    parser.add_argument("--base-codec", type=Path, help="the codec whose decoder to tune")
    parser.add_argument(
        "--soft",
        action="store_true",
        help="generate: the expected level-1 latent of SoundStorm's first pass instead of its codes",
    )
    parser.add_argument(
        "--voice",
        action="store_true",
        help="train: the decoder also reads the prompt's voice vector (from another utterance of the speaker)",
    )
    parser.add_argument(
        "--cross-voice",
        action="store_true",
        help="generate --soft: also each utterance moved to another voice, with a prompt of that voice",
    )
    parser.add_argument(
        "--voice-layers",
        action="store_true",
        help="train: the voice vector also projected into every decoder block (implies --voice)",
    )
    parser.add_argument(
        "--cross-share", type=float, default=0.0, help="train: batches of --cross-voice items (moved voices)"
    )
    parser.add_argument(
        "--adversarial",
        action="store_true",
        help="train: discriminators and feature matching beside the mel loss (config.experimental.adversarial)",
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--time-budget", type=float, help="train: seconds to fit the schedule to (an A/B at equal CPU time)"
    )
    parser.add_argument("--true-share", type=float, default=0.25, help="train: batches of true codes")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    config = config_of(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(config.seed)
    shards = TokenShards(config.out_dir / "shards", "train")
    if args.command == "generate":
        _generate(args, config, shards, parser)
        return 0
    if args.base_codec is None:
        parser.error("train needs --base-codec")
    stats = train(
        config,
        args.base_codec,
        args.steps,
        args.true_share,
        args.lr,
        shards,
        args.voice,
        args.cross_share,
        args.voice_layers,
        args.adversarial,
        args.time_budget,
    )
    print(json.dumps({k: v for k, v in stats.items() if k != "log"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
