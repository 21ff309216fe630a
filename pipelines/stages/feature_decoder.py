"""Go/no-go for a vocoder codec: today's decoder inputs -> FARGAN's features, against today's decoder.

    python -m pipelines.stages.feature_decoder prepare --wavs DIR --out DIR [--bundle tiny] [--items N]
    python -m pipelines.stages.feature_decoder train --out DIR [--minutes M] [--threads 1]
    python -m pipelines.stages.feature_decoder compare --out DIR [--utterances 20] [--audio DIR]
    python -m pipelines.stages.feature_decoder ship --out DIR [--bundle tiny]

The bundle's decoder renders SoundStorm's level-1 posterior (its expected latent), the
semantic tokens and the prompt's voice vector as a waveform, and loses the words doing so.
This stage trains a small decoder that reads exactly the same three things and predicts
FARGAN's features instead (18 cepstral coefficients, the pitch period and its correlation,
100 frames a second), which the pretrained vocoder renders (`soundstorm.vocoder`).

`prepare` reads a corpus's rendered single utterances (`wavs/*.wav` with their `.json`
sidecars, as `python -m pipelines corpus` writes them), and writes per split what both
decoders read, made with the bundle's own components: semantic tokens (Whisper tiny.en +
k-means), codec codes, a 3 s prompt of another utterance of the same speaker, SoundStorm's
first-pass level-1 distribution given that prompt and the true semantic tokens (stored as its
expected latent), the prompt's voice vector, and the target's FARGAN features.

`train` fits the feature decoder for a wall-clock budget on the train split; `compare` renders
held-out test utterances both ways (same posterior, same prompt) and reports Whisper CER,
resemblyzer similarity to the prompt's audio and the seconds each decoder took, with the
originals and FARGAN's resynthesis of them as ceilings (`compare.json`). `ship` puts the trained
decoder into the bundle's codec (`FrameCodecConfig.renderer = "fargan"`), in place of its waveform
decoder, and records the new files' sha256 in `checkpoints.yaml`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soundstorm.models.feature_decoder import FeatureDecoder

PROMPT_FRAMES = 150  # 3 s at the codec's 50 Hz, as the evaluations' prompts
LEVELS = 4  # the levels SoundStorm renders
CROP = 200  # training crop, codec frames (4 s)
LOSS_WEIGHTS = torch.tensor([1.0] * 18 + [2.0, 1.0])  # pitch counts twice: a joint loss lets it drift
TRUE_CODE_SHARE = 0.25  # of training crops read from true codes, 1-4 levels (what `Codec.decode` renders)


def feature_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and target normalised features [B, 2T, 20], each number weighted by
    LOSS_WEIGHTS, averaged over the frames the target holds (NaN marks padding)."""
    mask = ~target.isnan()
    weighted = (pred - target.nan_to_num()).abs() * LOSS_WEIGHTS * mask
    return weighted.sum() / (mask.sum() / LOSS_WEIGHTS.numel() * LOSS_WEIGHTS.sum())


