"""Train SoundStorm on the token shards: `python -m pipelines soundstorm --config pipelines/configs/tiny.yaml`.

Runs the same on one CPU and under `torchrun --nproc_per_node N` (DDP: each rank
draws its own examples, rank 0 logs and saves), through the one training loop
(`training.train`). Examples and batches: `batching.py`. Loss: `soundstorm_loss` (the paper's mask).
AdamW, warmup + cosine, clipping, bf16 autocast, validation = masked-token
accuracy per level on the valid split. `train_state.pt` = {model, optimizer,
step, log}, read back with `weights_only=True`; the shipped form is
`config.json` + `model.safetensors`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from pipelines import training
from pipelines.batching import TokenModel, model_levels, train_token_model
from pipelines.config import DataConfig
from soundstorm.models.soundstorm import (
    SoundStorm,
    SoundStormConfig,
    level_targets,
    soundstorm_loss,
)


def model_config(config: DataConfig, meta: dict) -> SoundStormConfig:
    """The config's model with what the shards decide: levels, vocabularies, frame ratio, window."""
    return dataclasses.replace(
        config.soundstorm.model,
        levels=model_levels(config, meta),
        codebook_size=meta["codebook_size"],
        semantic_vocab=config.semantic.clusters,
        semantic_ratio=meta["codec_frame_rate"] // meta["semantic_rate"],
        window=int(config.soundstorm.max_seconds * meta["codec_frame_rate"]),
    )


@torch.no_grad()
def validate(model: SoundStorm, batches_iter, count: int, generator) -> dict:
    """Masked-token accuracy per level (the paper's mask, fixed seed) and loss."""
    device = next(model.parameters()).device
    model.eval()
    hits = np.zeros(model.config.levels)
    totals = np.zeros(model.config.levels)
    losses = []
    for _ in range(count):
        batch = training.to_device(next(batches_iter), device)
        loss, drawn, logits = soundstorm_loss(model, batch, generator)
        losses.append(loss.item())
        right = (logits.argmax(-1) == level_targets(batch["codes"], drawn.level)) & drawn.loss_mask
        for b in range(len(drawn.level)):
            hits[drawn.level[b]] += int(right[b].sum())
            totals[drawn.level[b]] += int(drawn.loss_mask[b].sum())
    model.train()
    accuracy = [round(float(h / t), 4) if t else None for h, t in zip(hits, totals, strict=True)]
    return {"valid_loss": round(float(np.mean(losses)), 4), "valid_accuracy": accuracy}


def run(config: DataConfig, progress=None) -> dict:
    c = config.soundstorm

    def prepare(model, step: int) -> None:
        if step == 0 and c.init_from:
            from soundstorm.models.soundstorm import load_soundstorm

            model.load_state_dict(load_soundstorm(c.init_from).state_dict())

    spec = TokenModel(
        name="soundstorm",
        build=lambda meta: SoundStorm(model_config(config, meta)),
        loss=lambda model, forward, batch: soundstorm_loss(model, batch, forward=forward)[0],
        validate=lambda model, valid: validate(
            model, valid, c.valid_batches, torch.Generator().manual_seed(0)
        ),
        threads=c.threads,
        frames_per_batch=c.frames_per_batch,
        prepare=prepare,
    )
    return train_token_model(config, spec, progress)
