"""Time one decoder-tuning step with and without the discriminators (issue 36), to size a GPU lease or a
longer CPU run from it.

    python benchmarks/adversarial_step.py [--checkpoint tiny] [--steps 6] [--threads 2]

The shipped codec's decoder (its sizes, weights and bf16 autocast where native, as `decoder_tune train`
runs), a decoder tuning's batch (16 crops of 50 frames, 1 s each) from random latents and tokens, and
the configured discriminators (`AdversarialConfig`'s defaults, or `--channels`). Prints the median
seconds of a step of each arm after one warm-up step, as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from pipelines.adversarial import AdversarialConfig, Adversary
from pipelines.stages.codec import MelLoss
from soundstorm.base.runtime import native_bf16
from soundstorm.bundles.checkpoints import component_path, load_registry
from soundstorm.chain.codec import load_codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", type=int, default=AdversarialConfig.channels)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_codec(component_path(load_registry().get(args.checkpoint), "codec")).model.float().train()
    for p in model.parameters():
        p.requires_grad_(True)
    c = model.config
    batch, frames = 16, 50
    latents = torch.randn(batch, frames, c.codebook_dim)
    semantic = torch.randint(0, max(1, c.semantic_vocab), (batch, frames)) if c.semantic_vocab else None
    voice = torch.randn(batch, 2 * c.codebook_dim) if c.voice_decoder else None
    wav = torch.randn(batch, frames * c.hop_length) * 0.1
    mel_loss, bf16 = MelLoss(c.sample_rate), native_bf16(torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    adversary = Adversary(AdversarialConfig(enabled=True, channels=args.channels, d_warmup_steps=0, ramp_steps=1))

    def step(adversarial: bool) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            recon = model.decode_latents(latents, semantic, voice).float()
        loss = mel_loss(recon, wav) + 0.1 * F.l1_loss(recon, wav)
        if adversarial:
            loss = loss + adversary.step(wav, recon, 10)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    result = {"threads": args.threads, "bf16": bf16, "batch": f"{batch} x {frames} frames", "channels": args.channels}
    for name, adversarial in (("mel_only_s", False), ("adversarial_s", True)):
        step(adversarial)  # warm-up
        result[name] = round(statistics.median(step(adversarial) for _ in range(args.steps)), 3)
    result["discriminator_params_m"] = round(sum(p.numel() for p in adversary.discriminators.parameters()) / 1e6, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
