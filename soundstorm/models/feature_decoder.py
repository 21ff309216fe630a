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


class PromptAttention(nn.Module):
    """Pre-norm cross-attention from the frames being rendered to a prompt's frames (a voice's set of examples,
    no order): each sound can take the prompt's rendering of a like sound, where a statistic of the prompt has
    only its average."""

    def __init__(self, width: int, heads: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, x, memory):  # x [B, T, W], memory [B, P, W]
        h = self.norm(x)
        return x + self.attention(h, memory, memory, need_weights=False)[0]


class FeatureDecoder(nn.Module):
    """(latent [B, T, C], semantic tokens [B, T], voice [B, T, V] or none with voice=0) -> normalised
    features [B, 2T, 20];
    `render` gives them in FARGAN's units. The training set's per-dimension mean and deviation are
    buffers, so the checkpoint carries its own normalisation.

    With `prompt_frames` P > 0 the voice is [statistics (`voice` numbers) | P prompt frames x `frame_dim`]
    (`FeatureCodec.voice_vector` with `voice_stats` "frames"): the statistics go into every block as before,
    and every other block also attends to the prompt's frames (`PromptAttention`). A voice per frame
    ([B, T, V], as in a dialogue) attends to its own frame's prompt."""

    def __init__(self, latent: int, voice: int, vocab: int, width: int = 256, depth: int = 8,
                 prompt_frames: int = 0, frame_dim: int = 0):
        super().__init__()
        self.latent = nn.Linear(latent, width)
        self.semantic = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(
            GatedBlock(width, DILATIONS[i % len(DILATIONS)], voice) for i in range(depth)
        )
        self.stats, self.prompt_frames, self.frame_dim = voice, prompt_frames, frame_dim
        if prompt_frames:
            self.memory = nn.Sequential(nn.Linear(frame_dim, width), nn.LayerNorm(width))
            self.attend = nn.ModuleList(PromptAttention(width) for _ in range(depth // 2))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, FRAMES_PER_CODEC_FRAME * NUM_FEATURES)
        self.register_buffer("mean", torch.zeros(NUM_FEATURES))
        self.register_buffer("std", torch.ones(NUM_FEATURES))

    def forward(self, latent, semantic, voice=None):
        memory = None
        if self.prompt_frames and voice is not None:
            voice, memory = voice[..., : self.stats], self._memory(voice[..., self.stats :])
        if voice is not None and voice.dim() == 2:
            voice = voice[:, None].expand(-1, latent.shape[1], -1)
        x = self.latent(latent) + self.semantic(semantic)
        for i, block in enumerate(self.blocks):
            x = block(x, voice)
            if memory is not None and i % 2 == 1:  # every other block
                x = self._attend(self.attend[i // 2], x, memory)
        y = self.head(self.norm(x))
        return y.reshape(y.shape[0], -1, NUM_FEATURES)

    def _memory(self, frames):
        """The prompt frames of a voice, [B, P x F] -> [B, P, W]; of a voice per frame, [B, T, P x F] -> for each
        row, its distinct prompts [U, P, W] and each frame's among them [T]."""
        if frames.dim() == 2:
            return self.memory(frames.reshape(frames.shape[0], self.prompt_frames, self.frame_dim))
        rows = []
        for row in frames:
            distinct, group = torch.unique(row, dim=0, return_inverse=True)
            rows.append((self.memory(distinct.reshape(len(distinct), self.prompt_frames, self.frame_dim)), group))
        return rows

    @staticmethod
    def _attend(layer, x, memory):
        """`layer` over x [B, T, W] and a prompt per row ([B, P, W]) or per frame (`_memory`'s rows): the frames
        of each distinct prompt of a row attend to it together."""
        if torch.is_tensor(memory):
            return layer(x, memory)
        out = torch.empty_like(x)
        for b, (prompts, group) in enumerate(memory):
            for u in range(len(prompts)):
                rows = (group == u).nonzero()[:, 0]
                if len(rows):
                    out[b, rows] = layer(x[b : b + 1, rows], prompts[u : u + 1])[0]
        return out

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
