"""The semantic stage with `semantic.kind: learnt`: K codes learnt for what a feature decoder needs.

One k-means codebook over Whisper tiny.en's encoder keeps its geometry, not what a decoder can use of it: a
decoder reading the encoder itself renders held-out utterances at CER 0.24, one reading its 512 k-means
tokens at 0.34, and neither 2048 clusters nor a second residual codebook closes the gap (2026-12-06,
docs/history/2026-12-06.md). Here the tokens are trained for a decoder instead: a small MLP over the
standardised 25 Hz encoder features, the nearest of `semantic.clusters` codes in its output space (codebook
by exponential moving averages of the frames each code wins, straight-through gradient, commitment loss
COMMITMENT, codes no frame wins re-seeded on random frames), and behind it a probe, a feature decoder as the
codec's (`FeatureDecoder`, reading no codec level) that predicts FARGAN's features from the tokens and a
voice (the mean and deviation of FARGAN's features over a 3 s crop of another utterance of the same speaker,
so the tokens need not carry the voice). Trained together for `semantic.learnt_steps` steps by the codec
decoder's loop (`feature_codec.fit_decoder`); the MLP and the codebook then become the tokenizer
(`SemanticTokenizer.projection` and `.centroids`), and the probe is dropped: the codec stage trains its own
decoder on the frozen tokens.

With `semantic.perturb_voice` the MLP reads the encoder's features of a copy of each clip in another voice
(FARGAN re-rendering its features with the pitch moved and the band envelope stretched,
`pipelines/data/perturbed_voices.py`) while
the probe still predicts the clean clip in its own speaker's voice: a token that carried the voice it heard would
mislead the probe, so the tokens keep the words and the voice comes from the voice input, at synthesis the
prompt's, not espeak-ng's guide.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from soundstorm.models.feature_codec import nearest
from soundstorm.models.feature_decoder import FeatureDecoder
from soundstorm.vocoder.fargan import NUM_FEATURES

COMMITMENT = 0.25
DECAY = 0.99  # the codebook's moving averages
RESEED_EVERY = 50  # steps between re-seeding codes that win (almost) no frame
VOICE_FRAMES = 300  # FARGAN frames (10 ms) of the probe's voice crop: 3 s


class LearntQuantizer(nn.Module):
    """Standardised features [B, T, D] -> MLP -> the nearest of `codes` vectors [B, T, width], with a
    straight-through gradient to the MLP; `commitment_loss` holds the last training call's commitment term."""

    def __init__(self, features: int, codes: int, width: int, seed: int = 0):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(features, width), nn.GELU(), nn.Linear(width, width))
        self.register_buffer("book", torch.zeros(codes, width))
        self.register_buffer("count", torch.ones(codes))
        self.register_buffer("sums", torch.zeros(codes, width))
        self.generator = torch.Generator().manual_seed(seed)
        self.commitment_loss = torch.zeros(())
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NaN frames (padding) take part in no codebook update and no commitment term."""
        valid = ~x.isnan().any(-1)
        z = self.mlp(x.nan_to_num()).float()
        if self.training:
            self._update(z.detach(), valid)
        q = self.book[nearest(z.detach().reshape(-1, z.shape[-1]), self.book).reshape(z.shape[:-1])]
        if self.training:
            mask = valid.float()
            err = (z - q).pow(2).mean(-1)
            self.commitment_loss = COMMITMENT * (err * mask).sum() / mask.sum().clamp_min(1)
        return z + (q - z).detach()

    @torch.no_grad()
    def _update(self, z: torch.Tensor, valid: torch.Tensor) -> None:
        flat = z.reshape(-1, z.shape[-1])[valid.reshape(-1)]
        if self.steps == 0:  # start from distinct random frames
            pick = torch.randperm(len(flat), generator=self.generator)[: len(self.book)]
            pick = pick[torch.arange(len(self.book)) % len(pick)]
            self.book.copy_(flat[pick])
            self.sums.copy_(self.book)
        index = nearest(flat, self.book)
        counts = torch.bincount(index, minlength=len(self.book)).float()
        sums = torch.zeros_like(self.book).index_add_(0, index, flat)
        self.count.mul_(DECAY).add_((1 - DECAY) * counts)
        self.sums.mul_(DECAY).add_((1 - DECAY) * sums)
        self.book.copy_(self.sums / self.count.clamp_min(1e-5)[:, None])
        dead = self.count < 0.05
        if self.steps % RESEED_EVERY == 0 and dead.any():
            pick = flat[torch.randint(len(flat), (int(dead.sum()),), generator=self.generator)]
            self.book[dead], self.sums[dead], self.count[dead] = pick, pick, 1.0
        self.steps += 1

    def projection(self) -> dict[str, np.ndarray]:
        first, last = self.mlp[0], self.mlp[2]
        return {
            "w1": first.weight.detach().numpy().copy(),
            "b1": first.bias.detach().numpy().copy(),
            "w2": last.weight.detach().numpy().copy(),
            "b2": last.bias.detach().numpy().copy(),
        }


class Probe(FeatureDecoder):
    """A feature decoder reading learnt tokens (in place of its token embedding), no codec level, and a voice
    of FARGAN feature statistics; its loss carries the quantizer's commitment term (`auxiliary_loss`)."""

    def __init__(self, features: int, codes: int, width: int, seed: int):
        super().__init__(latent=1, voice=2 * NUM_FEATURES, vocab=1, width=width)
        self.semantic = LearntQuantizer(features, codes, width, seed)

    @property
    def auxiliary_loss(self) -> torch.Tensor:
        return self.semantic.commitment_loss


