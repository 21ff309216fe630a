"""The feature decoder: a codec's latents -> FARGAN's features, which the pretrained vocoder renders.

A codec whose `renderer` is "fargan" (`frame_codec.py`) does not learn a waveform: this small network
reads what a waveform decoder would (the expected level-1 latent, the codec-rate semantic tokens, the
prompt's voice vector) and predicts the 100 Hz LPCNet features FARGAN reads (18 cepstral coefficients,
the pitch period, the pitch correlation), two 10 ms frames per 20 ms codec frame. A predicted mean of
features is still speech, where a predicted mean of waveforms is babble. Trained by
`pipelines/stages/feature_decoder.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from soundstorm.vocoder.fargan import CEPSTRUM, CORRELATION, LIMITS, NUM_FEATURES, PITCH

FRAMES_PER_CODEC_FRAME = 2  # FARGAN's 10 ms frames in a 20 ms codec frame
DILATIONS = (1, 2, 4, 8)


class GatedBlock(nn.Module):
    """Pre-norm gated dilated convolution over time, the voice added to its input."""

    def __init__(self, width: int, dilation: int, voice: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.voice = nn.Linear(voice, width) if voice else None
        self.conv = nn.Conv1d(width, 2 * width, 5, padding=2 * dilation, dilation=dilation)
        self.out = nn.Linear(width, width)

    def forward(self, x, voice):  # x [B, T, W], voice [B, T, V] (None for a decoder that reads no voice)
        h = self.norm(x)
        if self.voice is not None:
            h = h + self.voice(voice)
        h = h.transpose(1, 2)
        h = nn.functional.glu(self.conv(h), dim=1).transpose(1, 2)
        return x + self.out(h)


class FeatureDecoder(nn.Module):
    """(latent [B, T, C], semantic tokens [B, T], voice [B, T, V] or none with voice=0) -> normalised
    features [B, 2T, 20];
    `render` gives them in FARGAN's units. The training set's per-dimension mean and deviation are
    buffers, so the checkpoint carries its own normalisation."""

    def __init__(self, latent: int, voice: int, vocab: int, width: int = 256, depth: int = 8):
        super().__init__()
        self.latent = nn.Linear(latent, width)
        self.semantic = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(
            GatedBlock(width, DILATIONS[i % len(DILATIONS)], voice) for i in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, FRAMES_PER_CODEC_FRAME * NUM_FEATURES)
        self.register_buffer("mean", torch.zeros(NUM_FEATURES))
        self.register_buffer("std", torch.ones(NUM_FEATURES))

    def forward(self, latent, semantic, voice=None):
        if voice is not None and voice.dim() == 2:
            voice = voice[:, None].expand(-1, latent.shape[1], -1)
        x = self.latent(latent) + self.semantic(semantic)
        for block in self.blocks:
            x = block(x, voice)
        y = self.head(self.norm(x))
        return y.reshape(y.shape[0], -1, NUM_FEATURES)

    def render(self, latent, semantic, voice=None):
        """Features [B, 2T, 20] in FARGAN's units (float32), clamped inside what the vocoder accepts."""
        voice = None if voice is None else voice.float()
        return clamp_features(self(latent.float(), semantic.long(), voice).float() * self.std + self.mean)


def clamp_features(features: torch.Tensor) -> torch.Tensor:
    """Features [..., 20] inside what FARGAN accepts (`vocoder.fargan.LIMITS`)."""
    cepstrum = LIMITS["cepstrum"] - 1.0
    pitch_low, pitch_high = LIMITS["pitch"]
    corr_low, corr_high = LIMITS["correlation"]
    return torch.cat(
        [
            features[..., CEPSTRUM].clamp(-cepstrum, cepstrum),
            features[..., PITCH : PITCH + 1].clamp(pitch_low + 0.01, pitch_high - 0.01),
            features[..., CORRELATION : CORRELATION + 1].clamp(corr_low + 0.01, corr_high - 0.01),
        ],
        dim=-1,
    )
