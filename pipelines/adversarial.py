"""One adversarial recipe for the codec stage and the decoder tunings (issue 36).

A decoder trained on mel and waveform L1 alone renders the mean of what its input leaves open: smoothed
speech. SoundStream, EnCodec, DAC, HiFi-GAN and Vocos all add discriminators and feature matching for
that reason; this module is that recipe, sized for a CPU and kept apart from the models it trains:

- a multi-period waveform discriminator (HiFi-GAN: the signal folded by periods 2, 3, 5, 7, 11 into 2-D,
  strided convolutions along time) and a multi-resolution spectrogram discriminator (Vocos/UnivNet:
  2-D convolutions over STFT magnitudes at three resolutions);
- least-squares (HiFi-GAN, DAC) or hinge (Vocos, EnCodec) adversarial losses, feature matching (L1 between
  the discriminators' layer activations on real and rendered audio), and the mel loss kept, weighted as
  HiFi-GAN weighs it: mel 45, feature matching 2, adversarial 1 (divided by `mel_weight` here, so that the
  stages' existing mel + waveform L1 keeps weight 1 and its gradient clipping means what it meant);
- a warm start that does not wreck a trained decoder: the discriminators learn alone for `d_warmup_steps`
  (users fine-tuning MelGAN and HiFi-GAN saw pure noise the moment a fresh discriminator's gradients
  reached a trained generator), then the adversarial weights ramp in over `ramp_steps`.

The discriminators are training state only: saved in `adversary.pt` beside the stage's `train_state.pt`
(read with `weights_only=True`), never in a bundle. Under torchrun they are wrapped in DDP like the models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class AdversarialConfig:
    enabled: bool = False
    loss: str = "lsgan"  # lsgan (least squares) or hinge
    periods: tuple = (2, 3, 5, 7, 11)  # multi-period discriminator
    resolutions: tuple = ((512, 128), (1024, 256), (256, 64))  # (n_fft, hop) of the spectrogram discriminator
    channels: int = 16  # the discriminators' first width (HiFi-GAN: 32; small for a CPU)
    lr: float = 2e-4
    betas: tuple = (0.8, 0.99)
    mel_weight: float = 45.0  # the field's balance: mel 45, feature matching 2, adversarial 1
    fm_weight: float = 2.0
    adv_weight: float = 1.0
    d_warmup_steps: int = 200  # discriminators alone first: a warm-started decoder is not thrown off
    ramp_steps: int = 500  # then the adversarial terms ramp in linearly


def _convolve(convs, out, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A sub-discriminator's stack: (scores [B, N], every layer's activation for feature matching)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        features.append(x)
    x = out(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's sub-discriminator: [B, T] folded to [B, 1, T/p, p], convolved along time only."""

    def __init__(self, period: int, channels: int):
        super().__init__()
        self.period = period
        widths = [1, channels, channels * 2, channels * 4, channels * 4]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), (3 if i < 3 else 1, 1), padding=(2, 0)))
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.out = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = wav.shape
        pad = (-t) % self.period
        x = F.pad(wav, (0, pad), mode="reflect" if pad < t else "constant")
        return _convolve(self.convs, self.out, x.view(b, 1, -1, self.period))  # (B, 1, T/p, p)


class ResolutionDiscriminator(nn.Module):
    """Vocos' sub-discriminator: 2-D convolutions over a log-compressed STFT magnitude [B, 1, F, T]."""

    def __init__(self, n_fft: int, hop: int, channels: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (7, 5), (2, 2), padding=(3, 2))),
                weight_norm(nn.Conv2d(c, c, (5, 3), (2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, (5, 3), (2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, 3, padding=1)),
            ]
        )
        self.out = weight_norm(nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav, self.n_fft, self.hop, window=self.window, return_complex=True).abs()
        return _convolve(self.convs, self.out, torch.log1p(spec).unsqueeze(1))  # (B, 1, F, T)


class Discriminators(nn.Module):
    """Every sub-discriminator; forward returns each one's (scores, features)."""

    def __init__(self, config: AdversarialConfig):
        super().__init__()
        self.subs = nn.ModuleList(
            [PeriodDiscriminator(p, config.channels) for p in config.periods]
            + [ResolutionDiscriminator(n, h, config.channels) for n, h in config.resolutions]
        )

    def forward(self, wav: torch.Tensor):
        return [sub(wav) for sub in self.subs]


