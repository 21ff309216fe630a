"""Examples and batches of the acoustic stages (SoundStorm and the AR baseline), from the token shards.

- a single utterance, with probability `prompt_probability` preceded by a 2-4 s clip of another
  utterance of the same speaker (the voice prompt of inference);
- a two-speaker dialogue, always preceded by one such clip per speaker, the speaker track tagging every
  frame (prompts included) with its speaker, so that a turn learns to take the voice of its speaker's
  prompt (paper section 5.2).

Windows are cut to `soundstorm.max_seconds`; batches fill a padded-frame budget from length-sorted
candidates (bucketing). Shapes: codes [Q, T] per example, [B, Q, T] per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from pipelines.config import DataConfig
from pipelines.stages.shards import TokenShards
from soundstorm.chain.semantic import semantic_to_codec


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


@dataclass
class TokenModel:
    """What differs between the two models trained on the token shards (SoundStorm, the AR baseline);
    `train_token_model` does the rest the same way for both."""

    name: str  # its folder under out_dir and its config's model_type
    build: Callable[[dict], torch.nn.Module]  # the shards' meta -> a fresh model
    # (model, what runs it: the model or its DDP wrapper, batch) -> loss
    loss: Callable[[torch.nn.Module, torch.nn.Module, dict], torch.Tensor]
    validate: Callable[[torch.nn.Module, object], dict]  # (model, validation batches) -> figures
    threads: int
    frames_per_batch: int
    valid_frames_per_batch: int | None = None  # None: soundstorm.valid_frames_per_batch
    rng_salt: tuple = ()  # keeps the two models' example streams apart
    schedule: dict = field(default_factory=dict)  # overrides of the `soundstorm:` section's schedule
    prepare: Callable[[torch.nn.Module, int], None] | None = None  # (model, resumed step), before DDP


def train_token_model(config: DataConfig, spec: TokenModel, progress=None) -> dict:
    """Train `spec`'s model on the token shards with the `soundstorm:` section's optimizer and schedule."""
    from pipelines import training

    c = config.soundstorm
    out = config.out_dir / spec.name
    rank, world, device = training.start(spec.threads, config.seed)
    train_split, valid = (TokenShards(config.out_dir / "shards", split) for split in ("train", "valid"))
    model = spec.build(train_split.meta).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.98), weight_decay=c.weight_decay)
    step, log = training.resume(out, model, optimizer)
    if spec.prepare is not None:
        spec.prepare(model, step)
    trained = training.distributed(model, device, world)
    sampler = ExampleSampler(
        train_split, config, np.random.default_rng([config.seed, rank, step, *spec.rng_salt])
    )
    levels = model.config.levels

    def loss(batch):
        with training.autocast(c.autocast_bf16):
            return spec.loss(model, trained, batch)

    stage = training.Stage(
        model=model,
        optimizer=optimizer,
        out=out,
        batches=batches(sampler, spec.frames_per_batch, levels),
        loss=loss,
        save=lambda: training.save_bf16(model, out, spec.name),
        validate=lambda: spec.validate(
            model, valid_batches(valid, config, levels, spec.valid_frames_per_batch)
        ),
        **training.schedule(c, **spec.schedule),
        **training.placement(device, trained, rank, world),
    )
    return training.run_stage(stage, step, log, progress)