def voice_statistics(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """FARGAN features [N, 20] -> their normalised mean and deviation [40]: the probe's voice."""
    x = (features - mean) / std
    return torch.cat([x.mean(0), x.std(0, unbiased=False)])


def fit_learnt(
    whisper: list[np.ndarray],
    features: list[np.ndarray],
    sources: list[list[int]],
    codes: int,
    width: int,
    steps: int,
    seed: int,
    log_every: int = 200,
):
    """A learnt SemanticTokenizer from 25 Hz Whisper features [T, D] and FARGAN features [~4T, 20] of the same
    clips; `sources[i]`: the clips a voice for clip i is drawn from. Returns (tokenizer, losses, usage)."""
    from pipelines.stages.feature_codec import CROP, fit_decoder
    from soundstorm.chain.semantic import SemanticTokenizer, semantic_to_codec

    stacked = np.concatenate(whisper)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-5
    torch.manual_seed(seed)
    probe = Probe(stacked.shape[1], codes, width, seed)
    fargan = [torch.from_numpy(np.asarray(f, dtype=np.float32)) for f in features]
    every = torch.cat(fargan)
    probe.mean.copy_(every.mean(0))
    probe.std.copy_(every.std(0).clamp_min(1e-3))
    inputs = [torch.from_numpy(((w - mean) / std).astype(np.float32)) for w in whisper]
    zero = torch.zeros(CROP, 1)

    def crop(rng):
        k = int(rng.integers(len(inputs)))
        frames = min(len(fargan[k]) // 2, 2 * len(inputs[k]))  # codec-rate frames (20 ms)
        lo, n = int(rng.integers(max(1, frames - CROP))), min(CROP, frames)
        first = lo // 2  # the 25 Hz frames under the crop, repeated to the codec rate
        sem = semantic_to_codec(inputs[k][first : (lo + n + 1) // 2].T, 2).T[lo - 2 * first :][:n]
        src = fargan[sources[k][int(rng.integers(len(sources[k])))]]
        start = int(rng.integers(max(1, len(src) - VOICE_FRAMES)))
        voice = voice_statistics(src[start : start + VOICE_FRAMES], probe.mean, probe.std)
        return zero[:n], sem, fargan[k][2 * lo : 2 * (lo + n)], voice

    losses = fit_decoder(probe, crop, steps, seed, lr=1e-3, warmup=200, log_every=log_every)
    quantizer = probe.semantic.eval()
    tokenizer = SemanticTokenizer(
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
        centroids=quantizer.book.numpy().copy(),
        projection=quantizer.projection(),
    )
    used = np.concatenate([tokenizer.assign(w) for w in whisper[:: max(1, len(whisper) // 500)]])
    p = np.bincount(used, minlength=codes) / len(used)
    usage = {
        "codes_used": int((p > 0).sum()),
        "perplexity": round(float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())), 1),
    }
    return tokenizer, losses, usage
