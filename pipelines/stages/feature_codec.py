"""Stage 4 with `codec.kind: feature`: the FARGAN feature codec, residual k-means over the vocoder's features.

    python -m pipelines codec --config pipelines/configs/fargan.yaml
    python -m pipelines.evaluations.codec --config ... --natural-corpus CORPUS   # its resynthesis, held-out voices

Reads the training audio the frame codec would (`data.manifest.load_training_audio`), analyses it into
FARGAN's 10 ms features, stacks them in pairs (one 20 ms codec frame: 40 numbers), normalises each number by
the set's mean and deviation and weights the pitch code and correlation (`codec.pitch_weight`,
`codec.correlation_weight`: the quantiser's distance then cares for them as much as the ear does), then fits
`codec.model.levels` codebooks of `codec.model.codebook_size` vectors one after another, each by k-means
(`codec.kmeans_iterations` Lloyd iterations on `codec.kmeans_frames` frames drawn from the set, seeded) on
what the levels before left. Empty clusters are reseeded from random frames. Writes `codec/config.json`,
`codec/model.safetensors` (the codebooks and the normalisation: 1.3 MB at 8 x 1024) and
`codec/train_stats.json` (each level's residual RMS), a folder `load_codec` reads.

With `codec.semantic: true` it also trains the codec's decoder (`codec.steps` steps, `train_decoder`): from
the sum of the first `codec.decoder_levels` (4) levels' vectors and the semantic stage's tokens to the
features; decoding then reads the semantic tokens (`Codec.needs_semantic`), as the shipped frame codec does.
With `codec.decoder_levels: 1` the decoder reads level 1 alone, so it also renders SoundStorm's level-1
distribution (its expected vector) in one pass: posterior decoding, as the shipped codec. With `codec.voice:
true` it also reads a voice vector (`FeatureCodec.voice_vector`), in training that of a 3 s crop of another
utterance of the same speaker (`voice_sources`), at inference the prompt's (`codec.voice_stats`: what that vector
holds). With `codec.perturb_voice` it reads the tokens of a voice-perturbed copy of each clip
(`perturbed_semantic`) and still renders the clip itself. With `codec.init_from` (a feature
codec folder) nothing is fitted: its normalisation and codebooks are kept, so codes made with it stay valid
(a SoundStorm trained on them, say), and the decoder trains on this data from that codec's decoder
(`kept_codebooks`): the way to add a corpus, natural voices for instance, without making SoundStorm's codes
anew. `codec.decoder_levels: 0` trains the control: a decoder that reads no level, only the semantic tokens
(and the voice); a chain with it runs SoundStorm and renders the same audio whatever SoundStorm gives, so set
against the same recipe with 1 it says what SoundStorm's codes add.

Fitted on 2.8 h (1.6 h natural) in 5 minutes of one core; its resynthesis of 50 held-out natural utterances
(2026-12-06, 2-core Xeon, docs/history/2026-12-06.md): 8 levels CER 0.069 (originals 0.045), similarity to
the original 0.936; 4 levels 0.139, 0.893; with the decoder (2000 steps, 28 minutes of one core) 4 levels
0.082, 0.939 and 8 levels 0.065, 0.952.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.config import DataConfig
from soundstorm.models.feature_codec import STACK, FeatureCodec, FeatureCodecConfig, nearest
from soundstorm.vocoder.fargan import CORRELATION, NUM_FEATURES, PITCH


def feature_weights(pitch: float, correlation: float) -> torch.Tensor:
    """The per-number weights of a stacked codec frame [STACK * 20]."""
    weights = torch.ones(STACK, NUM_FEATURES)
    weights[:, PITCH], weights[:, CORRELATION] = pitch, correlation
    return weights.reshape(-1)


def kmeans(x: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """k centroids [k, D] of `x` [N, D] by Lloyd's iterations from k distinct random frames; a cluster left
    empty takes a random frame."""
    centroids = x[torch.randperm(len(x), generator=generator)[:k]].clone()
    for _ in range(iterations):
        index = nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, index, x)
        counts = torch.bincount(index, minlength=k).float()
        spare = x[torch.randint(len(x), (k,), generator=generator)]
        centroids = torch.where((counts == 0)[:, None], spare, sums / counts.clamp_min(1)[:, None])
    return centroids


def fit(frames: torch.Tensor, config: FeatureCodecConfig, weights: torch.Tensor, iterations: int,
        sample: int, seed: int) -> tuple[FeatureCodec, list[float]]:
    """A FeatureCodec fitted on stacked frames [N, D] (FARGAN units): its normalisation, weights and
    codebooks; and the residual RMS after each level (in the weighted space)."""
    if len(frames) < config.codebook_size:
        raise SystemExit(
            f"error: {len(frames)} codec frames of training audio, fewer than the {config.codebook_size} "
            "vectors of a codebook"
        )
    generator = torch.Generator().manual_seed(seed)
    model = FeatureCodec(config)
    model.mean.copy_(frames.mean(0))
    model.std.copy_(frames.std(0).clamp_min(1e-3))
    model.weights.copy_(weights)
    chosen = torch.randperm(len(frames), generator=generator)[:sample]
    residual = (frames[chosen] - model.mean) / model.std * model.weights
    rms = []
    for level in range(config.levels):
        book = kmeans(residual, config.codebook_size, iterations, generator)
        residual = residual - book[nearest(residual, book)]
        model.codebooks[level].copy_(book)
        rms.append(round(residual.pow(2).mean().sqrt().item(), 4))
    return model, rms


def kept_codebooks(folder: Path, config: FeatureCodecConfig) -> FeatureCodec:
    """`codec.init_from` for the feature codec: a FeatureCodec of `config` holding the normalisation, weights
    and codebooks of the feature codec in `folder`, and its decoder's weights where the two decoders have the
    same shapes (else the decoder starts fresh)."""
    from soundstorm.base.errors import SoundstormError
    from soundstorm.chain.codec import load_codec

    try:
        source = load_codec(folder).model
    except SoundstormError as exc:
        raise SystemExit(f"error: codec.init_from: cannot load a codec from {folder}: {exc}") from exc
    if not isinstance(source, FeatureCodec):
        raise SystemExit(f"error: codec.init_from: {folder} is not a feature codec (codec.kind: feature)")
    theirs = source.config
    if (theirs.levels, theirs.codebook_size) != (config.levels, config.codebook_size):
        raise SystemExit(
            f"error: codec.init_from: {folder} has {theirs.levels} levels of {theirs.codebook_size}, the config"
            f" {config.levels} of {config.codebook_size}"
        )
    model = FeatureCodec(config)
    for name in ("mean", "std", "weights", "codebooks"):
        getattr(model, name).copy_(getattr(source, name))
    if model.decoder is not None and source.decoder is not None:
        state, mine = source.decoder.state_dict(), model.decoder.state_dict()
        if state.keys() == mine.keys() and all(state[k].shape == mine[k].shape for k in state):
            model.decoder.load_state_dict(state)
    return model


def training_frames(clips: list[np.ndarray]) -> list[torch.Tensor]:
    """int16 clips -> each one's FARGAN features stacked into codec frames [T, D] (an odd last frame dropped)."""
    from soundstorm.vocoder import fargan

    out = []
    for clip in clips:
        features = fargan.analyze(clip.astype(np.float32) / 32768)
        frames = len(features) // STACK
        out.append(torch.from_numpy(features[: frames * STACK].reshape(frames, STACK * NUM_FEATURES)))
    return out


