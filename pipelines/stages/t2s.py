"""Train the text-to-semantic T5: `python -m pipelines t2s --config pipelines/configs/tiny.yaml`.

Teacher forcing on the token shards:

- a single utterance, mostly preceded by another utterance of the same speaker as
  prompt: encoder `[prompt text] <sep> [text]`, decoder `[prompt semantic] [semantic] end`,
  the loss on what follows the prompt only (at inference the prompt is forced);
- a two-speaker dialogue: encoder `<spk1> turn <spk2> turn ...`, decoder
  `turn [semantic of turn 1] turn [semantic of turn 2] ... end`, each `turn` where its
  turn starts in time.

Runs on one CPU or under torchrun (DDP); resumable `train_state.pt` read with
`weights_only=True`; the shipped form is the Hugging Face folder (`save_pretrained`,
safetensors) plus `t2s.json` (the T2SConfig).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from pipelines import training
from pipelines.config import DataConfig
from pipelines.stages.shards import TokenShards
from soundstorm.chain.phonemes import load_text_tokenizer
from soundstorm.chain.text import SEPARATOR
from soundstorm.models.t2s import END, FIRST_SEMANTIC, T2S, TURN, T2SConfig, with_positions

IGNORE = -100


class T2SExamples:
    def __init__(
        self,
        shards: TokenShards,
        t2s_config: T2SConfig,
        sep_id: int,
        rng: np.random.Generator,
        prompt_probability: float,
        max_target: int,
    ):
        self.shards, self.c, self.sep, self.rng = shards, t2s_config, sep_id, rng
        self.prompt_probability, self.max_target = prompt_probability, max_target

    def _text(self, pieces) -> list[int]:
        return [self.c.text_offset + int(p) for p in pieces]

    def _semantic(self, tokens) -> list[int]:
        return [FIRST_SEMANTIC + int(t) for t in tokens]

    def example(self) -> tuple[list[int], list[int], list[int]]:
        """(encoder ids, labels with IGNORE on the forced prompt, decoder tokens prompt included)."""
        i = int(self.rng.integers(len(self.shards)))
        item = self.shards[i]
        if item["kind"] == "dialogue":
            target, sem = [], item["semantic_tokens"]
            starts = [t["start"] // self.shards.ratio for t in item["turns"]] + [
                len(sem)
            ]  # codec -> semantic frames
            for a, b in zip(starts, starts[1:], strict=False):
                target += [TURN, *self._semantic(sem[a:b])]
            target = (target + [END])[: self.max_target]
            return self._text(item["text_tokens"]) + [END], target, target
        enc, labels = [], []
        others = [j for j in self.shards.singles_by_speaker.get(item["speakers"][0], []) if j != i]
        if others and self.rng.random() < self.prompt_probability:
            prompt = self.shards[int(self.rng.choice(others))]
            enc = self._text(prompt["text_tokens"]) + [self.c.text_offset + self.sep]
            labels = [IGNORE] * len(prompt["semantic_tokens"])
            prompt_semantic = self._semantic(prompt["semantic_tokens"])
        else:
            prompt_semantic = []
        target = self._semantic(item["semantic_tokens"]) + [END]
        enc += self._text(item["text_tokens"]) + [END]
        # labels carry the prompt's tokens as IGNORE; decoder inputs are built from `full`
        full = prompt_semantic + target
        return enc, (labels + target)[: self.max_target], full[: self.max_target]


def collate(examples) -> dict:
    enc_len = max(len(e[0]) for e in examples)
    dec_len = max(len(e[1]) for e in examples)
    B = len(examples)
    input_ids = torch.zeros(B, enc_len, dtype=torch.long)
    attention = torch.zeros(B, enc_len, dtype=torch.long)
    labels = torch.full((B, dec_len), IGNORE, dtype=torch.long)
    decoder_inputs = torch.zeros(B, dec_len, dtype=torch.long)  # PAD = decoder start
    for b, example in enumerate(examples):
        enc, lab, full = example
        input_ids[b, : len(enc)] = torch.tensor(enc)
        attention[b, : len(enc)] = 1
        labels[b, : len(lab)] = torch.tensor(lab)
        shifted = [0] + list(full[:-1])  # teacher forcing: the decoder sees the prompt too
        decoder_inputs[b, : len(shifted)] = torch.tensor(shifted)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "decoder_input_ids": decoder_inputs,
    }


def diagonal_penalty(enc_lengths, dec_lengths, enc_len: int, dec_len: int, sigma: float):
    """Guided attention's weights [B, dec_len, enc_len]: 1 - exp(-(n/N - t/T)^2 / 2 sigma^2) inside each
    item's lengths (N text positions, T decoder positions), 0 outside (padding costs nothing)."""
    n = torch.arange(enc_len, device=enc_lengths.device)[None, :] / enc_lengths[:, None].clamp(min=1)
    t = torch.arange(dec_len, device=dec_lengths.device)[None, :] / dec_lengths[:, None].clamp(min=1)
    weights = 1 - torch.exp(-((n[:, None, :] - t[:, :, None]) ** 2) / (2 * sigma**2))
    inside = (n[:, None, :] < 1) & (t[:, :, None] < 1)
    return weights * inside