def variance_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far each crop's spread over time of every normalised feature [B, 2T, 20] falls from the target's
    (its deviation over the frames the target holds), |difference| weighted by LOSS_WEIGHTS: an L1 decoder
    renders what it cannot tell as its middle, flatter than speech (the learnt-token bundle's pitch moved half
    as much as its prompts', docs/history/2026-12-07.md); this asks for the target's movement back."""
    mask = ~target.isnan()
    frames = mask.sum(1).clamp_min(1)  # [B, 20]

    def deviation(x):
        mean = (x * mask).sum(1, keepdim=True) / frames[:, None]
        return ((((x - mean) ** 2) * mask).sum(1) / frames + 1e-6).sqrt()

    held = (mask.sum(1) > 1).float()  # a crop with a frame or none has no spread to match
    gap = (deviation(pred) - deviation(target.nan_to_num())).abs() * LOSS_WEIGHTS * held
    return gap.sum() / (held * LOSS_WEIGHTS).sum().clamp_min(1e-6)


def _items(wavs: Path, split: str, limit: int | None) -> list[dict]:
    rows = []
    for meta in sorted(wavs.glob("*.json")):
        row = json.loads(meta.read_text())
        wav = wavs / Path(row["path"]).name
        if row["kind"] == "single" and row["split"] == split and wav.exists():
            rows.append(row | {"wav": str(wav)})
    return rows[:limit] if limit else rows


def _components(bundle_name: str):
    from soundstorm.bundles.checkpoints import component_path, load_registry
    from soundstorm.chain.codec import load_codec
    from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder
    from soundstorm.models.soundstorm import load_soundstorm

    bundle = load_registry().get(bundle_name)
    codec = load_codec(component_path(bundle, "codec"))
    semantic = SemanticTokenizer.load(
        component_path(bundle, "semantic") / "semantic.safetensors", WhisperEncoder(threads=1)
    )
    return codec, semantic, load_soundstorm(component_path(bundle, "soundstorm"))


def prepare(wavs: Path, out: Path, bundle: str, split: str, limit: int | None, seed: int) -> dict:
    """Tokens, posterior latents, voice vectors and FARGAN features of one split (`{split}.safetensors`)."""
    from safetensors.torch import save_file

    from soundstorm.chain.decoding import PromptTokens, first_level_posterior
    from soundstorm.chain.semantic import semantic_to_codec
    from soundstorm.vocoder import fargan

    codec, tokenizer, model = _components(bundle)
    ratio = model.config.semantic_ratio
    rows = _items(wavs, split, limit)
    started, tensors, index = time.time(), {}, []
    audio = {r["id"]: sf.read(r["wav"], dtype="float32")[0] for r in rows}
    for start in range(0, len(rows), 8):
        batch = rows[start : start + 8]
        tokens = tokenizer.tokenize([audio[r["id"]] for r in batch])
        for row, sem in zip(batch, tokens, strict=True):
            codes = codec.encode(torch.from_numpy(audio[row["id"]]), semantic=torch.from_numpy(sem))[:LEVELS]
            frames = codes.shape[1]
            features = fargan.analyze(audio[row["id"]])
            features = np.concatenate([features, fargan.silence_features(max(0, 2 * frames - len(features)))])
            key = row["id"]
            tensors[f"{key}/codes"] = codes.to(torch.int16).contiguous()
            tensors[f"{key}/semantic"] = semantic_to_codec(torch.from_numpy(sem), ratio, frames).to(
                torch.int16
            )
            tensors[f"{key}/features"] = torch.from_numpy(features[: 2 * frames].astype(np.float32))
    wav_of = {r["id"]: r["wav"] for r in rows}
    by_speaker: dict[str, list[str]] = {}
    for row in rows:
        by_speaker.setdefault(row["speaker"], []).append(row["id"])
    codebook = codec.model.quantizer.levels[0].embed.float()
    for n, row in enumerate(rows):
        key, others = row["id"], [i for i in by_speaker[row["speaker"]] if i != row["id"]]
        if not others:
            continue
        rng = np.random.default_rng([seed, n])
        source = others[int(rng.integers(len(others)))]
        src_codes = tensors[f"{source}/codes"]
        lo = int(rng.integers(max(1, src_codes.shape[1] - PROMPT_FRAMES))) // ratio * ratio
        prompt = PromptTokens(
            src_codes[:, lo : lo + PROMPT_FRAMES].long(),
            tensors[f"{source}/semantic"][lo : lo + PROMPT_FRAMES].long(),
            1,
        )
        semantic = tensors[f"{key}/semantic"].long()
        with torch.inference_mode():
            probs, _ = first_level_posterior(model, semantic, torch.ones_like(semantic), [prompt])
        tensors[f"{key}/latent"] = (probs.float() @ codebook).to(torch.float16).contiguous()
        tensors[f"{key}/voice"] = codec.voice(prompt.codes).float().contiguous()
        index.append(
            {
                "id": key,
                "text": row["text"],
                "speaker": row["speaker"],
                "wav": row["wav"],
                "prompt": {
                    "id": source,
                    "wav": wav_of[source],
                    "start": lo,
                },
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in tensors.items() if k.split("/")[0] in {r["id"] for r in index}}
    save_file(keep, str(out / f"{split}.safetensors"))
    (out / f"{split}.json").write_text(json.dumps(index, indent=1))
    return {"split": split, "items": len(index), "wall_s": round(time.time() - started, 1)}


def _load(out: Path, split: str):
    from safetensors.torch import load_file

    tensors = load_file(str(out / f"{split}.safetensors"))
    index = json.loads((out / f"{split}.json").read_text())
    return tensors, index


def _new_decoder(codec) -> FeatureDecoder:
    c = codec.model.config
    return FeatureDecoder(c.codebook_dim, 2 * c.codebook_dim, c.semantic_vocab, c.feature_width, c.feature_depth)


def _batch(tensors: dict, keys: list[str], codec, model: FeatureDecoder, rng, batch: int) -> tuple:
    """`batch` random crops of CROP codec frames: the input latents (SoundStorm's expected level-1 latent,
    or for TRUE_CODE_SHARE of them the sum of the first 1-4 levels of the true codes), the semantic tokens,
    the voice vectors, and the normalised target features (NaN past a crop's end)."""
    lat, sem, voi, tgt = [], [], [], []
    for _ in range(batch):
        k = keys[int(rng.integers(len(keys)))]
        T = tensors[f"{k}/latent"].shape[0]
        lo = int(rng.integers(max(1, T - CROP)))
        n = min(CROP, T)

        def pad(x, length):
            return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 1) + (0, length - x.shape[0]))

        if rng.random() < TRUE_CODE_SHARE:  # the sum of the first 1-4 levels' codes
            codes = tensors[f"{k}/codes"][: int(rng.integers(1, LEVELS + 1)), lo : lo + n].long()
            latent = codec.model.quantizer.decode(codes)
        else:
            latent = tensors[f"{k}/latent"][lo : lo + n].float()
        lat.append(pad(latent, CROP))
        sem.append(pad(tensors[f"{k}/semantic"][lo : lo + n].long(), CROP))
        voi.append(tensors[f"{k}/voice"])
        f = (tensors[f"{k}/features"][2 * lo : 2 * (lo + n)] - model.mean) / model.std
        tgt.append(torch.cat([f, torch.full((2 * (CROP - n), 20), float("nan"))]))
    return lat, sem, voi, tgt


