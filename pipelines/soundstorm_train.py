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

from pathlib import Path

import numpy as np
import torch

from pipelines.batching import ExampleSampler, batches, model_levels, valid_batches
from pipelines.config import DataConfig
from pipelines.shards import TokenShards
from pipelines.training import (
    Stage,
    autocast,
    ddp_setup,
    distributed,
    placement,
    resume,
    run_stage,
    schedule,
    to_device,
    train_device,
)
from soundstorm_cli.checkpoints import save_model_folder
from soundstorm_cli.models.soundstorm import (
    SoundStorm,
    SoundStormConfig,
    level_targets,
    soundstorm_loss,
    weighted_levels,
)


def model_config(config: DataConfig, meta: dict) -> SoundStormConfig:
    c = config.soundstorm
    return SoundStormConfig(
        levels=model_levels(config, meta),
        codebook_size=meta["codebook_size"],
        semantic_vocab=config.semantic.clusters,
        semantic_ratio=meta["codec_frame_rate"] // meta["semantic_rate"],
        dim=c.dim,
        layers=c.layers,
        heads=c.heads,
        conv_kernel=c.conv_kernel,
        dropout=c.dropout,
        attention_dropout=c.attention_dropout,
        window=int(c.max_seconds * meta["codec_frame_rate"]),
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
        batch = to_device(next(batches_iter), device)
        loss, drawn, logits = soundstorm_loss(model, batch, generator)
        losses.append(loss.item())
        right = (logits.argmax(-1) == level_targets(batch["codes"], drawn.level)) & drawn.loss_mask
        for b in range(len(drawn.level)):
            hits[drawn.level[b]] += int(right[b].sum())
            totals[drawn.level[b]] += int(drawn.loss_mask[b].sum())
    model.train()
    accuracy = [round(float(h / t), 4) if t else None for h, t in zip(hits, totals, strict=True)]
    return {"valid_loss": round(float(np.mean(losses)), 4), "valid_accuracy": accuracy}


def save_model(model: SoundStorm, folder: Path) -> None:
    """Shipped in bf16 (`load_soundstorm` computes in fp32)."""
    from dataclasses import asdict

    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    save_model_folder(folder, state, {"model_type": "soundstorm", **asdict(model.config)})


def run(config: DataConfig, progress=None) -> dict:
    c = config.soundstorm
    out = config.out_dir / "soundstorm"
    rank, world = ddp_setup()
    torch.set_num_threads(max(1, c.threads))
    torch.manual_seed(config.seed)
    train_split = TokenShards(config.out_dir / "shards", "train")
    valid = TokenShards(config.out_dir / "shards", "valid")
    device = train_device()
    model = SoundStorm(model_config(config, train_split.meta)).to(device)
    if c.level_weights is not None:  # a wrong list fails here, not at the first step
        weighted_levels(torch.rand(1), c.level_weights, model.config.levels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.98), weight_decay=c.weight_decay)
    step, log = resume(out, model, optimizer)
    if step == 0 and c.init_from:
        from soundstorm_cli.models.soundstorm import load_soundstorm

        model.load_state_dict(load_soundstorm(c.init_from).state_dict())
    trained = distributed(model, device, world)
    sampler = ExampleSampler(train_split, config, np.random.default_rng([config.seed, rank, step]))

    def loss(batch):
        with autocast(c.autocast_bf16):
            return soundstorm_loss(model, batch, forward=trained, level_weights=c.level_weights)[0]

    def validation() -> dict:
        valid_iter = valid_batches(valid, config, model.config.levels)
        return validate(model, valid_iter, c.valid_batches, torch.Generator().manual_seed(0))

    stage = Stage(
        model=model,
        optimizer=optimizer,
        out=out,
        batches=batches(sampler, c.frames_per_batch, model.config.levels),
        loss=loss,
        save=lambda: save_model(model, out),
        validate=validation,
        **schedule(c),
        **placement(device, trained, rank, world),
    )
    return run_stage(stage, step, log, progress)