CROP = 200  # the decoder's training crops, codec frames (4 s)
BATCH = 16
VOICE_FRAMES = 150  # a voice prompt's crop, codec frames (3 s)
VOICE_LEVELS = 4  # the levels a prompt's voice vector is read from (what SoundStorm renders)


def voice_sources(ids: list[str], rows: dict[str, dict]) -> list[list[int]]:
    """For each training clip, the other single utterances of its speaker (where its voice is drawn from in
    training); a dialogue, or a speaker's only utterance, draws from itself."""

    def speaker(item_id: str) -> str | None:
        row = rows.get(item_id, {})
        return (row.get("speakers") or [row.get("speaker")])[0] if row.get("kind") == "single" else None

    by_speaker: dict[str, list[int]] = {}
    for i, item_id in enumerate(ids):
        if speaker(item_id) is not None:
            by_speaker.setdefault(speaker(item_id), []).append(i)
    return [
        [j for j in by_speaker.get(speaker(item_id), []) if j != i] or [i] for i, item_id in enumerate(ids)
    ]


def train_decoder(
    model: FeatureCodec,
    clips: list[torch.Tensor],
    semantic: list[torch.Tensor],
    steps: int,
    seed: int,
    log_every: int = 200,
    sources: list[list[int]] | None = None,
    variance_weight: float = 0.0,
) -> list[float]:
    """The codec's decoder, from the sum of the first `decoder_levels` levels' vectors and the codec-rate
    semantic tokens of random 4 s crops to their features: L1 on the features normalised by the set's mean
    and deviation (the pitch counting twice, as the feature decoder's), AdamW 1e-3 with 200 warm-up steps
    and a linear fall to a tenth, bf16 where native. A decoder that reads a voice gets that of a 3 s crop of
    one of the clip's `sources` (`voice_sources`). Returns the loss every `log_every` steps."""
    decoder, q = model.decoder, model.config.decoder_levels
    pairs = [c.reshape(-1, NUM_FEATURES) for c in clips]
    every = torch.cat(pairs)
    decoder.mean.copy_(every.mean(0))
    decoder.std.copy_(every.std(0).clamp_min(1e-3))
    with torch.no_grad():
        latents = [model.decoder_input(model.embed(model.quantize(f, max(q, 1)))) for f in pairs]
        prompt_codes = [model.quantize(f, VOICE_LEVELS) for f in pairs] if model.reads_voice else None
    sources = sources or [[i] for i in range(len(clips))]

    def crop(rng):
        k = int(rng.integers(len(clips)))
        T = min(len(latents[k]), len(semantic[k]))
        lo, n = int(rng.integers(max(1, T - CROP))), min(CROP, T)
        voice = None
        if prompt_codes is not None:
            src = prompt_codes[sources[k][int(rng.integers(len(sources[k])))]]
            start = int(rng.integers(max(1, src.shape[1] - VOICE_FRAMES)))
            voice = model.voice_vector(src[None, :, start : start + VOICE_FRAMES])[0]
        return latents[k][lo : lo + n], semantic[k][lo : lo + n], pairs[k][2 * lo : 2 * (lo + n)], voice

    return fit_decoder(decoder, crop, steps, seed, 1e-3, 200, log_every, variance_weight)


