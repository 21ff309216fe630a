"""Train the autoregressive baseline: `python -m pipelines ar --config pipelines/configs/tiny.yaml`.

The same examples as SoundStorm (`soundstorm_train.ExampleSampler`: voice prompt
of the same speaker, dialogues with a prompt per speaker, windows, bucketing) and
the same width, depth and levels (`soundstorm:` section of the config), so the two
are compared like with like; `ar.steps` sets its step budget. Teacher forcing on
the flattened tokens after the prompt (`ar_loss`); validation = next-token
accuracy per level on the valid split. Resumable `train_state.pt` (weights_only;
the logged elapsed time adds up across resumes), DDP under torchrun, bf16
autocast; shipped as config.json + model.safetensors.
"""

from __future__ import annotations

from dataclasses import asdict, replace

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
from soundstorm_cli.models.ar_baseline import ARBaseline, ARConfig, ar_loss, ar_targets


def model_config(config: DataConfig, meta: dict) -> ARConfig:
    c = config.soundstorm
    return ARConfig(
        levels=model_levels(config, meta),
        codebook_size=meta["codebook_size"],
        semantic_vocab=config.semantic.clusters,
        dim=c.dim,
        layers=c.layers,
        heads=c.heads,
        dropout=c.dropout,
    )


@torch.no_grad()
def validate(model: ARBaseline, batches_iter, count: int) -> dict:
    """Teacher-forced loss and next-token accuracy per level on `count` batches."""
    device = next(model.parameters()).device
    model.eval()
    Q = model.config.levels
    hits, totals, losses = np.zeros(Q), np.zeros(Q), []
    for _ in range(count):
        batch = to_device(next(batches_iter), device)
        logits = model(batch["codes"], batch["semantic"], batch["speakers"])
        targets, keep = ar_targets(batch["codes"], batch["lengths"], batch["prompt_lengths"])
        losses.append(torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep]).item())
        right = (logits.argmax(-1) == targets) & keep
        level = torch.arange(targets.shape[1], device=device) % Q
        for q in range(Q):
            hits[q] += int(right[:, level == q].sum())
            totals[q] += int(keep[:, level == q].sum())
    model.train()
    accuracy = [round(float(h / t), 4) if t else None for h, t in zip(hits, totals, strict=True)]
    return {"valid_loss": round(float(np.mean(losses)), 4), "valid_accuracy": accuracy}


def save_model(model: ARBaseline, folder) -> None:
    """Shipped in bf16 (`load_ar_baseline` computes in fp32)."""
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    save_model_folder(folder, state, {"model_type": "ar_baseline", **asdict(model.config)})


def run(config: DataConfig, progress=None) -> dict:
    c, a = config.soundstorm, config.ar
    out = config.out_dir / "ar_baseline"
    rank, world = ddp_setup()
    torch.set_num_threads(max(1, a.threads))
    torch.manual_seed(config.seed)
    train_split = TokenShards(config.out_dir / "shards", "train")
    valid = TokenShards(config.out_dir / "shards", "valid")
    device = train_device()
    model = ARBaseline(model_config(config, train_split.meta)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.98), weight_decay=c.weight_decay)
    step, log = resume(out, model, optimizer)
    trained = distributed(model, device, world)
    if a.max_seconds:  # the sampler cuts windows to soundstorm.max_seconds
        config = replace(config, soundstorm=replace(c, max_seconds=a.max_seconds))
    sampler = ExampleSampler(train_split, config, np.random.default_rng([config.seed, rank, step, 7]))

    def loss(batch):
        with autocast(c.autocast_bf16):
            return ar_loss(
                trained,
                batch["codes"],
                batch["semantic"],
                batch["speakers"],
                batch["lengths"],
                batch["prompt_lengths"],
            )

    def validation() -> dict:
        # its own batch size: its sequences are Q times longer than SoundStorm's
        return validate(
            model, valid_batches(valid, config, model.config.levels, a.frames_per_batch), c.valid_batches
        )

    stage = Stage(
        model=model,
        optimizer=optimizer,
        out=out,
        batches=batches(sampler, a.frames_per_batch, model.config.levels),
        loss=loss,
        save=lambda: save_model(model, out),
        validate=validation,
        # SoundStorm's optimizer and schedule, its own step budget
        **schedule(c, steps=a.steps, accumulate=a.accumulate, time_budget_s=None),
        **placement(device, trained, rank, world),
    )
    return run_stage(stage, step, log, progress)