def train(out: Path, bundle: str, minutes: float, threads: int, seed: int, batch: int = 16) -> dict:
    """The feature decoder on the train split for `minutes` of wall clock: the expected level-1 latent of
    SoundStorm's posterior as input, or (`TRUE_CODE_SHARE` of the crops) the sum of the true codes' of
    the first 1-4 levels."""
    from safetensors.torch import save_file

    from soundstorm.base.runtime import native_bf16

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tensors, index = _load(out, "train")
    keys = [r["id"] for r in index]
    feats = torch.cat([tensors[f"{k}/features"] for k in keys])
    codec = _components(bundle)[0]
    model = _new_decoder(codec)
    model.mean.copy_(feats.mean(0))
    model.std.copy_(feats.std(0).clamp_min(1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    bf16 = native_bf16(torch.device("cpu"))
    started, step, losses = time.time(), 0, []
    budget = minutes * 60
    while time.time() - started < budget:
        lat, sem, voi, tgt = _batch(tensors, keys, codec, model, rng, batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(torch.stack(lat), torch.stack(sem), torch.stack(voi)).float()
        loss = feature_loss(pred, torch.stack(tgt))
        lr = 1e-3 * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * max(0.0, 1 - (time.time() - started) / budget))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 200 == 0:
            print(
                json.dumps(
                    {
                        "step": step,
                        "loss": round(float(np.mean(losses[-200:])), 4),
                        "minutes": round((time.time() - started) / 60, 1),
                    }
                ),
                flush=True,
            )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "feature_decoder.safetensors")
    )
    stats = {
        "steps": step,
        "loss": round(float(np.mean(losses[-200:])), 4),
        "minutes": minutes,
        "threads": threads,
        "items": len(keys),
    }
    (out / "train_stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def _espeak_inputs(row: dict, tensors: dict, codec, tokenizer, model) -> tuple:
    """The chain's situation (`--guide espeak`): semantic tokens of espeak-ng reading the text, SoundStorm's
    posterior from them and the held-out speaker's prompt: (expected level-1 latent, codec-rate tokens)."""
    from soundstorm.chain.decoding import PromptTokens, first_level_posterior
    from soundstorm.chain.frontends import espeak_render
    from soundstorm.chain.semantic import semantic_to_codec
    from soundstorm.chain.text import normalize

    guide = espeak_render(normalize(row["text"]))
    ratio = model.config.semantic_ratio
    frames = codec.num_frames(len(guide))
    semantic = semantic_to_codec(torch.from_numpy(tokenizer.tokenize([guide])[0]), ratio, frames).long()
    source, lo = row["prompt"]["id"], row["prompt"]["start"]
    prompt = PromptTokens(
        tensors[f"{source}/codes"][:, lo : lo + PROMPT_FRAMES].long(),
        tensors[f"{source}/semantic"][lo : lo + PROMPT_FRAMES].long(),
        1,
    )
    with torch.inference_mode():
        probs, _ = first_level_posterior(model, semantic, torch.ones_like(semantic), [prompt])
    return (probs.float() @ codec.model.quantizer.levels[0].embed.float()), semantic


def _is_natural(speaker: str) -> bool:
    """A corpus speaker made from Kokoro's voices (`pipelines/data/natural_voices.py`)."""
    return speaker.startswith("kokoro-")


def _scores(renders: dict, text: str, prompt, original, asr, sim) -> dict:
    """Each render's CER and similarity to the prompt; a codec's resynthesis also to its original."""
    from soundstorm.measures.evaluate import cer

    result = {}
    for name, wav in renders.items():
        result[f"cer_{name}"] = cer(text, asr(wav))
        result[f"similarity_{name}"] = sim(wav, prompt)
        if name.endswith("_codec"):  # a resynthesis is judged against its original
            result[f"similarity_to_original_{name}"] = sim(wav, original)
    return result


def _by_group(rows: list[dict]) -> dict:
    """The mean of each CER and similarity over the natural voices' rows and over the synthetic ones'."""
    summary = {}
    for group in ("natural", "synthetic"):
        kept = [r for r in rows if r["voices"] == group]
        if kept:
            summary[group] = {
                key: round(float(np.mean([r[key] for r in kept])), 4)
                for key in kept[0]
                if key.startswith(("cer_", "similarity_"))
            } | {"utterances": len(kept)}
    return summary


def compare(
    out: Path, bundle: str, utterances: int, audio_dir: Path | None, seed: int, guide: str = "true"
) -> dict:
    from safetensors.torch import load_file

    from soundstorm.measures.evaluate import Transcriber, VoiceSimilarity
    from soundstorm.vocoder import fargan

    torch.set_num_threads(1)
    codec, tokenizer, soundstorm = _components(bundle)
    model = _new_decoder(codec)
    model.load_state_dict(load_file(str(out / "feature_decoder.safetensors")))
    model.eval()
    tensors, index = _load(out, "test")
    rng = np.random.default_rng(seed)
    # `utterances` of the held-out natural identities, half as many of the held-out synthetic voices
    chosen = []
    for natural, count in ((True, utterances), (False, utterances // 2)):
        group = [i for i, r in enumerate(index) if _is_natural(r["speaker"]) == natural]
        chosen += sorted(rng.choice(group, size=min(count, len(group)), replace=False).tolist()) if group else []
    if guide == "espeak":  # prompts whose source utterance was kept (its codes are stored)
        chosen = [i for i in chosen if f"{index[int(i)]['prompt']['id']}/codes" in tensors]
    asr, sim = Transcriber(), VoiceSimilarity()
    rows = []
    for i in chosen:
        row = index[int(i)]
        k = row["id"]
        latent, semantic, voice = (
            tensors[f"{k}/latent"].float(),
            tensors[f"{k}/semantic"],
            tensors[f"{k}/voice"],
        )
        if guide == "espeak":
            latent, semantic = _espeak_inputs(row, tensors, codec, tokenizer, soundstorm)
        original = sf.read(row["wav"], dtype="float32")[0]
        lo = row["prompt"]["start"] * codec.hop_length
        prompt = sf.read(row["prompt"]["wav"], dtype="float32")[0][lo : lo + PROMPT_FRAMES * codec.hop_length]
        # the bundle's decoder reads the posterior through its expected latent (FrameCodec.decode_posterior)
        t0 = time.perf_counter()
        with torch.inference_mode():
            old = codec.model.decode_latents(latent[None], semantic[None].long(), voice[None])[0].numpy()
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():
            features = model.render(latent[None], semantic[None], voice[None])[0]
        new = fargan.synthesize(features.numpy())
        t_new = time.perf_counter() - t0
        resynth = fargan.synthesize(fargan.analyze(original))
        renders = {
            "bundle_decoder": old,
            "feature_decoder": new,
            "fargan_resynthesis": resynth,
            "original": original,
        }
        if guide == "true":  # the codec's resynthesis: the utterance's own codes and voice, both ways
            codes = tensors[f"{k}/codes"].long()
            own = codec.voice(codes)
            true_semantic = tensors[f"{k}/semantic"].long()
            with torch.inference_mode():
                renders["bundle_codec"] = codec.model.decode(codes[None], true_semantic[None], own[None])[0].numpy()
                features = model.render(codec.model.quantizer.decode(codes)[None], true_semantic[None], own[None])[0]
            renders["feature_codec"] = fargan.synthesize(features.numpy())
        result = {
            "id": k,
            "voices": "natural" if _is_natural(row["speaker"]) else "synthetic",
            "seconds_audio": round(len(original) / 16000, 2),
            "decode_s": {"bundle_decoder": round(t_old, 3), "feature_decoder": round(t_new, 3)},
        } | _scores(renders, row["text"], prompt, original, asr, sim)
        if audio_dir is not None:
            audio_dir.mkdir(parents=True, exist_ok=True)
            for name in ("bundle_decoder", "feature_decoder"):
                sf.write(audio_dir / f"{k}-{name}.wav", renders[name], 16000)
        print(json.dumps(result), flush=True)
        rows.append(result)
    summary = _by_group(rows)
    report = {"summary": summary, "rows": rows, "train": json.loads((out / "train_stats.json").read_text()), "guide": guide}
    (out / ("compare.json" if guide == "true" else f"compare-{guide}.json")).write_text(
        json.dumps(report, indent=1)
    )
    return summary


def ship(out: Path, bundle: str) -> dict:
    """Make the bundle's codec a FARGAN-rendered one: its encoder and codebooks as they are, the trained
    feature decoder in place of the waveform decoder (large weights in int8 rows), the registry updated."""
    from dataclasses import replace

    from safetensors.torch import load_file, save_file

    from pipelines.int8 import store_int8
    from pipelines.stages.bundle import update_registry
    from soundstorm.bundles.checkpoints import ASSETS, load_safetensors, sha256_file
    from soundstorm.chain.codec import FrameCodecWrapper
    from soundstorm.models.frame_codec import TRAINING_ONLY_BUFFERS, FrameCodec

    codec = _components(bundle)[0]
    if not isinstance(codec, FrameCodecWrapper):
        raise SystemExit("error: only the embedded frame codec takes a feature decoder")
    folder = ASSETS / bundle / "codec"
    config = replace(codec.model.config, renderer="fargan", soft_level1=True, voice_decoder=True)
    model = FrameCodec(config)
    kept = {k: v for k, v in load_safetensors(folder / "model.safetensors").items() if not k.startswith("features.")}
    trained = {f"features.{k}": v for k, v in load_file(str(out / "feature_decoder.safetensors")).items()}
    names = model.state_dict().keys()
    state = {k: v for k, v in (kept | trained).items() if k in names}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k.rsplit(".", 1)[-1] not in TRAINING_ONLY_BUFFERS]:
        raise SystemExit(f"error: the weights do not fit the new codec ({missing}, {unexpected})")
    weights = folder / "model.safetensors"
    # the encoder side as it was stored (float16), the feature decoder in float32 before its int8 rows
    stored = {
        k: (v.to(kept[k].dtype) if k in kept else v).contiguous()
        for k, v in model.state_dict().items()
        if k in state
    }
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    save_file(stored, str(weights), metadata={"format": "pt"})
    store_int8(weights)
    files = {f: sha256_file(folder / f) for f in ("config.json", "model.safetensors")}
    update_registry(bundle, {"codec": {"package": f"{bundle}/codec", "files": files}}, None, merge=True)
    return {"codec": str(folder), "bytes": weights.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.stages.feature_decoder", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=("prepare", "train", "compare", "ship"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wavs", type=Path)
    parser.add_argument("--bundle", default="tiny")
    parser.add_argument("--items", type=int)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--audio", type=Path)
    parser.add_argument(
        "--guide",
        choices=("true", "espeak"),
        default="true",
        help="compare: the semantic tokens of the original (soundstorm_eval --soft) or of espeak-ng reading "
        "the text with the held-out speaker's prompt (the chain's `say`)",
    )
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    if args.action == "prepare":
        torch.set_num_threads(args.threads)
        for split in ("test", "train"):
            print(
                json.dumps(prepare(args.wavs, args.out, args.bundle, split, args.items, args.seed)),
                flush=True,
            )
    elif args.action == "train":
        print(json.dumps(train(args.out, args.bundle, args.minutes, args.threads, args.seed)))
    elif args.action == "ship":
        print(json.dumps(ship(args.out, args.bundle)))
    else:
        print(json.dumps(compare(args.out, args.bundle, args.utterances, args.audio, args.seed, args.guide)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