def perturbed_semantic(
    config: DataConfig, ids: list[str], audio: list[np.ndarray], clips: list[torch.Tensor]
) -> dict[str, np.ndarray]:
    """`codec.perturb_voice`: the 25 Hz semantic tokens of a voice-perturbed copy of each training clip (its
    FARGAN features `clips` re-rendered with the pitch and band envelope moved at random, `voice_perturbed`, cut
    to the clip's length and tokenized by the semantic stage's tokenizer), by id. Cached in
    `perturbed_semantic.safetensors` of the data set (about 7 minutes of 2 cores for 4 h); a cache missing an id
    or made with another seed is made anew."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from pipelines.data.perturbed_voices import perturbed_tokens
    from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder

    cache = config.out_dir / "perturbed_semantic.safetensors"
    if cache.exists():
        with safe_open(str(cache), "np") as f:
            seed = (f.metadata() or {}).get("seed")
        tokens = load_file(str(cache))
        if seed == str(config.seed) and all(i in tokens for i in ids):
            return tokens
    tokenizer = SemanticTokenizer.load(
        config.out_dir / "semantic" / "semantic.safetensors", WhisperEncoder(config.semantic.whisper_model, threads=2)
    )
    features = [c.reshape(-1, NUM_FEATURES).numpy() for c in clips]
    copies = perturbed_tokens(tokenizer, features, [len(a) for a in audio], config.seed)
    tokens = {item_id: t.astype(np.int16) for item_id, t in zip(ids, copies, strict=True)}
    tmp = cache.with_suffix(".tmp")
    save_file(tokens, str(tmp), metadata={"seed": str(config.seed)})
    tmp.rename(cache)
    return tokens


def pad_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[n, ...] -> [frames, ...]: token ids padded with 0, features with NaN (padding a learnt tokenizer skips)."""
    fill = float("nan") if x.is_floating_point() else 0
    return torch.cat([x, x.new_full((frames - len(x), *x.shape[1:]), fill)])


