"""The two acoustic generators alone, timed on any device, at the shipped and at the paper's sizes.

    python benchmarks/acoustic_speed.py --device cuda --json out.json

SoundStorm (16 passes on level 1, 1 on each finer level) against the AR baseline (one pass per
token, KV cache) on the same input: a 3 s prompt and T frames of semantic tokens. Decoding time
depends on the sizes and the length, not on the weights or the tokens (SoundStorm's pass count is
fixed; the AR baseline always emits T x Q tokens), so both are random-init and the inputs random:
this runs where no bundle, codec or Whisper is at hand (a lent GPU). `soundstorm bench` times the
whole chain with the shipped bundle.

`--train-step` also times one SoundStorm training step (AdamW, the paper's mask) at
each size, with its peak GPU memory: what `pipelines/configs/base.yaml` costs a GPU user.

Sizes: `tiny` is the embedded bundle's (d=256, 6 layers, 4 levels); `base` is the paper's
(Conformer 12 x 1024, 16 heads, 8 levels), as in base.yaml.
"""

from __future__ import annotations

import argparse
import json

import torch

from soundstorm.base.runtime import PRECISIONS, autocast, resolve_precision
from soundstorm.chain.decoding import DecodingOptions, PromptTokens, decode_prompted
from soundstorm.chain.prompts import REFERENCE_PROMPT_S
from soundstorm.measures.bench import _median_time, _sync
from soundstorm.models.ar_baseline import ARBaseline, ARConfig
from soundstorm.models.soundstorm import SoundStorm, SoundStormConfig, soundstorm_loss

FRAME_RATE = 50  # codec frames a second (the tiny codec's; EnCodec 24 kHz is 75)
SIZES = {
    "tiny": dict(levels=4, dim=256, layers=6, heads=4, conv_kernel=15),
    "base": dict(levels=8, dim=1024, layers=12, heads=16, conv_kernel=31),
}


def _timed(fn, runs: int, device: torch.device, warmup=None) -> float:
    """Median seconds of `runs` calls after one warm-up call (of `warmup` if given: a shorter one)."""
    (warmup or fn)()
    _sync(device)
    return _median_time(lambda: (fn(), _sync(device)), runs)[0]


def models(size: str, window: int, device: torch.device) -> tuple[SoundStorm, ARBaseline]:
    s = SIZES[size]
    torch.manual_seed(0)
    storm = SoundStorm(SoundStormConfig(**s, dropout=0.0, window=window)).to(device).eval()
    ar = ARBaseline(ARConfig(levels=s["levels"], dim=s["dim"], layers=s["layers"], heads=s["heads"])).to(
        device
    )
    return storm, ar.eval()


def generation(size: str, seconds: float, runs: int, device: torch.device, precision: str) -> dict:
    P, T = int(REFERENCE_PROMPT_S * FRAME_RATE), int(seconds * FRAME_RATE)
    storm, ar = models(size, P + T, device)
    Q, K = storm.config.levels, storm.config.codebook_size
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(0, storm.config.semantic_vocab, (P + T,), generator=g).to(device)
    speakers = torch.ones(P + T, dtype=torch.long, device=device)
    prompt = torch.randint(0, K, (Q, P), generator=g).to(device)
    decoding = DecodingOptions.paper(Q)

    @torch.no_grad()
    def soundstorm():
        with autocast(device, precision):  # the model's window is P + T: one pass, as `say` renders it
            return decode_prompted(
                storm, semantic[P:], speakers[P:], [PromptTokens(prompt, semantic[:P], 1)], decoding, 0
            )

    @torch.no_grad()
    def autoregressive(frames: int = P + T):
        with autocast(device, precision):
            return ar.generate(semantic[:frames], speakers[:frames], prompt)

    storm_s = _timed(soundstorm, runs, device)
    # the AR warm-up generates 1 s: its kernels and cache code paths are the same at any length
    ar_s = _timed(autoregressive, runs, device, warmup=lambda: autoregressive(P + FRAME_RATE))
    return {
        "size": size,
        "audio_s": seconds,
        "levels": Q,
        "soundstorm_s": round(storm_s, 4),
        "soundstorm_passes": sum(decoding.iterations),
        "ar_s": round(ar_s, 4),
        "ar_steps": T * Q,
        "ratio": round(ar_s / storm_s, 1),
        "soundstorm_rtf": round(storm_s / seconds, 5),
    }


def train_step(
    size: str, frames: int, seconds: float, runs: int, device: torch.device, precision: str
) -> dict:
    """One AdamW step on `frames` padded frames in windows of `seconds` (random tokens)."""
    T = int(seconds * FRAME_RATE)
    B = max(1, frames // T)
    storm, _ = models(size, T, device)
    storm.train()
    optimizer = torch.optim.AdamW(storm.parameters(), lr=1e-4)
    c = storm.config
    g = torch.Generator().manual_seed(1)
    batch = {
        "codes": torch.randint(0, c.codebook_size, (B, c.levels, T), generator=g).to(device),
        "semantic": torch.randint(0, c.semantic_vocab, (B, T), generator=g).to(device),
        "speakers": torch.ones(B, T, dtype=torch.long, device=device),
        "lengths": torch.full((B,), T, device=device),
        "prompt_lengths": torch.zeros(B, dtype=torch.long, device=device),
    }

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = soundstorm_loss(storm, batch)[0]
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = _timed(step, runs, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "size": size,
        "params_m": round(sum(p.numel() for p in storm.parameters()) / 1e6, 1),
        "batch": f"{B} x {T} frames",
        "step_s": round(step_s, 4),
        "peak_gib": None if peak is None else round(peak, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="tiny,base")
    parser.add_argument("--durations", default="10,30")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: bf16 where native")
    parser.add_argument("--train-step", action="store_true")
    parser.add_argument("--frames", type=int, default=16000, help="padded frames per training step")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": precision,
        "torch": torch.__version__,
        "generation": [],
        "training": [],
    }

    def add(kind: str, row: dict) -> None:
        report[kind].append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # after every row: a run cut short keeps what it measured
            with open(args.json, "w") as handle:
                json.dump(report, handle, indent=1)

    for size in args.sizes.split(","):
        for seconds in [float(d) for d in args.durations.split(",")]:
            add("generation", generation(size, seconds, args.runs, device, precision))
        if args.train_step:
            add("training", train_step(size, args.frames, 30.0, args.runs + 3, device, precision))


if __name__ == "__main__":
    main()
