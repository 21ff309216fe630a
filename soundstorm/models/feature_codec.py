"""A codec on FARGAN's features: residual VQ over LPCNet features at 50 Hz, rendered by the pretrained vocoder.

Nothing here learns a waveform. Each 20 ms codec frame is two of FARGAN's 10 ms feature frames (18 cepstral
coefficients, the pitch code, the pitch correlation: 40 numbers), normalised by the training set's mean and
deviation, each dimension weighted (`weights`: how much its error counts in the quantiser's distance), then
quantised by `levels` residual codebooks of `codebook_size` vectors, fitted by k-means, level after level, on
the residuals of the levels before (`pipelines/stages/feature_codec.py`). Decoding sums the codebook vectors, undoes the
weighting and normalisation, and FARGAN renders the features. Encoding is FARGAN's own feature analysis
followed by nearest-vector search, so the codes of a sound do not depend on any trained network.

With `semantic_vocab` > 0 the codec also holds a decoder (`feature_decoder.FeatureDecoder`, no voice input)
that reads the sum of the first levels' vectors and the codec-rate semantic tokens and predicts the
features, trained by the same stage on the codes of `decoder_levels` levels: from 4 levels it reads nearly as
clearly as the plain sum of 8 (CER 0.082 against 0.069, docs/history/2026-12-06.md). Decoding then needs the semantic tokens.

Shapes: T codec frames, Q levels, K codes, D = 2 x 20 numbers a frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from soundstorm.models.feature_decoder import FeatureDecoder, clamp_features
from soundstorm.vocoder.fargan import CORRELATION, NUM_FEATURES

STACK = 2  # FARGAN frames per codec frame
PROMPT_FRAMES = 64  # voice_stats "frames": the prompt frames the decoder attends to
# the voice vector's kinds and their sizes, in frame dimensions D
VOICE_STATS = {"moments": 2, "voiced": 3, "frames": 3 + PROMPT_FRAMES}
WITH_VOICED_MEAN = ("voiced", "frames")  # the kinds whose vector starts with the voiced mean (`match_voice`)
VOICED = 0.2  # a codec frame whose mean pitch correlation is above this counts as voiced
MIN_VOICED = 8  # voice_stats "frames": with fewer voiced prompt frames, the frames are drawn from all of them


@dataclass
class FeatureCodecConfig:
    sample_rate: int = 16000
    hop_length: int = 320  # 50 Hz frames at 16 kHz: two of FARGAN's 10 ms frames
    levels: int = 8
    codebook_size: int = 1024
    # > 0: a decoder over the levels' vectors and the semantic tokens (a vocabulary of this size) renders
    # the features, `decoder_width` x `decoder_depth`, trained on the first `decoder_levels` levels; with
    # `decoder_levels` 1 it also renders level 1's distribution (its expected vector): posterior decoding;
    # with 0 it reads no level at all (the semantic tokens and the voice only): the control that says what
    # SoundStorm's codes add (docs/history/2026-12-06.md, "Night of 2026-12-06")
    semantic_vocab: int = 0
    decoder_levels: int = 4
    # the decoder also reads a voice vector (`FeatureCodec.voice_vector` of a prompt's codes): the voice of
    # what it renders can come from the prompt, where level 1 alone carries little of it
    voice: bool = False
    # what the voice vector holds: "moments", the mean and deviation of the prompt's frames (2D numbers); or
    # "voiced", the mean and deviation of its voiced frames and the mean of the others (3D): a pause or a
    # fricative then does not blur the vowels' spectrum, where most of a voice is; "frames", the same and
    # PROMPT_FRAMES of the prompt's voiced frames themselves, evenly spaced, which the decoder attends to
    # (`feature_decoder.PromptAttention`): each sound can follow the prompt's own rendering of a like one
    voice_stats: str = "moments"
    # with voice_stats "voiced" or "frames": after the decoder, move the mean of the rendered voiced frames this
    # share of the way to the prompt's (`match_voice`); 0 leaves the decoder's output as it is
    voice_match: float = 0.0
    decoder_width: int = 256
    decoder_depth: int = 8
    model_type: str = "soundstorm-feature-codec"

    @property
    def dim(self) -> int:
        return STACK * NUM_FEATURES

    def to_dict(self) -> dict:
        return asdict(self)


def nearest(x: torch.Tensor, book: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index of the nearest row of `book` [K, D] for each row of `x` [N, D]."""
    norms = book.pow(2).sum(1)
    return torch.cat(
        [(norms[None] - 2 * x[i : i + chunk] @ book.t()).argmin(1) for i in range(0, len(x), chunk)]
    ) if len(x) else torch.zeros(0, dtype=torch.long)


