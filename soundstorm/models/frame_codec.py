"""The embedded codec: log-mel encoder -> residual VQ at the frame rate -> ConvNeXt decoder -> iSTFT.

A frame-rate design in the manner of Vocos and WavTokenizer: the encoder sees one
log-mel frame per codec frame (no strided convolutions), and the decoder predicts
an STFT frame per codec frame, turned into a waveform by an inverse STFT. It trains
on a CPU in well under an hour to an intelligible codec (issue 10's measurements:
EnCodec's SEANet with the same quantizer collapsed to one code on CPU budgets).

Shapes: B batch, S samples, T frames, D width, C codebook dim, Q levels, K codes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundstorm.models.feature_decoder import FeatureDecoder

# Buffers only training reads (the codebooks' EMA statistics): shipped codecs leave them out.
TRAINING_ONLY_BUFFERS = ("embed_sum", "cluster_size", "initted")


def mel_basis(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Slaney mel filters [M, n_fft // 2 + 1] from 0 Hz to Nyquist.

    At 16 kHz, faster-whisper's (Whisper's filters; the semantic tokenizer imports it anyway), which are
    transformers' `mel_filter_bank` to the last bit in float32 (tested) without importing transformers,
    2 s of a cold start; faster-whisper's stop at 8 kHz, so other rates take transformers'."""
    if sample_rate == 16000:
        from faster_whisper.feature_extractor import FeatureExtractor

        filters = FeatureExtractor.get_mel_filters(sample_rate, n_fft, n_mels)
        return torch.tensor(filters, dtype=torch.float32)
    from transformers.audio_utils import mel_filter_bank

    filters = mel_filter_bank(
        n_fft // 2 + 1, n_mels, 0.0, sample_rate / 2, sample_rate, norm="slaney", mel_scale="slaney"
    )
    return torch.tensor(filters, dtype=torch.float32).t()


def log_mel(wav, basis, window, hop: int, pad_mode: str = "reflect"):
    """[..., S] -> [..., M, frames]: log of the mel-filtered STFT magnitude (floor 1e-5)."""
    n_fft = window.shape[0]
    spec = torch.stft(wav, n_fft, hop, window=window, center=True, pad_mode=pad_mode, return_complex=True)
    return torch.log(torch.clamp(basis @ spec.abs(), min=1e-5))