def guided_attention_loss(cross_attentions, batch: dict, sigma: float, heads: int | None) -> torch.Tensor:
    """The mean cross-attention mass off the diagonal (`diagonal_penalty`) over the first `heads` heads of
    every decoder layer, per real decoder position. The decoder's real positions are its start token and
    every non-pad token after it (semantic and control tokens are never 0)."""
    enc_lengths = batch["attention_mask"].sum(1).float()
    dec_lengths = (batch["decoder_input_ids"] != 0).sum(1).float() + 1
    first = cross_attentions[0]
    weights = diagonal_penalty(enc_lengths, dec_lengths, first.shape[-1], first.shape[-2], sigma)
    total = sum((a[:, :heads].float() * weights[:, None]).sum() for a in cross_attentions)
    used = first[:, :heads].shape[1] * len(cross_attentions)
    return total / (dec_lengths.sum() * used)


@torch.no_grad()
def validate(model, examples: T2SExamples, batch_size: int, count: int, device) -> float:
    """Teacher-forced loss on `count` batches of the valid split (the same batches each time:
    `examples` is rebuilt with a fixed seed by the caller)."""
    was_training = model.training
    model.eval()
    losses = []
    for _ in range(count):
        batch = training.to_device(collate([examples.example() for _ in range(batch_size)]), device)
        if examples.c.absolute_positions:
            batch = with_positions(model, batch)
        losses.append(float(model(**batch).loss))
    model.train(was_training)
    return round(float(np.mean(losses)), 4)


def valid_examples(
    config: DataConfig, t2s_config: T2SConfig, sep_id: int, shards: TokenShards | None = None
) -> T2SExamples:
    """The valid split's examples, drawn with a fixed seed (the same every call)."""
    c = config.t2s
    return T2SExamples(
        shards or TokenShards(config.out_dir / "shards", "valid"),
        t2s_config,
        sep_id,
        np.random.default_rng([config.seed, 99]),
        c.prompt_probability,
        c.max_target,
    )


def length_guards(shards: TokenShards, floor_share: float = 0.5, cap_share: float = 2.0) -> dict:
    """The T5's floor and cap on length (`T2SConfig.min_frames_per_piece`, `max_frames_per_piece`) fitted
    to how many semantic frames a text piece takes in the training singles: half the 1st percentile and
    twice the 99th. The defaults (2 and 12) were measured on SentencePiece pieces (4-6 frames a piece); a
    phoneme takes about 1.5, so their floor of 2 would keep almost every sentence talking past its end.
    {} when there are no singles (the defaults stay)."""
    ratios = [
        row["semantic"][1] / row["text_ids"][1]
        for row in shards.items
        if row["kind"] == "single" and row["text_ids"][1] > 0
    ]
    if not ratios:
        return {}
    low, high = np.percentile(ratios, [1, 99])
    return {
        "min_frames_per_piece": round(float(floor_share * low), 3),
        "max_frames_per_piece": round(float(cap_share * high), 3),
    }