class FeatureCodec(nn.Module):
    """FARGAN features [2T, 20] <-> codes [Q, T]. All state is in buffers (nothing here trains by gradient)."""

    def __init__(self, config: FeatureCodecConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.register_buffer("weights", torch.ones(d))
        self.register_buffer("codebooks", torch.zeros(config.levels, config.codebook_size, d))
        self.decoder = None
        if config.semantic_vocab:
            if config.voice_stats not in VOICE_STATS:
                raise ValueError(f"voice_stats: one of {', '.join(VOICE_STATS)}, got {config.voice_stats!r}")
            if not 0.0 <= config.voice_match <= 1.0:
                raise ValueError(f"voice_match: a share in [0, 1], got {config.voice_match!r}")
            if config.voice_match and not (config.voice and config.voice_stats in WITH_VOICED_MEAN):
                raise ValueError(
                    "voice_match needs a decoder reading the voiced voice vector (voice_stats: voiced or frames)"
                )
            frames = PROMPT_FRAMES if config.voice and config.voice_stats == "frames" else 0
            voice = (VOICE_STATS[config.voice_stats] - frames) * d if config.voice else 0
            self.decoder = FeatureDecoder(
                d, voice, config.semantic_vocab, config.decoder_width, config.decoder_depth, frames, d
            )

    def to_space(self, features: torch.Tensor) -> torch.Tensor:
        """[2T, 20] -> the quantiser's space [T, D] (an odd last frame dropped)."""
        frames = features.shape[0] // STACK
        x = features[: frames * STACK].reshape(frames, self.config.dim).float()
        return (x - self.mean) / self.std * self.weights

    def from_space(self, z: torch.Tensor) -> torch.Tensor:
        """[..., T, D] -> features [..., 2T, 20] in FARGAN's units, clamped to its limits."""
        x = z / self.weights * self.std + self.mean
        return clamp_features(x.reshape(*x.shape[:-2], x.shape[-2] * STACK, NUM_FEATURES))

    def quantize(self, features: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Features [2T, 20] -> codes [Q, T]: each level's nearest vector to what the levels before left."""
        residual = self.to_space(features)
        codes = []
        for book in self.codebooks[: levels or self.config.levels]:
            index = nearest(residual, book)
            residual = residual - book[index]
            codes.append(index)
        return torch.stack(codes)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [..., Q, T] -> the sum of their codebook vectors [..., T, D]."""
        q = codes.shape[-2]
        vectors = [nn.functional.embedding(codes[..., i, :], self.codebooks[i]) for i in range(q)]
        return torch.stack(vectors).sum(0)

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """Distributions over each level's codes [..., Q, T, K] -> the expected sum of vectors [..., T, D]."""
        q = probs.shape[-3]
        return torch.einsum("...qtk,qkd->...td", probs.float(), self.codebooks[:q])

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [..., Q, T] -> features [..., 2T, 20]."""
        return self.from_space(self.embed(codes))

    @property
    def reads_voice(self) -> bool:
        return self.decoder is not None and self.config.voice

    def voice_vector(self, codes: torch.Tensor) -> torch.Tensor:
        """A prompt's codes [B, Q, P] -> its voice [B, 2D]: the mean and deviation over its frames of the sum of
        its levels' vectors (the quantiser's space); with `voice_stats` "voiced", [B, 3D] (below); with "frames",
        [B, (3 + PROMPT_FRAMES) x D], the voiced vector and the frames the decoder attends to (`prompt_frames`)."""
        x = self.embed(codes)
        if self.config.voice_stats == "moments":
            return torch.cat([x.mean(-2), x.std(-2, unbiased=False)], dim=-1)
        # "voiced": [B, 3D], the voiced frames' mean and deviation and the other frames' mean (a set without a
        # frame takes the whole prompt's mean, and deviation)
        voiced = self._voiced(x).float()[..., None]  # [B, P, 1]

        def moments(weight):
            count = weight.sum(-2)
            mean = (x * weight).sum(-2) / count.clamp_min(1)
            std = (((x - mean[..., None, :]) ** 2 * weight).sum(-2) / count.clamp_min(1)).sqrt()
            empty = count < 1
            return (
                torch.where(empty, x.mean(-2), mean),
                torch.where(empty, x.std(-2, unbiased=False), std),
            )

        mean_v, std_v = moments(voiced)
        stats = torch.cat([mean_v, std_v, moments(1 - voiced)[0]], dim=-1)
        if self.config.voice_stats == "frames":
            return torch.cat([stats, self.prompt_frames(x, voiced[..., 0] > 0).flatten(-2)], dim=-1)
        return stats

    @staticmethod
    def prompt_frames(x: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        """A prompt's frames [B, P, D] and which are voiced [B, P] -> PROMPT_FRAMES of its voiced frames, evenly
        spaced (repeated where it has fewer) [B, PROMPT_FRAMES, D]; a prompt with fewer than MIN_VOICED voiced
        frames gives its frames of any kind."""
        out = []
        for row, mask in zip(x, voiced, strict=True):
            pool = row[mask] if int(mask.sum()) >= MIN_VOICED else row
            index = torch.linspace(0, len(pool) - 1, PROMPT_FRAMES).round().long()
            out.append(pool[index])
        return torch.stack(out)

    def _voiced(self, z: torch.Tensor) -> torch.Tensor:
        """Frames [..., T, D] in the quantiser's space -> whether each is voiced [..., T] (bool)."""
        correlation = self.from_space(z)[..., CORRELATION].reshape(*z.shape[:-1], STACK).mean(-1)
        return correlation > VOICED

    def match_voice(self, features: torch.Tensor, voice: torch.Tensor) -> torch.Tensor:
        """Rendered features [B, 2T, 20] and the voice the decoder read ([B, V], or [B, T, V] for a frame's own,
        as in a dialogue) -> features whose voiced frames of each voice moved `voice_match` of the way from their
        mean to the voice vector's voiced mean (`voice_stats` "voiced" or "frames"). Where the decoder leans to the
        voices it was trained on, this takes the average spectrum and pitch of the render's vowels to the prompt's;
        what changes from frame to frame, and the pauses and unvoiced sounds, are left as they are."""
        share = self.config.voice_match
        frames = features.shape[-2] // STACK
        if not share or frames == 0:
            return features
        d = self.config.dim
        x = features[..., : frames * STACK, :].reshape(features.shape[0], frames, d).float()
        z = (x - self.mean) / self.std * self.weights
        if voice.dim() == 2:
            voice = voice[:, None].expand(-1, frames, -1)
        voice = voice[:, :frames].float()
        voiced = self._voiced(z)
        out = z.clone()
        for b in range(z.shape[0]):
            _, group = torch.unique(voice[b], dim=0, return_inverse=True)
            for g in group.unique():
                rows = (group == g) & voiced[b]
                if rows.any():
                    out[b, rows] += share * (voice[b][group == g][0][:d] - z[b, rows].mean(0))
        matched = self.from_space(out)
        return torch.cat([matched, features[..., frames * STACK :, :]], dim=-2)

    def _render(self, latent, semantic, voice, codes=None) -> torch.Tensor:
        """The decoder's features, matched to `voice` where one was given (`match_voice`; the codes' own voice,
        read where none was, has nothing to match)."""
        features = self.decoder.render(self.decoder_input(latent), semantic, self._voice(voice, codes))
        return features if voice is None or not self.reads_voice else self.match_voice(features, voice)

    def _voice(self, voice: torch.Tensor | None, codes: torch.Tensor | None = None) -> torch.Tensor | None:
        if not self.reads_voice:
            return None
        if voice is None:
            if codes is None:
                raise ValueError("this feature codec's decoder reads a voice vector: pass voice=")
            return self.voice_vector(codes)  # the codes' own
        return voice

    def decode(
        self, codes: torch.Tensor, semantic: torch.Tensor | None = None, voice: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Codes [B, Q, T] (and codec-rate semantic tokens [B, T], for a codec with a decoder; a voice [B, V] or
        [B, T, V] where it reads one, by default the codes' own) -> features [B, 2T, 20]: the decoder's where
        the codec has one, else the sum of the vectors."""
        if self.decoder is None:
            return self.dequantize(codes)
        if semantic is None:
            raise ValueError("this feature codec's decoder reads the semantic tokens")
        return self._render(self.embed(codes), semantic, voice, codes)

    def decoder_input(self, latent: torch.Tensor) -> torch.Tensor:
        """What the decoder reads of the levels' vectors [..., T, D]: nothing (zeros) with `decoder_levels` 0."""
        return latent if self.config.decoder_levels else torch.zeros_like(latent)

    @property
    def renders_posterior(self) -> bool:
        """Whether level 1's distribution is all its decoder reads (`decoder_levels` 1; with 0 it reads none, so
        any distribution renders the same)."""
        return self.decoder is not None and self.config.decoder_levels <= 1

    def decode_posterior(
        self, probs: torch.Tensor, semantic: torch.Tensor, voice: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Level 1's distributions [B, T, K] and codec-rate semantic tokens [B, T] (and the prompt's voice
        [B, V] or [B, T, V], where the decoder reads one) -> features [B, 2T, 20]: the decoder reading the
        expected level-1 vector."""
        if not self.renders_posterior:
            raise ValueError("this feature codec's decoder reads more than level 1")
        return self._render(self.expected(probs[..., None, :, :]), semantic, voice)