@dataclass
class FrameCodecConfig:
    sample_rate: int = 16000
    hop_length: int = 320  # 50 Hz frames at 16 kHz
    n_fft: int = 1024
    n_mels: int = 80
    width: int = 384
    encoder_layers: int = 4
    decoder_layers: int = 8
    levels: int = 8
    codebook_size: int = 1024
    codebook_dim: int = 64
    # > 0: the codec is conditioned on the semantic tokens (a vocabulary of this size, `semantic_ratio`
    # codec frames each), given to its encoder and decoder: the RVQ then carries only what the semantic
    # token does not (SpeechTokenizer's split of content and acoustics, with the content token as level 0).
    semantic_vocab: int = 0
    semantic_ratio: int = 2
    # False: only the decoder sees the semantic tokens, so the codes are those of the same codec without
    # them (a decoder fine-tuned to render SoundStorm's codes, `pipelines/stages/decoder_tune.py`).
    semantic_encoder: bool = True
    # True: the decoder was tuned to render SoundStorm's expected level-1 latent (the distribution of its first
    # pass over hidden codes, `decode_posterior`) as well as true codes; the chain then renders that way.
    soft_level1: bool = False
    # True: the decoder also reads a voice vector, the mean and standard deviation over a prompt's frames of
    # its quantized latents (`voice_vector`), per frame, so each turn's voice can come from its own prompt.
    voice_decoder: bool = False
    # True (with voice_decoder): the voice vector is also projected into every decoder block's input (one
    # projection each), so the voice reaches each block's residual stream directly.
    voice_layers: bool = False
    # "waveform": the decoder above renders STFT frames; "fargan": a feature decoder (`feature_decoder.py`,
    # `feature_width` x `feature_depth`) predicts FARGAN's features from the same inputs (the expected
    # level-1 latent, the semantic tokens, the voice vector) and the pretrained vocoder renders them; the
    # waveform decoder is then not built. Needs semantic_vocab and voice_decoder.
    renderer: str = "waveform"
    feature_width: int = 256
    feature_depth: int = 8
    model_type: str = "soundstorm-frame-codec"

    def to_dict(self) -> dict:
        return asdict(self)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP, residual with a layer scale (Vocos)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 3 * dim)
        self.pw2 = nn.Linear(3 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x):  # [B, D, T]
        y = self.dwconv(x).transpose(1, 2)  # [B, T, D]
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class EMACodebook(nn.Module):
    """One VQ level: nearest code, EMA updates, k-means init, dead-code restarts."""

    def __init__(self, size: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.decay, self.eps = decay, eps
        self.register_buffer("embed", torch.randn(size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initted", torch.tensor(False))

    def encode(self, x):  # [N, C] -> [N]
        dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.embed.t() + self.embed.pow(2).sum(1)[None]
        return dist.argmin(dim=1)

    def decode(self, idx):
        return F.embedding(idx, self.embed)

    @torch.no_grad()
    def _kmeans_init(self, x, iterations: int = 10):
        size = self.embed.shape[0]
        centers = x[torch.randint(0, x.shape[0], (size,), device=x.device)]
        for _ in range(iterations):
            idx = (x.pow(2).sum(1, keepdim=True) - 2 * x @ centers.t() + centers.pow(2).sum(1)[None]).argmin(
                1
            )
            counts = torch.bincount(idx, minlength=size).float()
            sums = torch.zeros_like(centers).index_add_(0, idx, x)
            filled = counts > 0
            centers[filled] = sums[filled] / counts[filled, None]
        self.embed.copy_(centers)
        self.embed_sum.copy_(centers)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x, idx):
        size = self.embed.shape[0]
        counts = torch.bincount(idx, minlength=size).float()
        sums = torch.zeros_like(self.embed).index_add_(0, idx, x)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + size * self.eps) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        # Dead codes (used by almost nothing lately) restart on random current vectors.
        dead = self.cluster_size < 1e-2
        if dead.any():
            picks = x[torch.randint(0, x.shape[0], (int(dead.sum()),), device=x.device)]
            self.embed[dead] = picks
            self.embed_sum[dead] = picks
            self.cluster_size[dead] = 1.0

    def forward(self, x):  # [N, C] -> quantized [N, C], idx [N]
        if self.training and not bool(self.initted):
            self._kmeans_init(x.detach())
        idx = self.encode(x.detach())
        if self.training:
            self._ema_update(x.detach(), idx)
        return self.decode(idx), idx


class ResidualVQ(nn.Module):
    """Q EMA codebooks, each quantizing what the coarser ones left."""

    def __init__(self, levels: int, size: int, dim: int):
        super().__init__()
        self.levels = nn.ModuleList(EMACodebook(size, dim) for _ in range(levels))

    def forward(self, x, num_levels: int | None = None):  # [N, C]
        residual, quantized, codes, commit = x, torch.zeros_like(x), [], x.new_zeros(())
        for book in self.levels[: num_levels or len(self.levels)]:
            q, idx = book(residual)
            commit = commit + F.mse_loss(residual, q.detach())
            quantized = quantized + q
            residual = residual - q.detach()
            codes.append(idx)
        return quantized, torch.stack(codes), commit  # [N, C], [Q, N], scalar

    def decode(self, codes):  # [Q, N] -> [N, C]
        return sum(self.levels[q].decode(codes[q]) for q in range(codes.shape[0]))


def _moments(latents):  # [B, T, C] -> [B, 2C]: mean and standard deviation over the frames
    return torch.cat([latents.mean(1), latents.std(1, unbiased=False)], dim=-1)


class FrameCodec(nn.Module):
    """wav [B, S] -> codes [B, Q, T] -> wav [B, T * hop]."""

    def __init__(self, config: FrameCodecConfig):
        super().__init__()
        self.config = c = config
        self.register_buffer(
            "mel_basis", mel_basis(c.n_fft, c.n_mels, c.sample_rate), persistent=False
        )  # [M, F]
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.encoder_in = nn.Conv1d(c.n_mels, c.width, kernel_size=7, padding=3)
        self.encoder = nn.Sequential(*[ConvNeXtBlock(c.width) for _ in range(c.encoder_layers)])
        self.encoder_out = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.codebook_dim))
        self.quantizer = ResidualVQ(c.levels, c.codebook_size, c.codebook_dim)
        if c.renderer == "fargan":
            if not (c.semantic_vocab and c.voice_decoder):
                raise ValueError("a codec rendered by FARGAN needs semantic_vocab and voice_decoder")
            if c.semantic_encoder:
                self.semantic_encoder = nn.Embedding(c.semantic_vocab, c.width)
            self.features = FeatureDecoder(
                c.codebook_dim, 2 * c.codebook_dim, c.semantic_vocab, c.feature_width, c.feature_depth
            )
            return
        if c.renderer != "waveform":
            raise ValueError(f"unknown renderer '{c.renderer}': 'waveform' or 'fargan'")
        self.decoder_in = nn.Conv1d(c.codebook_dim, c.width, kernel_size=7, padding=3)
        self.decoder = nn.Sequential(*[ConvNeXtBlock(c.width) for _ in range(c.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.n_fft + 2)  # log-magnitude and phase of each STFT bin
        if c.semantic_vocab:
            if c.semantic_encoder:
                self.semantic_encoder = nn.Embedding(c.semantic_vocab, c.width)
            self.semantic_decoder = nn.Embedding(c.semantic_vocab, c.width)
        if c.voice_decoder:
            self.voice_decoder = nn.Linear(2 * c.codebook_dim, c.width)
        if c.voice_decoder and c.voice_layers:
            self.voice_blocks = nn.ModuleList(
                nn.Linear(2 * c.codebook_dim, c.width) for _ in range(c.decoder_layers)
            )

    def _semantic(self, table: str, semantic, frames: int):
        """Codec-rate semantic tokens [B, T] -> their embedding [B, D, T] (0 where this side has no table)."""
        if not hasattr(self, table):
            return 0
        if semantic is None or semantic.shape[-1] != frames:
            got = None if semantic is None else tuple(semantic.shape)
            raise ValueError(f"this codec needs semantic tokens at its frame rate, [B, {frames}], got {got}")
        return getattr(self, table)(semantic).transpose(1, 2)

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.config.hop_length)

    def log_mel(self, wav):  # [B, S] -> [B, M, T]
        hop = self.config.hop_length
        frames = self.num_frames(wav.shape[-1])
        wav = F.pad(wav, (0, frames * hop - wav.shape[-1]))
        spec = torch.stft(
            wav,
            self.config.n_fft,
            hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        mag = spec.abs()[..., :frames]  # [B, F, T]
        return torch.log(torch.clamp(self.mel_basis @ mag, min=1e-5))

    def encode_latents(self, wav, semantic=None):  # [B, S] -> [B, T, C]
        x = self.encoder_in(self.log_mel(wav))  # [B, D, T]
        x = self.encoder(x + self._semantic("semantic_encoder", semantic, x.shape[-1]))
        return self.encoder_out(x.transpose(1, 2)).float()  # the quantizer works in fp32

    def voice_vector(self, codes):  # [B, Q, T] -> [B, 2C]
        """A prompt's voice: the mean and standard deviation over its frames of its quantized latents."""
        B, Q, T = codes.shape
        return _moments(self.quantizer.decode(codes.transpose(0, 1).reshape(Q, B * T)).reshape(B, T, -1))

    def _voice(self, voice, frames: int):
        """Voice vectors [B, 2C] or [B, T, 2C] -> [B, T, 2C] in the decoder's dtype (None for a decoder
        that reads none)."""
        fargan = self.config.renderer == "fargan"  # its feature decoder always reads one
        if not (fargan or hasattr(self, "voice_decoder")):
            return None
        if voice is None:
            raise ValueError("this codec's decoder reads a voice vector: pass voice=")
        if voice.dim() == 2:
            voice = voice[:, None].expand(-1, frames, -1)
        if voice.shape[1] != frames:
            raise ValueError(f"voice vectors must be [B, 2C] or [B, {frames}, 2C], got {tuple(voice.shape)}")
        return voice.to(torch.float32 if fargan else self.voice_decoder.weight.dtype)

    def render_features(self, latents, semantic, voice):  # [B, T, C] -> features [B, 2T, 20]
        """What a FARGAN-rendered codec's feature decoder predicts, in the vocoder's units."""
        frames = latents.shape[1]
        if semantic is None or semantic.shape[-1] != frames:
            got = None if semantic is None else tuple(semantic.shape)
            raise ValueError(f"this codec needs semantic tokens at its frame rate, [B, {frames}], got {got}")
        return self.features.render(latents, semantic, self._voice(voice, frames))

    def decode_latents(self, latents, semantic=None, voice=None):  # [B, T, C] -> [B, T * hop]
        c = self.config
        if c.renderer == "fargan":
            from soundstorm.vocoder import fargan

            features = self.render_features(latents, semantic, voice).cpu().numpy()
            return torch.stack([torch.from_numpy(fargan.synthesize(f)) for f in features]).to(latents.device)
        x = self.decoder_in(latents.transpose(1, 2))  # [B, D, T]
        voice = self._voice(voice, x.shape[-1])

        def projected(layer):  # the voice through `voice_decoder` or one of `voice_blocks`: [B, D, T]
            return 0 if voice is None else layer(voice).transpose(1, 2)

        x = (
            x
            + self._semantic("semantic_decoder", semantic, x.shape[-1])
            + projected(getattr(self, "voice_decoder", None))
        )
        if hasattr(self, "voice_blocks"):
            for block, projection in zip(self.decoder, self.voice_blocks, strict=True):
                x = block(x + projected(projection))
        else:
            x = self.decoder(x)
        x = self.head(self.decoder_norm(x.transpose(1, 2))).transpose(1, 2)  # [B, n_fft + 2, T]
        log_mag, phase = x.float().chunk(2, dim=1)  # [B, F, T] each
        mag = torch.exp(log_mag).clamp(max=1e2)
        spec = torch.polar(mag, phase)
        frames = latents.shape[1]
        return torch.istft(
            spec, c.n_fft, c.hop_length, window=self.window, center=True, length=frames * c.hop_length
        )

    def forward(self, wav, num_levels: int | None = None, semantic=None):
        """Training pass: (reconstruction [B, S'], codes [B, Q, T], commitment loss).

        `semantic`: codec-rate semantic tokens [B, T], for a codec conditioned on them."""
        if self.config.renderer == "fargan":
            raise ValueError("a codec rendered by FARGAN trains its feature decoder: pipelines.stages.feature_decoder")
        latents = self.encode_latents(wav, semantic)  # [B, T, C]
        B, T, C = latents.shape
        flat = latents.reshape(B * T, C)
        quantized, codes, commit = self.quantizer(flat, num_levels)
        quantized = flat + (quantized - flat).detach()  # straight-through
        voice = _moments(quantized.detach().reshape(B, T, C)) if self.config.voice_decoder else None
        recon = self.decode_latents(quantized.reshape(B, T, C), semantic, voice)
        return recon, codes.reshape(-1, B, T).transpose(0, 1), commit

    @torch.no_grad()
    def encode(self, wav, num_levels: int | None = None, semantic=None):  # [B, S] -> [B, Q, T]
        latents = self.encode_latents(wav, semantic)
        B, T, C = latents.shape
        _, codes, _ = self.quantizer(latents.reshape(B * T, C), num_levels)
        return codes.reshape(-1, B, T).transpose(0, 1)

    @torch.no_grad()
    def decode(self, codes, semantic=None, voice=None):  # [B, Q, T] -> [B, T * hop]
        """`voice`: for a decoder that reads one, [B, 2C] or [B, T, 2C]; by default the codes' own."""
        B, Q, T = codes.shape
        if voice is None and self.config.voice_decoder:
            voice = self.voice_vector(codes)
        quantized = self.quantizer.decode(codes.transpose(0, 1).reshape(Q, B * T))
        return self.decode_latents(quantized.reshape(B, T, -1), semantic, voice)

    @torch.no_grad()
    def decode_posterior(self, probs, semantic=None, voice=None):
        """Level 1's distribution [B, T, K] -> [B, T * hop], through its expected latent."""
        latents = probs.float() @ self.quantizer.levels[0].embed  # the expected level-1 latent [B, T, C]
        return self.decode_latents(latents, semantic, voice)
