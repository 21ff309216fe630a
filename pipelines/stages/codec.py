"""Stage 4: train the embedded codec (`soundstorm/models/frame_codec.py`).

    python -m pipelines codec --config pipelines/configs/tiny.yaml [--steps N]

Random 1 s crops of the training split; multi-resolution log-mel L1 + a small
waveform L1 + VQ commitment; EMA codebooks with k-means init and dead-code
restarts; quantizer dropout (half the batches use only the first n ~ U{1..Q}
levels) so that fewer levels still decode. With `experimental.adversarial.enabled`, multi-period and
multi-resolution discriminators with feature matching join the mel loss (`adversarial.py`; their
state in `adversary.pt`, never in the codec folder). With `codec.init_from` (a codec folder, e.g. the
bundle's) it trains that codec further, whole: its config, its weights, EMA statistics rebuilt from its
codebooks (`init_model`); `codec.train_order: shuffled` mixes the training audio it holds across the
manifest (an appended natural corpus, say). Its codebooks move, so SoundStorm's codes and the
decoder tunings (`decoder_tune`, whose config flags the folder keeps) have to be made again on it.
Resumable: `train_state.pt` holds {model, optimizer, step, rng} and is read back with `weights_only=True`.
The result, `config.json` + `model.safetensors`, is a folder `load_codec` reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.adversarial import Adversary
from pipelines.config import DataConfig
from pipelines.data.manifest import TRAIN_HOURS, load_training_audio
from pipelines.training import cosine_lr, load_state, optimizer_step, save_state
from soundstorm.base.runtime import native_bf16
from soundstorm.models.frame_codec import (
    TRAINING_ONLY_BUFFERS,
    FrameCodec,
    log_mel,
    mel_basis,
)

MEL_RESOLUTIONS = ((512, 128, 64), (1024, 256, 80), (2048, 512, 128))  # (n_fft, hop, mels)


class MelLoss(torch.nn.Module):
    """L1 between log-mel spectrograms at several resolutions."""

    def __init__(self, sample_rate: int):
        super().__init__()
        for i, (n_fft, _, mels) in enumerate(MEL_RESOLUTIONS):
            self.register_buffer(f"basis{i}", mel_basis(n_fft, mels, sample_rate), persistent=False)
            self.register_buffer(f"window{i}", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, wav, i: int):
        return log_mel(
            wav, getattr(self, f"basis{i}"), getattr(self, f"window{i}"), hop=MEL_RESOLUTIONS[i][1]
        )

    def forward(self, recon, target):
        return sum(
            F.l1_loss(self.log_mel(recon, i), self.log_mel(target, i)) for i in range(len(MEL_RESOLUTIONS))
        ) / len(MEL_RESOLUTIONS)


def random_batch(
    clips: list[np.ndarray], batch: int, samples: int, rng: np.random.Generator, semantic=None, hop: int = 320
):
    """[B, samples] random crops; with `semantic` (each clip's 25 Hz tokens) crops start on a semantic
    frame and come with their codec-rate tokens [B, samples / hop]: (wav, semantic)."""
    from soundstorm.chain.semantic import SEMANTIC_HOP, semantic_to_codec

    out = np.zeros((batch, samples), dtype=np.float32)
    tokens = []
    for b in range(batch):
        n = rng.integers(len(clips))
        clip = clips[n]
        start = rng.integers(max(1, len(clip) - samples))
        if semantic is not None:
            start -= start % SEMANTIC_HOP
            first = start // SEMANTIC_HOP
            tokens.append(
                semantic_to_codec(
                    torch.from_numpy(semantic[n][first:].astype(np.int64)),
                    SEMANTIC_HOP // hop,
                    samples // hop,
                )
            )
        piece = clip[start : start + samples].astype(np.float32) / 32768
        out[b, : len(piece)] = piece
    wav = torch.from_numpy(out)
    return wav if semantic is None else (wav, torch.stack(tokens))


def build_model(config: DataConfig) -> FrameCodec:
    """The config's codec at the data set's sample rate (conditioned on its semantic tokens if asked), or
    `codec.init_from`'s, with its weights (`init_model`)."""
    c = config.codec
    if c.init_from:
        return init_model(Path(c.init_from), config.sample_rate)
    semantic_vocab = config.semantic.clusters if config.experimental.semantic_frame_codec else 0
    return FrameCodec(
        dataclasses.replace(c.model, sample_rate=config.sample_rate, semantic_vocab=semantic_vocab)
    )


def init_model(folder: Path, sample_rate: int) -> FrameCodec:
    """A shipped codec folder as a model to train further: its config and weights (safetensors, checked by
    `load_codec`), and the training-only EMA statistics it does not ship rebuilt from its codebooks (each
    code counted once, so the codes in use settle to their real counts and unused ones restart)."""
    from soundstorm.chain.codec import load_codec

    model = load_codec(folder).model
    if model.config.sample_rate != sample_rate:
        raise SystemExit(
            f"codec.init_from: {folder} is {model.config.sample_rate} Hz, the data {sample_rate} Hz"
        )
    model = model.float()
    for book in model.quantizer.levels:
        book.embed_sum.copy_(book.embed)
        book.cluster_size.fill_(1.0)
        book.initted.fill_(True)
    return model


def inference_state(model: FrameCodec) -> dict:
    """Weights in fp16, codebooks in fp32 (nearest-code search is sensitive), no training-only buffers."""
    state = {}
    for key, value in model.state_dict().items():
        if key.rsplit(".", 1)[-1] in TRAINING_ONLY_BUFFERS:
            continue
        keep_fp32 = key.endswith(".embed") or not value.is_floating_point()
        state[key] = (value if keep_fp32 else value.to(torch.float16)).detach().contiguous()
    return state


def save_codec(model: FrameCodec, folder: Path) -> None:
    """The shipped form: config.json + model.safetensors (`inference_state`)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = inference_state(model)
    save_file(state, str(folder / "model.safetensors.tmp"))
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))


def record(log: list, step: int, window: list, started: float) -> None:
    """Log (and print) the mean mel L1 of the steps since the last record, and start a new window."""
    log.append(
        {
            "step": step,
            "mel_l1": round(float(np.mean(window)), 4),
            "elapsed_s": round(time.time() - started, 1),
        }
    )
    window.clear()
    print(json.dumps(log[-1]), flush=True)


def run(config: DataConfig, progress=None) -> dict:
    c = config.codec
    if c.pretrained:  # a pretrained codec (e.g. EnCodec 24 kHz): nothing to train
        return {"pretrained": c.pretrained}
    if c.kind == "feature":  # residual k-means over FARGAN's features: nothing trained by gradient
        from pipelines.stages.feature_codec import run as fit_feature_codec

        return fit_feature_codec(config, progress)
    if c.kind != "frame":
        raise SystemExit(f"error: codec.kind is frame or feature, got {c.kind!r}")
    if c.semantic:
        raise SystemExit(
            "error: codec.semantic trains the feature codec's decoder; a frame codec conditioned on the "
            "semantic tokens is experimental.semantic_frame_codec"
        )
    out = config.out_dir / "codec"
    out.mkdir(parents=True, exist_ok=True)
    done_marker = out / "train_stats.json"
    if done_marker.exists() and json.loads(done_marker.read_text()).get("steps") == c.steps:
        return json.loads(done_marker.read_text())
    torch.set_num_threads(max(1, c.threads))
    torch.manual_seed(config.seed)
    clips, ids = load_training_audio(config, TRAIN_HOURS, with_ids=True)
    model = build_model(config)
    semantic = None
    if model.config.semantic_vocab:  # a codec reading semantic tokens: the semantic stage's
        from pipelines.stages.shards import load_semantic

        tokens = load_semantic(config.out_dir / "semantic")
        semantic = [tokens[i] for i in ids]
    mel_loss = MelLoss(config.sample_rate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.8, 0.99), weight_decay=0.01)
    state_path = out / "train_state.pt"
    step, log = load_state(state_path, model, optimizer)
    adversary = Adversary(config.experimental.adversarial) if config.experimental.adversarial.enabled else None
    if adversary is not None:
        adversary.load(out / "adversary.pt")
    samples = int(c.segment_s * config.sample_rate)
    started, window = time.time(), []
    bf16 = c.autocast_bf16 and native_bf16(torch.device("cpu"))  # emulated bf16 is slower than fp32
    model.train()
    while step < c.steps:
        rng = np.random.default_rng([config.seed, step])
        wav = random_batch(clips, c.batch_size, samples, rng, semantic, model.config.hop_length)
        wav, tokens = wav if semantic is not None else (wav, None)
        num_levels = int(rng.integers(1, model.config.levels + 1)) if rng.random() < 0.5 else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            recon, _, commit = model(wav, num_levels, tokens)
        recon = recon.float()
        target = wav[:, : recon.shape[-1]]
        mel = mel_loss(recon, target)
        loss = mel + 0.1 * F.l1_loss(recon, target) + 0.25 * commit
        if adversary is not None:
            loss = loss + adversary.step(target, recon, step)[0]
        optimizer_step(model, optimizer, loss, cosine_lr(step, c.steps, c.lr, warmup=200))
        step += 1
        window.append(mel.item())
        if step % c.log_every == 0 or step == c.steps:
            record(log, step, window, started)
        if step % c.save_every == 0 or step == c.steps:
            save_state(state_path, model, optimizer, step, log)
            if adversary is not None:
                adversary.save(out / "adversary.pt")
        if progress:
            progress(step, c.steps)
    model.eval()
    save_codec(model, out)
    stats = {
        "steps": c.steps,
        "batch_size": c.batch_size,
        "segment_s": c.segment_s,
        "codebook_size": model.config.codebook_size,
        "semantic": bool(model.config.semantic_vocab),
        "init_from": c.init_from,
        "train_order": c.train_order,
        "adversarial": config.experimental.adversarial.enabled,
        "train_audio_hours": round(sum(len(x) for x in clips) / config.sample_rate / 3600, 2),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "final_mel_l1": log[-1]["mel_l1"] if log else None,
        "log": log,
    }
    done_marker.write_text(json.dumps(stats, indent=1))
    return stats