def save_shipped(model, t2s_config: T2SConfig, out) -> None:
    """The Hugging Face folder (safetensors) and t2s.json."""
    model.save_pretrained(out, safe_serialization=True)
    (out / "t2s.json").write_text(json.dumps(t2s_config.to_dict(), indent=1))


def start_from(model, folder: Path) -> None:
    """`t2s.init_from`: the weights of the T2S folder `folder` into `model`, which must have its sizes."""
    from soundstorm.base.errors import SoundstormError
    from soundstorm.models.t2s import load_t2s

    try:
        state = load_t2s(folder).model.state_dict()
        model.load_state_dict(state)
    except (SoundstormError, RuntimeError) as exc:
        raise SystemExit(f"error: t2s.init_from: {folder}: {str(exc).splitlines()[0]}") from exc


def run(config: DataConfig, progress=None) -> dict:
    c, x = config.t2s, config.experimental
    if c.model.absolute_positions:
        raise ValueError("t2s.absolute_positions is experimental: set experimental.t5_absolute_positions")
    out = config.out_dir / "t2s"
    rank, world = training.ddp_setup()
    torch.set_num_threads(max(1, c.threads))
    tokenizer = load_text_tokenizer(config.out_dir / "text_tokenizer")
    train_shards = TokenShards(config.out_dir / "shards", "train")
    t2s_config = dataclasses.replace(
        c.model,
        text_vocab=tokenizer.vocab_size,
        semantic_vocab=config.semantic.clusters,
        absolute_positions=x.t5_absolute_positions,
        **(length_guards(train_shards) if c.fit_length_guards else {}),
    )
    t2s = T2S.random_init(t2s_config, seed=config.seed)
    if c.init_from:  # a trained T5 of the same sizes (a resumed run's own state replaces it below)
        start_from(t2s.model, Path(c.init_from))
    if x.t5_guided_attention:  # the penalty reads the cross-attention's weights: the eager kernel returns them
        t2s.model.set_attn_implementation("eager")
    device = training.train_device()
    model = t2s.model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=0.01)
    step, log = training.resume(out, model, optimizer)
    trained = training.distributed(model, device, world)
    examples = T2SExamples(
        train_shards,
        t2s_config,
        tokenizer.control_ids[SEPARATOR],
        np.random.default_rng([config.seed, rank, step]),
        c.prompt_probability,
        c.max_target,
    )
    valid = TokenShards(config.out_dir / "shards", "valid")

    def loss(batch):
        with training.autocast(c.autocast_bf16):
            guided_batch = batch
            if t2s_config.absolute_positions:
                batch = with_positions(model, batch)
            if not x.t5_guided_attention:
                return trained(**batch).loss
            out = trained(**batch, output_attentions=True)
            guided = guided_attention_loss(out.cross_attentions, guided_batch, x.t5_guided_sigma, x.t5_guided_heads)
            return out.loss + x.t5_guided_attention * guided

    def batches():
        while True:
            yield collate([examples.example() for _ in range(c.batch_size)])

    def validation() -> dict:
        sep = tokenizer.control_ids[SEPARATOR]
        batches_iter = valid_examples(config, t2s_config, sep, valid)
        return {"valid_loss": validate(model, batches_iter, c.batch_size, c.valid_batches, device)}

    stage = training.Stage(
        model=model,
        optimizer=optimizer,
        out=out,
        batches=batches(),
        loss=loss,
        save=lambda: save_shipped(model, t2s_config, out),
        validate=validation,
        **training.schedule(c),
        **training.placement(device, trained, rank, world),
    )
    return training.run_stage(stage, step, log, progress)
