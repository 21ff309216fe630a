"""Train SoundStorm on the token shards: `python -m pipelines soundstorm --config pipelines/configs/tiny.yaml`.

Runs the same on one CPU and under `torchrun --nproc_per_node N` (DDP: each rank
draws its own examples, rank 0 logs and saves). Examples:

- a single utterance, with probability `prompt_probability` preceded by a 2-4 s
  clip of another utterance of the same speaker (the voice prompt of inference);
- a two-speaker dialogue, always preceded by one such clip per speaker, the
  speaker track tagging every frame (prompts included) with its speaker, so that
  a turn learns to take the voice of its speaker's prompt (paper section 5.2).

Windows are cut to `max_seconds`; batches fill a padded-frame budget from
length-sorted candidates (bucketing). Loss: `soundstorm_loss` (the paper's mask).
AdamW, warmup + cosine, clipping, bf16 autocast, validation = masked-token
accuracy per level on the valid split. `train_state.pt` = {model, optimizer,
step, log}, read back with `weights_only=True`; the shipped form is
`config.json` + `model.safetensors`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.config import DataConfig
from pipelines.shards import TokenShards
from pipelines.training import (
    StepBudget,
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
from soundstorm_cli.models.soundstorm import (
    SoundStorm,
    SoundStormConfig,
    level_targets,
    soundstorm_loss,
    weighted_levels,
)
from soundstorm_cli.semantic import semantic_to_codec


def speaker_track(item: dict, frames: int) -> torch.Tensor:
    """Speaker label (1, 2, ...) of every frame of an item: a turn owns the frames up to the next turn."""
    if item["kind"] != "dialogue":
        return torch.ones(frames, dtype=torch.long)
    labels = {s: n + 1 for n, s in enumerate(item["speakers"])}
    track = torch.full((frames,), labels[item["turns"][0]["speaker"]], dtype=torch.long)
    for turn in item["turns"]:
        track[turn["start"] :] = labels[turn["speaker"]]
    return track


class ExampleSampler:
    """Draws training examples (codes, semantic at codec rate, speaker track) from shards."""

    def __init__(self, shards: TokenShards, config: DataConfig, rng: np.random.Generator):
        self.shards, self.rng, self.cfg = shards, rng, config.soundstorm
        self.ratio, self.frame_rate = shards.ratio, shards.meta["codec_frame_rate"]
        self.levels = model_levels(config, shards.meta)

    def _item(self, i: int):
        item = self.shards[i]
        codes = torch.from_numpy(item["codes"][: self.levels])  # [Q, T]
        semantic = semantic_to_codec(torch.from_numpy(item["semantic_tokens"]), self.ratio, codes.shape[1])
        return item, codes, semantic

    def _prompt(self, speaker: int, exclude: int, label: int):
        """A 2-4 s clip of another single utterance of `speaker`, tagged `label`."""
        choices = [i for i in self.shards.singles_by_speaker.get(speaker, []) if i != exclude]
        if not choices:
            return None
        _, codes, semantic = self._item(int(self.rng.choice(choices)))
        frames = int(self.rng.uniform(*self.cfg.prompt_seconds) * self.frame_rate)
        start = int(self.rng.integers(0, max(1, codes.shape[1] - frames)))
        codes, semantic = codes[:, start : start + frames], semantic[start : start + frames]
        return codes, semantic, torch.full((codes.shape[1],), label, dtype=torch.long)

    def example(self) -> dict:
        i = int(self.rng.integers(len(self.shards)))
        item, codes, semantic = self._item(i)
        track = speaker_track(item, codes.shape[1])
        max_frames = int(self.cfg.max_seconds * self.frame_rate)
        prompts = []
        if item["kind"] == "dialogue" or self.rng.random() < self.cfg.prompt_probability:
            for label, speaker in enumerate(item["speakers"], start=1):
                prompt = self._prompt(speaker, i, label)
                if prompt is not None:
                    prompts.append(prompt)
        room = max_frames - sum(p[0].shape[1] for p in prompts)
        if codes.shape[1] > room:  # a random window of the item
            start = int(self.rng.integers(0, codes.shape[1] - room + 1))
            codes, semantic, track = (
                codes[:, start : start + room],
                semantic[start : start + room],
                track[start : start + room],
            )
        parts = [*prompts, (codes, semantic, track)]
        return {
            "prompt_frames": sum(p[0].shape[1] for p in prompts),
            "codes": torch.cat([p[0] for p in parts], dim=1),
            "semantic": torch.cat([p[1] for p in parts]),
            "speakers": torch.cat([p[2] for p in parts]),
        }


def valid_batches(valid: TokenShards, config: DataConfig, levels: int, frames_per_batch: int | None = None):
    """The same validation batches every time (fixed seed), of `soundstorm.valid_frames_per_batch` frames
    unless told otherwise: whatever the training batch, so that runs compare."""
    frames = frames_per_batch or config.soundstorm.valid_frames_per_batch
    return batches(ExampleSampler(valid, config, np.random.default_rng([config.seed, 99])), frames, levels)


def collate(examples: list[dict], levels: int) -> dict:
    lengths = torch.tensor([e["codes"].shape[1] for e in examples])
    T = int(lengths.max())
    B = len(examples)
    codes = torch.zeros(B, levels, T, dtype=torch.long)
    semantic = torch.zeros(B, T, dtype=torch.long)
    speakers = torch.zeros(B, T, dtype=torch.long)
    for b, e in enumerate(examples):
        n = e["codes"].shape[1]
        codes[b, :, :n], semantic[b, :n], speakers[b, :n] = e["codes"], e["semantic"], e["speakers"]
    prompt_lengths = torch.tensor([e.get("prompt_frames", 0) for e in examples])
    return {
        "codes": codes,
        "semantic": semantic,
        "speakers": speakers,
        "lengths": lengths,
        "prompt_lengths": prompt_lengths,
    }


def batches(sampler: ExampleSampler, frames_per_batch: int, levels: int):
    """Endless batches: 64 candidates sorted by length, cut to the padded-frame budget."""
    while True:
        pool = sorted((sampler.example() for _ in range(64)), key=lambda e: e["codes"].shape[1])
        group: list[dict] = []
        out = []
        for e in pool:
            if group and (len(group) + 1) * e["codes"].shape[1] > frames_per_batch:
                out.append(group)
                group = []
            group.append(e)
        out.append(group)
        for i in sampler.rng.permutation(len(out)):
            yield collate(out[i], levels)


def model_levels(config: DataConfig, meta: dict) -> int:
    """How many of the codec's levels SoundStorm models (the first N; the codec decodes any prefix)."""
    wanted = config.soundstorm.levels or meta["levels"]
    if not 1 <= wanted <= meta["levels"]:
        raise ValueError(f"soundstorm.levels {wanted}: the codec has {meta['levels']} levels")
    return wanted


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
    from dataclasses import asdict

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors.tmp"))
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    (folder / "config.json").write_text(
        json.dumps({"model_type": "soundstorm", **asdict(model.config)}, indent=1)
    )


