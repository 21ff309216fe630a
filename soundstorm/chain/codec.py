"""The neural audio codec behind one small interface.

Every codec soundstorm uses — the pretrained 24 kHz EnCodec and the small ones
`pipelines/` trains — is a `Codec`: `encode(wav) -> codes`, `decode(codes) ->
wav`, and the facts the rest of the chain needs (`sample_rate`, `frame_rate`,
`num_levels`, `codebook_size`). Shapes: B batch, Q codec levels, T frames, S samples.

- `encode(wav [S])    -> codes [Q, T]`, `encode(wav [B, S]) -> codes [B, Q, T]`
- `decode(codes [Q, T]) -> wav [S]`,   `decode(codes [B, Q, T]) -> wav [B, S]`
- `decode_posterior(probs [T, K]) -> wav [S]` where `renders_posterior`: a decoder tuned on the
  expectation of SoundStorm's level-1 distribution renders that instead of sampled codes
- `voice(codes [Q, P]) -> [V]` where `reads_voice`: a decoder that also reads a voice vector takes the
  prompt's (`decode(..., voice=)`, `decode_posterior(..., voice=)`: [V], or [T, V] for a voice per frame;
  `decode` without one reads the codes' own)

with T = ceil(S / hop) and S = T * hop on the way back (`length=` trims).

A codec with `needs_semantic` is conditioned on the semantic tokens (25 Hz,
[T25] or [B, T25]): `encode(wav, semantic=)` and `decode(codes, semantic=)` take
them, and its levels carry only the acoustic detail they leave out.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

from soundstorm.base.errors import CheckpointError, CodecError
from soundstorm.chain.semantic import SEMANTIC_RATE
from soundstorm.io.textfiles import read_json_object

# Bundle facts for the pretrained model: 6 kbps at 75 Hz x 10 bits = 8 levels (design).
ENCODEC_24KHZ_BANDWIDTH = 6.0


class Codec(ABC):
    """A residual-VQ codec: waveform <-> integer codes [Q, T]."""

    sample_rate: int
    frame_rate: int
    num_levels: int
    codebook_size: int
    needs_semantic: bool = False
    renders_posterior: bool = False
    reads_voice: bool = False

    model: object  # the torch module behind it

    def _take(self, model, num_levels: int | None) -> None:
        """Hold `model` (evaluation mode) and the facts its config gives; `num_levels` of its levels."""
        config = model.config
        self.model = model.eval()
        self.sample_rate = int(config.sample_rate)
        self.frame_rate = self.sample_rate // int(config.hop_length)
        self.codebook_size = int(config.codebook_size)
        self.num_levels = int(num_levels or config.levels)
        if not 1 <= self.num_levels <= config.levels:
            raise CodecError(f"this codec has {config.levels} levels, not {self.num_levels}")

    @property
    def device(self):
        """Where the codec's weights are (inputs are moved there)."""
        return next(self.model.parameters()).device

    @property
    def hop_length(self) -> int:
        """Samples per codec frame."""
        return self.sample_rate // self.frame_rate

    def num_frames(self, num_samples: int) -> int:
        """Frames `encode` returns for `num_samples` samples."""
        return math.ceil(num_samples / self.hop_length)

    @abstractmethod
    def _encode(self, wav, semantic=None):
        """[B, S] float (and codec-rate semantic tokens [B, T] where needed) -> [B, Q, T] long."""

    @abstractmethod
    def _decode(self, codes, semantic=None, voice=None):
        """[B, Q, T] long (and codec-rate semantic tokens [B, T], voice vectors where read) -> [B, S] float."""

    def _semantic(self, semantic, batch: int, frames: int):
        """25 Hz tokens [T25] or [B, T25] -> codec-rate [B, T] (None for a codec that does not use them)."""
        if not self.needs_semantic:
            return None
        import torch

        from soundstorm.chain.semantic import frame_ratio, semantic_to_codec

        if semantic is None:
            raise CodecError("this codec is conditioned on semantic tokens: pass semantic=")
        semantic = torch.as_tensor(semantic, dtype=torch.long)
        if semantic.dim() == 1:
            semantic = semantic.unsqueeze(0)
        if semantic.dim() != 2 or semantic.shape[0] != batch or semantic.shape[1] == 0:
            raise CodecError(f"semantic tokens must be [T] or [{batch}, T], got {tuple(semantic.shape)}")
        return semantic_to_codec(semantic, frame_ratio(self.frame_rate), frames).to(self.device)

    def encode(self, wav, semantic=None):
        """Waveform [S] or [B, S] (float, at `sample_rate`) -> codes [Q, T] or [B, Q, T]."""
        import torch

        wav = torch.as_tensor(wav, dtype=torch.float32)
        single = wav.dim() == 1
        if single:
            wav = wav.unsqueeze(0)
        if wav.dim() != 2 or wav.shape[-1] == 0:
            raise CodecError(f"codec input must be [S] or [B, S] with S > 0 samples, got {tuple(wav.shape)}")
        semantic = self._semantic(semantic, wav.shape[0], self.num_frames(wav.shape[-1]))
        with torch.inference_mode():
            codes = self._encode(wav, semantic)  # [B, Q, T]
        return codes[0] if single else codes

    def voice(self, codes):
        """A prompt's voice vector [V] from its codes [Q, P], for a codec that `reads_voice` (its model's
        `voice_vector`)."""
        import torch

        if not self.reads_voice:
            raise CodecError("this codec's decoder reads no voice vector")
        codes = torch.as_tensor(codes, dtype=torch.long)
        if codes.dim() != 2 or codes.shape[1] == 0 or codes.shape[0] > self.num_levels:
            raise CodecError(f"prompt codes must be [Q, P] with P > 0, got {tuple(codes.shape)}")
        with torch.inference_mode():
            return self.model.voice_vector(codes[None].to(self.device))[0].float()

    def _voice(self, voice, batch: int, frames: int):
        """`voice` [V], [T, V] or [B, T, V] -> [B, V] or [B, T, V] on the device (None where not read)."""
        if not self.reads_voice or voice is None:
            return None
        import torch

        voice = torch.as_tensor(voice, dtype=torch.float32)
        if voice.dim() == 1:
            voice = voice[None].expand(batch, -1)
        elif voice.dim() == 2:
            voice = voice[None].expand(batch, -1, -1)
        if voice.shape[0] != batch or (voice.dim() == 3 and voice.shape[1] != frames):
            raise CodecError(f"voice vectors must be [V] or [{frames}, V], got {tuple(voice.shape)}")
        return voice.to(self.device)

    def decode(self, codes, length: int | None = None, semantic=None, voice=None):
        """Codes [Q, T] or [B, Q, T] -> waveform [S] or [B, S]; `length` trims to S samples."""
        import torch

        codes = torch.as_tensor(codes, dtype=torch.long)
        single = codes.dim() == 2
        if single:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3 or codes.shape[1] > self.num_levels or codes.shape[1] == 0:
            raise CodecError(
                f"codes must be [Q, T] or [B, Q, T] with 1 <= Q <= {self.num_levels}, got {tuple(codes.shape)}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise CodecError(
                f"codes must lie in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]"
            )
        semantic = self._semantic(semantic, codes.shape[0], codes.shape[-1])
        voice = self._voice(voice, codes.shape[0], codes.shape[-1])
        with torch.inference_mode():
            wav = self._decode(codes, semantic, voice)
        if length is not None:
            wav = wav[..., :length]
        return wav[0] if single else wav

    def decode_posterior(self, probs, length: int | None = None, semantic=None, voice=None):
        """Level 1's distribution [T, K] (rows summing to 1) -> waveform [S], for a codec that
        `renders_posterior`; `length` trims to S samples; `voice` ([V] or [T, V]) where it `reads_voice`."""
        import torch

        if not self.renders_posterior:
            raise CodecError("this codec's decoder renders codes, not level-1 distributions")
        probs = torch.as_tensor(probs, dtype=torch.float32)
        if probs.dim() != 2 or probs.shape[1] != self.codebook_size or probs.shape[0] == 0:
            raise CodecError(
                f"a level-1 distribution must be [T, {self.codebook_size}], got {tuple(probs.shape)}"
            )
        semantic = self._semantic(semantic, 1, probs.shape[0])
        if self.reads_voice and voice is None:
            raise CodecError(
                "this codec's decoder reads a voice vector: pass voice= (Codec.voice of the prompt)"
            )
        voice = self._voice(voice, 1, probs.shape[0])
        with torch.inference_mode():
            wav = self._decode_posterior(probs[None].to(self.device), semantic, voice)[0]
        return wav[:length] if length is not None else wav

    def _decode_posterior(self, probs, semantic=None, voice=None):
        raise NotImplementedError


