"""SoundStorm (Borsos et al. 2023): a masked, bidirectional model of a codec's RVQ tokens.

Per frame, the embeddings of the Q codec levels (each table with its own mask
id), of the semantic token at the codec's frame rate and of the speaker track
are summed; a Conformer reads the sequence; Q heads give each level's logits.
`soundstorm_mask` is the paper's training mask (section 3.2), a pure function;
decoding lives apart, in `soundstorm/chain/decoding.py`.

Shapes: B batch, T codec frames, Q levels, K codebook size, D width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundstorm.models.conformer import Conformer


@dataclass
class SoundStormConfig:
    levels: int = 8
    codebook_size: int = 1024
    semantic_vocab: int = 512
    semantic_ratio: int = 2  # codec frames per semantic frame (50 Hz / 25 Hz)
    max_speakers: int = 8  # speaker track values: 0 = none, 1..max_speakers
    dim: int = 256
    layers: int = 6
    heads: int = 4
    conv_kernel: int = 15
    ff_mult: int = 4
    dropout: float = 0.1
    attention_dropout: float | None = None  # on the attention weights; None: `dropout` (see Conformer)
    window: int = 1000  # frames of the longest training example; longer inputs decode in windows

    @property
    def mask_id(self) -> int:
        """Each level's table has K codes plus this mask id."""
        return self.codebook_size

    @property
    def semantic_pad_id(self) -> int:
        return self.semantic_vocab


class SoundStorm(nn.Module):
    def __init__(self, config: SoundStormConfig):
        super().__init__()
        self.config = c = config
        self.code_embeddings = nn.ModuleList(
            nn.Embedding(c.codebook_size + 1, c.dim) for _ in range(c.levels)
        )
        self.semantic_embedding = nn.Embedding(c.semantic_vocab + 1, c.dim)
        self.speaker_embedding = nn.Embedding(c.max_speakers + 1, c.dim)
        self.conformer = Conformer(
            c.dim, c.layers, c.heads, c.conv_kernel, c.ff_mult, c.dropout, c.attention_dropout
        )
        self.heads = nn.Parameter(
            torch.randn(c.levels, c.dim, c.codebook_size) / math.sqrt(c.dim)
        )  # Q output heads
        self.head_bias = nn.Parameter(torch.zeros(c.levels, c.codebook_size))

    def hidden(self, codes, semantic, speakers, key_mask=None):
        """codes [B, Q, T] (mask id where masked), semantic [B, T], speakers [B, T] -> [B, T, D]."""
        x = self.semantic_embedding(semantic) + self.speaker_embedding(speakers)  # [B, T, D]
        for q, table in enumerate(self.code_embeddings):
            x = x + table(codes[:, q])
        return self.conformer(x, key_mask)

    def level_logits(self, hidden, level):
        """Logits [B, T, K] of one level per item: `level` an int or a LongTensor [B]."""
        if isinstance(level, int):
            return hidden @ self.heads[level] + self.head_bias[level]
        weight, bias = self.heads[level], self.head_bias[level]  # [B, D, K], [B, K]
        return torch.bmm(hidden, weight) + bias[:, None, :]

    def forward(self, codes, semantic, speakers, level, key_mask=None):
        return self.level_logits(self.hidden(codes, semantic, speakers, key_mask), level)


@dataclass
class TrainingMask:
    """What `soundstorm_mask` drew for a batch."""

    codes: torch.Tensor  # [B, Q, T] input codes, mask id where masked
    loss_mask: torch.Tensor  # [B, T] True where level q is masked: the loss covers these only
    level: torch.Tensor  # [B] the level q (0-based) of each item
    prompt_end: torch.Tensor  # [B] frames before this are never masked
    ratio: torch.Tensor  # [B] p = cos(u)


def soundstorm_mask(
    codes,
    lengths,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> TrainingMask:
    """The paper's training mask (section 3.2), drawn per item.

    Prompt end t ~ U{0..T-1} (T the item's length): frames before t are never
    masked. Level q ~ U{1..Q}. Ratio p = cos(u), u ~ U[0, pi/2]: each frame from
    t on is masked at level q with probability p (at least one frame); every
    level finer than q is masked from t on; coarser levels are given. The loss
    covers the masked tokens of level q only.
    """
    B, Q, T = codes.shape
    device = codes.device
    lengths = torch.as_tensor(lengths, device=device)
    frames = torch.arange(T, device=device)[None]  # [1, T]
    valid = frames < lengths[:, None]  # [B, T]
    rand = lambda *shape: torch.rand(*shape, generator=generator, device="cpu").to(device)  # noqa: E731
    prompt_end = (rand(B) * lengths.cpu().to(device)).long().clamp(max=lengths - 1)  # U{0..T-1}
    level = (rand(B) * Q).long().clamp(max=Q - 1)  # U{0..Q-1}, i.e. q in 1..Q
    ratio = torch.cos(rand(B) * math.pi / 2)
    target = valid & (frames >= prompt_end[:, None])  # [B, T] frames that may be masked
    chosen = target & (rand(B, T) < ratio[:, None])
    # At least one masked frame per item: if the draw chose none, mask one random target frame.
    none = ~chosen.any(dim=1)
    if none.any():
        scores = rand(B, T).masked_fill(~target, -1.0)
        pick = F.one_hot(scores.argmax(dim=1), T).bool()
        chosen = torch.where(none[:, None], pick, chosen)
    levels = torch.arange(Q, device=device)[None, :, None]  # [1, Q, 1]
    finer = (levels > level[:, None, None]) & target[:, None, :]  # [B, Q, T]
    at_q = (levels == level[:, None, None]) & chosen[:, None, :]
    masked = codes.masked_fill(finer | at_q, mask_id)
    return TrainingMask(codes=masked, loss_mask=chosen, level=level, prompt_end=prompt_end, ratio=ratio)


def level_targets(codes, level):
    """The true codes of each item's level q: codes [B, Q, T], level [B] -> [B, T]."""
    return codes.gather(1, level[:, None, None].expand(-1, 1, codes.shape[-1]))[:, 0]


def soundstorm_loss(
    model: SoundStorm,
    batch: dict,
    generator: torch.Generator | None = None,
    forward=None,
):
    """Cross-entropy on the masked tokens of level q only; returns (loss, mask, logits).

    `forward` runs the network instead of `model` itself (a DDP wrapper of it, in training).
    """
    drawn = soundstorm_mask(batch["codes"], batch["lengths"], model.config.mask_id, generator)
    key_mask = (
        torch.arange(batch["codes"].shape[-1], device=batch["codes"].device)[None] < batch["lengths"][:, None]
    )
    logits = (forward or model)(
        drawn.codes, batch["semantic"], batch["speakers"], drawn.level, key_mask
    )  # [B, T, K]
    targets = level_targets(batch["codes"], drawn.level)  # [B, T]
    loss = F.cross_entropy(logits[drawn.loss_mask].float(), targets[drawn.loss_mask])
    return loss, drawn, logits


def load_soundstorm(folder, device: str = "cpu") -> SoundStorm:
    """Build from `config.json`, load `model.safetensors` (never pickle), in fp32, eval mode."""
    from soundstorm.bundles.checkpoints import load_model_folder

    return load_model_folder(folder, lambda raw: SoundStorm(SoundStormConfig(**raw)), "SoundStorm", device)