def _record_rank_digest(model: SoundStorm, out: Path, rank: int) -> None:
    """Each rank writes a hash of its weights: DDP keeps them identical (checked by the tests)."""
    import hashlib

    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.sha256").write_text(digest.hexdigest())


def run(config: DataConfig, progress=None) -> dict:
    c = config.soundstorm
    out = config.out_dir / "soundstorm"
    rank, world = ddp_setup()
    torch.set_num_threads(max(1, c.threads))
    torch.manual_seed(config.seed)
    train = TokenShards(config.out_dir / "shards", "train")
    valid = TokenShards(config.out_dir / "shards", "valid")
    device = train_device()
    model = SoundStorm(model_config(config, train.meta)).to(device)
    if c.level_weights is not None:  # a wrong list fails here, not at the first step
        weighted_levels(torch.rand(1), c.level_weights, model.config.levels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.98), weight_decay=c.weight_decay)
    state_path = out / "train_state.pt"
    step, log = load_state(state_path, model, optimizer)
    if step == 0 and c.init_from:
        from soundstorm_cli.models.soundstorm import load_soundstorm

        model.load_state_dict(load_soundstorm(c.init_from).state_dict())
    trained = distributed(model, device, world)
    train_batches = batches(
        ExampleSampler(train, config, np.random.default_rng([config.seed, rank, step])),
        c.frames_per_batch,
        model.config.levels,
    )
    started, window = time.time(), []
    budget = StepBudget(c.steps, c.time_budget_s, c.warmup)
    total = c.steps
    model.train()
    while step < total:
        lr = cosine_lr(step, total, c.lr, c.warmup)

        def micro(batch=None):
            with autocast(c.autocast_bf16):
                return soundstorm_loss(model, batch, forward=trained, level_weights=c.level_weights)[0]

        micro_batches = [to_device(next(train_batches), device) for _ in range(c.accumulate)]
        loss = accumulated_step(
            model,
            optimizer,
            lr,
            [lambda b=b: micro(b) for b in micro_batches],
            trained if world > 1 else None,
        )
        step += 1
        total = budget.update(step, time.time())
        window.append(loss)
        if rank == 0 and (step % c.log_every == 0 or step == total):
            entry = {
                "step": step,
                "loss": round(float(np.mean(window)), 4),
                "lr": round(lr, 6),
                "planned_steps": total,
                "elapsed_s": round(time.time() - started, 1),
            }
            if step % (c.log_every * 4) == 0 or step == total:
                valid_iter = valid_batches(valid, config, model.config.levels)
                entry |= validate(model, valid_iter, c.valid_batches, torch.Generator().manual_seed(0))
            log.append(entry)
            window = []
            print(json.dumps(entry), flush=True)
        if rank == 0 and (step % c.save_every == 0 or step == total):
            save_state(state_path, model, optimizer, step, log)
            save_model(model, out)  # the shipped form too, so an interrupted run leaves usable weights
        if progress:
            progress(step, total)
    if rank == 0:
        save_model(model, out)
    if world > 1:
        _record_rank_digest(model, out, rank)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    last_valid = next((e for e in reversed(log) if "valid_accuracy" in e), {})
    return {
        "steps": step,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "final_loss": log[-1]["loss"] if log else None,
        **last_valid,
        "world_size": world,
    }