def fit_decoder(
    decoder, crop, steps: int, seed: int, lr: float, warmup: int, log_every: int, variance_weight: float = 0.0
) -> list[float]:
    """The loop the feature codec's decoder trainings share (`train_decoder`, `feature_tune`): a step is BATCH
    crops of `crop(rng)` -> (latent [n, D], codec-rate semantic tokens [n] (or features [n, F] for a decoder that
    learns its tokens, `semantic_learnt.Probe`), features [2n, 20] in FARGAN's units, voice [V] or None), padded
    to CROP frames (the targets NaN past a crop's end, so are semantic features); L1 on the features normalised
    by the decoder's mean and deviation (`feature_loss`), `variance_weight` times the gap between the crops' and
    the targets' spread over time (`variance_loss`), plus the decoder's `auxiliary_loss` if it has one,
    AdamW at `lr` with `warmup` steps and a linear fall to a tenth, gradients clipped at 1, bf16 where native.
    Returns the mean loss every `log_every` steps."""
    from pipelines.stages.feature_decoder import feature_loss, variance_loss
    from soundstorm.base.runtime import native_bf16

    opt = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=0.01)
    rng, bf16, losses, window = np.random.default_rng(seed), native_bf16(torch.device("cpu")), [], []
    decoder.train()
    for step in range(steps):
        lat, sem, tgt, voi = [], [], [], []
        for _ in range(BATCH):
            with torch.no_grad():
                latent, tokens, features, voice = crop(rng)
            n = len(latent)
            lat.append(nn.functional.pad(latent, (0, 0, 0, CROP - n)))
            sem.append(pad_frames(tokens, CROP))
            if voice is not None:
                voi.append(voice)
            target = (features - decoder.mean) / decoder.std
            tgt.append(torch.cat([target, torch.full((2 * (CROP - n), NUM_FEATURES), float("nan"))]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = decoder(torch.stack(lat), torch.stack(sem), torch.stack(voi) if voi else None).float()
        target = torch.stack(tgt)
        loss = feature_loss(pred, target) + getattr(decoder, "auxiliary_loss", 0.0)
        if variance_weight:
            loss = loss + variance_weight * variance_loss(pred, target)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * (1 - step / steps))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            losses.append(round(float(np.mean(window)), 4))
            window = []
    decoder.eval()
    return losses


def run(config: DataConfig, progress=None) -> dict:
    from safetensors.torch import save_file

    from pipelines.data.manifest import TRAIN_HOURS, load_training_audio

    c = config.codec
    out = config.out_dir / "codec"
    out.mkdir(parents=True, exist_ok=True)
    done = out / "train_stats.json"
    model_config = FeatureCodecConfig(
        sample_rate=config.sample_rate,
        levels=c.model.levels,
        codebook_size=c.model.codebook_size,
        semantic_vocab=config.semantic.clusters if c.semantic else 0,
        decoder_levels=c.decoder_levels,
        voice=bool(c.semantic and c.voice),
        voice_stats=c.voice_stats,
        voice_match=c.voice_match if c.semantic and c.voice else 0.0,
    )
    if config.sample_rate != 16000:
        raise SystemExit("error: the feature codec needs 16 kHz audio (FARGAN's rate)")
    settings = {
        "kind": "feature",
        "levels": c.model.levels,
        "codebook_size": c.model.codebook_size,
        "pitch_weight": c.pitch_weight,
        "correlation_weight": c.correlation_weight,
        "kmeans_iterations": c.kmeans_iterations,
        "kmeans_frames": c.kmeans_frames,
        "decoder_steps": c.steps if c.semantic else 0,
        "decoder_levels": c.decoder_levels if c.semantic else 0,
    }
    if c.semantic and c.voice:  # (absent otherwise: codecs fitted before the key keep their settings)
        settings["voice"] = True
        if c.voice_stats != "moments":
            settings["voice_stats"] = c.voice_stats
    if c.init_from:
        settings["init_from"] = str(c.init_from)
    if c.semantic and c.perturb_voice:
        settings["perturb_voice"] = True
    variance_weight = config.experimental.feature_variance_weight
    if c.semantic and variance_weight:
        settings["variance_weight"] = variance_weight
    if done.exists() and json.loads(done.read_text()).get("settings") == settings:
        return json.loads(done.read_text())
    torch.set_num_threads(max(1, c.threads))
    torch.manual_seed(config.seed)
    started = time.time()
    audio, ids = load_training_audio(config, TRAIN_HOURS, with_ids=True)
    clips = training_frames(audio)
    frames = torch.cat(clips)
    if c.init_from:  # its codebooks kept (so codes made with it stay valid), only the decoder trained here
        model, rms = kept_codebooks(Path(c.init_from), model_config), None
    else:
        weights = feature_weights(c.pitch_weight, c.correlation_weight)
        model, rms = fit(frames, model_config, weights, c.kmeans_iterations, c.kmeans_frames, config.seed)
    stats = {"settings": settings, "frames": len(frames), "hours": round(len(frames) / 50 / 3600, 2)}
    stats["residual_rms"] = rms
    if model.decoder is not None:  # the decoder over the first levels and the semantic stage's tokens
        from pipelines.stages.shards import load_semantic
        from soundstorm.chain.semantic import frame_ratio, semantic_to_codec

        tokens = load_semantic(config.out_dir / "semantic")
        if c.perturb_voice:  # the decoder reads the tokens of the clips in other voices
            tokens = tokens | perturbed_semantic(config, ids, audio, clips)
        ratio = frame_ratio(model_config.sample_rate // model_config.hop_length)
        semantic = [
            semantic_to_codec(torch.from_numpy(tokens[i].astype(np.int64)), ratio, len(f))
            for i, f in zip(ids, clips, strict=True)
        ]
        from pipelines.data.manifest import read_manifest

        rows = {r["id"]: r for r in read_manifest(config.out_dir, "train")}
        sources = voice_sources(ids, rows)
        stats["decoder_loss"] = train_decoder(
            model, clips, semantic, c.steps, config.seed, sources=sources, variance_weight=variance_weight
        )
    (out / "config.json").write_text(json.dumps(model_config.to_dict(), indent=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    stats["wall_s"] = round(time.time() - started, 1)
    done.write_text(json.dumps(stats, indent=1))
    if progress:
        progress(1, 1)
    return stats