class EncodecCodec(Codec):
    """Any mono `transformers.EncodecModel` (the pretrained 24 kHz one, or a small one of ours).

    The wrapper calls the model's encoder, quantizer and decoder directly so a
    whole batch goes through in one pass; chunked and normalising configs
    (EnCodec 48 kHz) are not supported.
    """

    def __init__(self, model, bandwidth: float | None = None):
        config = model.config
        if config.audio_channels != 1:
            raise CodecError(
                f"only mono EnCodec models are supported (this one has {config.audio_channels} channels)"
            )
        if config.normalize or config.chunk_length_s is not None:
            raise CodecError("chunked or normalising EnCodec configs (e.g. 48 kHz) are not supported")
        self.model = model.eval()
        self.bandwidth = float(bandwidth if bandwidth is not None else max(config.target_bandwidths))
        if self.bandwidth not in [float(b) for b in config.target_bandwidths]:
            raise CodecError(
                f"bandwidth {self.bandwidth} kbps is not one of {list(config.target_bandwidths)}"
            )
        self.sample_rate = int(config.sampling_rate)
        self.frame_rate = int(config.frame_rate)
        self.codebook_size = int(config.codebook_size)
        self.num_levels = min(
            int(model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth)), len(model.quantizer.layers)
        )
        if self.sample_rate % self.frame_rate:
            raise CodecError(
                f"sample rate {self.sample_rate} is not a multiple of frame rate {self.frame_rate}"
            )

    def _encode(self, wav, semantic=None):
        wav = wav.to(self.device).unsqueeze(1)  # [B, 1, S]
        embeddings = self.model.encoder(wav)  # [B, D, T]
        codes = self.model.quantizer.encode(embeddings, self.bandwidth)  # [Q, B, T]
        return codes.transpose(0, 1).contiguous()  # [B, Q, T]

    def _decode(self, codes, semantic=None, voice=None):
        codes = codes.to(self.device).transpose(0, 1)  # [Q, B, T]
        embeddings = self.model.quantizer.decode(codes)  # [B, D, T]
        return self.model.decoder(embeddings)[:, 0]  # [B, S]

    @classmethod
    def from_pretrained(cls, directory: str | Path, bandwidth: float | None = None, device: str = "cpu"):
        """Load a Hugging Face EnCodec folder (config.json + model.safetensors); never pickle."""
        from transformers import EncodecModel

        from soundstorm.bundles.checkpoints import ensure_safetensors

        directory = Path(directory)
        ensure_safetensors(directory / "model.safetensors")
        try:
            model = EncodecModel.from_pretrained(directory, use_safetensors=True, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CodecError(f"cannot load EnCodec from '{directory}': {str(exc).splitlines()[0]}") from exc
        return cls(model.to(device), bandwidth=bandwidth)


class FrameCodecWrapper(Codec):
    """Our embedded codec (`models/frame_codec.py`) behind the `Codec` interface."""

    def __init__(self, model, num_levels: int | None = None):
        config = model.config
        self._take(model, num_levels)
        self.needs_semantic = bool(config.semantic_vocab)
        self.renders_posterior = bool(config.soft_level1)
        self.reads_voice = bool(config.voice_decoder)
        if self.needs_semantic and self.frame_rate != config.semantic_ratio * SEMANTIC_RATE:
            raise CodecError(
                f"codec at {self.frame_rate} Hz with semantic_ratio {config.semantic_ratio}: they must meet at 25 Hz"
            )

    def _encode(self, wav, semantic=None):
        return self.model.encode(wav.to(self.device), self.num_levels, semantic)

    def _decode(self, codes, semantic=None, voice=None):
        return self.model.decode(codes.to(self.device), semantic, voice)

    def _decode_posterior(self, probs, semantic=None, voice=None):
        return self.model.decode_posterior(probs, semantic, voice)

    @classmethod
    def from_pretrained(cls, directory: str | Path, num_levels: int | None = None, device: str = "cpu"):
        from soundstorm.bundles.checkpoints import load_safetensors
        from soundstorm.models.frame_codec import TRAINING_ONLY_BUFFERS, FrameCodec, FrameCodecConfig

        directory = Path(directory)
        model = FrameCodec(_stored_config(directory, FrameCodecConfig))
        state = load_safetensors(directory / "model.safetensors")
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Shipped codecs drop the codebooks' EMA statistics, which only training reads.
        if unexpected or [k for k in missing if k.rsplit(".", 1)[-1] not in TRAINING_ONLY_BUFFERS]:
            raise CodecError(
                f"codec weights in '{directory}' do not fit its config ({len(missing)} missing, {len(unexpected)} unexpected)"
            )
        return cls(model.to(device), num_levels=num_levels)


class FeatureCodecWrapper(Codec):
    """The FARGAN feature codec (`models/feature_codec.py`) behind the `Codec` interface: FARGAN's analysis
    and nearest-vector search encode, the pretrained vocoder renders."""

    def __init__(self, model, num_levels: int | None = None):
        self._take(model, num_levels)
        self.needs_semantic = bool(model.config.semantic_vocab)  # its decoder reads them
        self.renders_posterior = model.renders_posterior  # a decoder over level 1 alone
        self.reads_voice = model.reads_voice  # and the prompt's voice vector

    @property
    def device(self):
        return self.model.codebooks.device

    def _encode(self, wav, semantic=None):
        import numpy as np
        import torch

        from soundstorm.vocoder import fargan

        frames = self.num_frames(wav.shape[-1])
        out = []
        for row in wav.cpu().numpy():
            features = fargan.analyze(row)
            features = np.concatenate([features, fargan.silence_features(max(0, 2 * frames - len(features)))])
            out.append(self.model.quantize(torch.from_numpy(features[: 2 * frames]), self.num_levels))
        return torch.stack(out)

    def _decode(self, codes, semantic=None, voice=None):
        import numpy as np
        import torch

        from soundstorm.vocoder import fargan

        features = self.model.decode(codes.to(self.device), semantic, voice).cpu().numpy()  # under inference mode
        return torch.from_numpy(np.stack([fargan.synthesize(f) for f in features]))

    def _decode_posterior(self, probs, semantic=None, voice=None):
        import numpy as np
        import torch

        from soundstorm.vocoder import fargan

        features = self.model.decode_posterior(probs.to(self.device), semantic, voice).cpu().numpy()
        return torch.from_numpy(np.stack([fargan.synthesize(f) for f in features]))

    @classmethod
    def from_pretrained(cls, directory: str | Path, num_levels: int | None = None, device: str = "cpu"):
        from soundstorm.bundles.checkpoints import load_safetensors
        from soundstorm.models.feature_codec import FeatureCodec, FeatureCodecConfig

        directory = Path(directory)
        model = FeatureCodec(_stored_config(directory, FeatureCodecConfig))
        try:
            model.load_state_dict(load_safetensors(directory / "model.safetensors"))
        except RuntimeError as exc:
            raise CodecError(f"codec weights in '{directory}' do not fit its config: {exc}") from exc
        return cls(model.to(device), num_levels=num_levels)


def _stored_config(directory: Path, config_class):
    """A codec folder's `config.json` as `config_class`, or a CheckpointError naming the file."""
    raw = read_json_object(directory / "config.json", CheckpointError, "codec config")
    try:
        return config_class(**raw)
    except TypeError as exc:
        raise CheckpointError(f"bad codec config '{directory / 'config.json'}': {exc}") from exc


def load_codec(directory: str | Path, bandwidth: float | None = None, device: str = "cpu") -> Codec:
    """Load the codec stored in `directory`, whichever kind its config names."""
    directory = Path(directory)
    config_path = directory / "config.json"
    model_type = read_json_object(config_path, CheckpointError, "codec config").get("model_type")
    if model_type == "encodec":
        return EncodecCodec.from_pretrained(directory, bandwidth=bandwidth, device=device)
    if model_type == "soundstorm-frame-codec":
        return FrameCodecWrapper.from_pretrained(directory, device=device)
    if model_type == "soundstorm-feature-codec":
        return FeatureCodecWrapper.from_pretrained(directory, device=device)
    raise CodecError(f"unknown codec type '{model_type}' in '{config_path}'")