def discriminator_loss(real, fake, kind: str = "lsgan") -> torch.Tensor:
    """Real scores pushed to 1 and rendered to 0 (least squares), or past the hinge at +-1."""
    total = 0.0
    for (r, _), (f, _) in zip(real, fake, strict=True):
        if kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            total = total + ((r - 1) ** 2).mean() + (f**2).mean()
    return total / len(real)


def generator_loss(fake, kind: str = "lsgan") -> torch.Tensor:
    """The rendered audio's scores pushed toward 'real'."""
    total = 0.0
    for f, _ in fake:
        total = total + ((-f).mean() if kind == "hinge" else ((f - 1) ** 2).mean())
    return total / len(fake)


def feature_matching(real, fake) -> torch.Tensor:
    """Mean L1 between the discriminators' activations on real (detached) and rendered audio."""
    terms = [
        F.l1_loss(fb, rb.detach()) for (_, rf), (_, ff) in zip(real, fake, strict=True) for rb, fb in zip(rf, ff, strict=True)
    ]
    return sum(terms) / len(terms)


class Adversary:
    """The discriminators, their optimizer and schedule: `train_discriminators` then `generator_terms`
    once a step, `save` / `load` with the stage's own checkpoint."""

    def __init__(self, config: AdversarialConfig, device: torch.device | str = "cpu"):
        if config.loss not in ("lsgan", "hinge"):
            raise ValueError(f"adversarial.loss must be lsgan or hinge, not '{config.loss}'")
        self.config = config
        self.discriminators = Discriminators(config).to(device)
        self.net = self.discriminators
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.net = nn.parallel.DistributedDataParallel(self.discriminators)
        self.optimizer = torch.optim.AdamW(
            self.discriminators.parameters(), lr=config.lr, betas=tuple(config.betas), weight_decay=0.0
        )

    def weight(self, step: int) -> float:
        """0 while the discriminators warm up, then a linear ramp to 1."""
        c = self.config
        if step < c.d_warmup_steps:
            return 0.0
        return min(1.0, (step - c.d_warmup_steps + 1) / max(1, c.ramp_steps))

    def train_discriminators(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One optimizer step of the discriminators on real [B, T] and rendered [B, T] audio."""
        self.discriminators.train()
        loss = discriminator_loss(self.net(real), self.net(fake.detach()), self.config.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.discriminators.parameters(), 10.0)
        self.optimizer.step()
        return float(loss.detach())

    def generator_terms(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        """The adversarial and feature-matching terms to add to the generator's loss (0 while warming up),
        already divided by `mel_weight`, and their values for the log."""
        c = self.config
        w = self.weight(step)
        if w == 0.0:
            return torch.zeros((), device=fake.device), {"adv": 0.0, "fm": 0.0}
        for p in self.discriminators.parameters():
            p.requires_grad_(False)
        try:
            with torch.no_grad():
                real_out = self.net(real)
            fake_out = self.net(fake)
            adv, fm = generator_loss(fake_out, c.loss), feature_matching(real_out, fake_out)
        finally:
            for p in self.discriminators.parameters():
                p.requires_grad_(True)
        total = w * (c.adv_weight * adv + c.fm_weight * fm) / c.mel_weight
        return total, {"adv": float(adv.detach()), "fm": float(fm.detach())}

    def step(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        """A training step's share: the discriminators learn from this batch, then the generator's terms."""
        d_loss = self.train_discriminators(real, fake)
        extra, terms = self.generator_terms(real, fake, step)
        return extra, terms | {"d": d_loss}

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save({"discriminators": self.discriminators.state_dict(), "optimizer": self.optimizer.state_dict()}, tmp)
        os.replace(tmp, path)

    def load(self, path: Path) -> bool:
        """Resume from `path` if it exists (no pickle); whether it did."""
        if not path.exists():
            return False
        state = torch.load(path, weights_only=True, map_location="cpu")
        self.discriminators.load_state_dict(state["discriminators"])
        self.optimizer.load_state_dict(state["optimizer"])
        return True
