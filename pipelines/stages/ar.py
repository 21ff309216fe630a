"""Train the autoregressive baseline: `python -m pipelines ar --config pipelines/configs/tiny.yaml`.

The same examples as SoundStorm (`soundstorm_train.ExampleSampler`: voice prompt
of the same speaker, dialogues with a prompt per speaker, windows, bucketing) and
the same width, depth and levels (`soundstorm:` section of the config), so the two
are compared like with like; `ar.steps` sets its step budget. Teacher forcing on
the flattened tokens after the prompt (`ar_loss`); validation = next-token
accuracy per level on the valid split. Resumable `train_state.pt` (weights_only;
the logged elapsed time adds up across resumes), DDP under torchrun, bf16
autocast; shipped as config.json + model.safetensors. `ar.init_from` starts from a trained
baseline's weights (a fresh optimizer), for codes renamed by a codec trained further.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from pipelines import training
from pipelines.batching import TokenModel, model_levels, train_token_model
from pipelines.config import DataConfig
from soundstorm.models.ar_baseline import ARBaseline, ARConfig, ar_loss, ar_targets


def model_config(config: DataConfig, meta: dict) -> ARConfig:
    """SoundStorm's sizes (the `soundstorm:` section) for the AR baseline: compared like with like."""
    c = config.soundstorm.model
    return ARConfig(
        levels=model_levels(config, meta),
        codebook_size=meta["codebook_size"],
        semantic_vocab=config.semantic.clusters,
        **{k: getattr(c, k) for k in ("dim", "layers", "heads", "dropout")},
    )


@torch.no_grad()
def validate(model: ARBaseline, batches_iter, count: int) -> dict:
    """Teacher-forced loss and next-token accuracy per level on `count` batches."""
    device = next(model.parameters()).device
    model.eval()
    Q = model.config.levels
    hits, totals, losses = np.zeros(Q), np.zeros(Q), []
    for _ in range(count):
        batch = training.to_device(next(batches_iter), device)
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


def run(config: DataConfig, progress=None) -> dict:
    c, a = config.soundstorm, config.ar
    if a.max_seconds:  # the sampler cuts windows to soundstorm.max_seconds
        config = replace(config, soundstorm=replace(c, max_seconds=a.max_seconds))

    def prepare(model, step: int) -> None:
        if step == 0 and a.init_from:
            from soundstorm.models.ar_baseline import load_ar_baseline

            model.load_state_dict(load_ar_baseline(a.init_from).state_dict())

    spec = TokenModel(
        name="ar_baseline",
        build=lambda meta: ARBaseline(model_config(config, meta)),
        loss=lambda _, forward, b: ar_loss(
            forward, b["codes"], b["semantic"], b["speakers"], b["lengths"], b["prompt_lengths"]
        ),
        validate=lambda model, valid: validate(model, valid, c.valid_batches),
        threads=a.threads,
        frames_per_batch=a.frames_per_batch,
        # its own validation batches: its sequences are Q times longer than SoundStorm's
        valid_frames_per_batch=a.frames_per_batch,
        rng_salt=(7,),
        # SoundStorm's optimizer and schedule, its own step budget
        schedule={"steps": a.steps, "accumulate": a.accumulate, "time_budget_s": a.time_budget_s},
        prepare=prepare,
    )
    return train_token_model(config, spec, progress)
