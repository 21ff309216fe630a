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

import json
import os
import time
from dataclasses import asdict, replace

import numpy as np
import torch

from pipelines.config import DataConfig
from pipelines.shards import TokenShards
from pipelines.soundstorm_train import ExampleSampler, batches, model_levels, valid_batches
from pipelines.training import (
    accumulated_step,
    autocast,
    cosine_lr,
    ddp_setup,
    distributed,
    load_state,
    save_state,
    to_device,
    train_device,
)
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
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors.tmp"))
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    (folder / "config.json").write_text(
        json.dumps({"model_type": "ar_baseline", **asdict(model.config)}, indent=1)
    )


def run(config: DataConfig, progress=None) -> dict:
    c, a = config.soundstorm, config.ar
    out = config.out_dir / "ar_baseline"
    rank, world = ddp_setup()
    torch.set_num_threads(max(1, a.threads))
    torch.manual_seed(config.seed)
    train = TokenShards(config.out_dir / "shards", "train")
    valid = TokenShards(config.out_dir / "shards", "valid")
    device = train_device()
    model = ARBaseline(model_config(config, train.meta)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.98), weight_decay=c.weight_decay)
    state_path = out / "train_state.pt"
    step, log = load_state(state_path, model, optimizer)
    trained = distributed(model, device, world)
    if a.max_seconds:  # the sampler cuts windows to soundstorm.max_seconds
        config = replace(config, soundstorm=replace(c, max_seconds=a.max_seconds))
    sampler = ExampleSampler(train, config, np.random.default_rng([config.seed, rank, step, 7]))
    train_batches = batches(sampler, a.frames_per_batch, model.config.levels)
    started, window = time.time(), []
    resumed_at_s = log[-1]["elapsed_s"] if log else 0.0
    model.train()
    while step < a.steps:
        lr = cosine_lr(step, a.steps, c.lr, c.warmup)

        def micro(batch=None):
            with autocast(c.autocast_bf16):
                return ar_loss(
                    trained,
                    batch["codes"],
                    batch["semantic"],
                    batch["speakers"],
                    batch["lengths"],
                    batch["prompt_lengths"],
                )

        micro_batches = [to_device(next(train_batches), device) for _ in range(a.accumulate)]
        loss = accumulated_step(
            model,
            optimizer,
            lr,
            [lambda b=b: micro(b) for b in micro_batches],
            trained if world > 1 else None,
        )
        step += 1
        window.append(loss)
        if rank == 0 and (step % c.log_every == 0 or step == a.steps):
            entry = {
                "step": step,
                "loss": round(float(np.mean(window)), 4),
                "lr": round(lr, 6),
                "elapsed_s": round(resumed_at_s + time.time() - started, 1),
            }
            if step % (c.log_every * 4) == 0 or step == a.steps:
                # its own batch size: its sequences are Q times longer than SoundStorm's
                valid_iter = valid_batches(valid, config, model.config.levels, a.frames_per_batch)
                entry |= validate(model, valid_iter, c.valid_batches)
            log.append(entry)
            window = []
            print(json.dumps(entry), flush=True)
        if rank == 0 and (step % c.save_every == 0 or step == a.steps):
            save_state(state_path, model, optimizer, step, log)
        if progress:
            progress(step, a.steps)
    if rank == 0:
        save_model(model, out)
    if world > 1:
        torch.distributed.destroy_process_group()
    last_valid = next((e for e in reversed(log) if "valid_accuracy" in e), {})
    return {
        "steps": step,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "final_loss": log[-1]["loss"] if log else None,
        "train_s": log[-1]["elapsed_s"] if log else None,
        "valid_loss": last_valid.get("valid_loss"),
        "valid_accuracy": last_valid.get("valid_accuracy"),
        "world_size": world,
    }
