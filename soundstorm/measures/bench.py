"""`soundstorm bench`: SoundStorm against the autoregressive baseline, same input, same machine.

For each duration, both acoustic generators get the same input (a bundled voice's
3 s prompt, and semantic tokens of that length) and fill the same number of codec
levels; SoundStorm in the sum of its per-level iterations (16, 1, 1, ...), the AR
baseline one token per forward pass (T x Q passes, with a KV cache). T2S and the
codec decoder are timed on the same duration. One warm-up, then the median of
`runs` runs. Where the bundle's decoder renders SoundStorm's level-1 distribution
(posterior decoding, the chain's default there), that one pass is timed too. The
measurements are of the generators' arithmetic: an AR baseline
without trained weights in the bundle is random-initialised at the same size and
said so in the report (its speed does not depend on its weights; its quality does).
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from soundstorm.base.errors import InputError
from soundstorm.base.runtime import autocast, resolve_precision
from soundstorm.chain.prompts import REFERENCE_PROMPT_S


@dataclass
class BenchPoint:
    duration_s: float
    soundstorm_s: float
    ar_s: float
    ratio: float  # AR time / SoundStorm time
    t2s_s: float | None
    decode_s: float
    soundstorm_passes: int
    ar_steps: int
    soundstorm_rtf: float
    ar_rtf: float
    posterior_s: float | None = None  # SoundStorm's one posterior pass, where the decoder renders it


@dataclass
class BenchReport:
    device: str
    dtype: str
    threads: int
    cpu: str
    ar_weights: str
    runs: int
    results: list[BenchPoint] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def run_bench(
    synth,
    ar_model,
    ar_weights: str,
    durations: list[float],
    runs: int = 3,
    precision: str = "auto",
    seed: int = 0,
    progress=None,
) -> BenchReport:
    """Time T2S, SoundStorm, the AR baseline and the codec decoder at each duration."""
    import torch

    from soundstorm.chain.decoding import (
        DecodingOptions,
        PromptTokens,
        decode_prompted,
        first_level_posterior,
        overlap_frames,
    )
    from soundstorm.chain.semantic import SEMANTIC_RATE, semantic_to_codec

    if runs < 1 or not durations:
        raise InputError("bench needs at least one duration and one run")
    storm, codec, device = synth.soundstorm, synth.codec, synth.device
    levels = storm.config.levels
    voice = synth.prompt(synth.voice_for(0), REFERENCE_PROMPT_S)
    P = voice.codes.shape[1]
    p_sem = semantic_to_codec(torch.as_tensor(voice.semantic), synth.ratio, P)
    prompt = [PromptTokens(voice.codes, p_sem, 1)]
    decoding = DecodingOptions.paper(levels, seed=seed)
    overlap = overlap_frames(storm.config.window, codec.frame_rate)
    precision = resolve_precision(precision, device)  # both generators run in it
    report = _new_report(device, precision, ar_weights, runs)
    for n, seconds in enumerate([min(durations), *durations]):  # the first is a warm-up
        T = int(round(seconds * codec.frame_rate))
        reps = int(np.ceil(T / max(1, P)))
        semantic = torch.cat([p_sem, p_sem.repeat(reps)[:T]]).to(device)
        speakers = torch.ones(P + T, dtype=torch.long, device=device)

        def soundstorm(semantic=semantic, speakers=speakers):
            with autocast(device, precision):  # as `say` runs: one window, or window by window past it
                result = decode_prompted(storm, semantic[P:], speakers[P:], prompt, decoding, overlap)
            _sync(device)
            return result

        def ar(semantic=semantic, speakers=speakers):
            with autocast(device, precision):
                out = ar_model.generate(semantic, speakers, voice.codes.to(device), seed=seed)
            _sync(device)
            return out

        def posterior(semantic=semantic, speakers=speakers):
            with autocast(device, precision):
                result = first_level_posterior(storm, semantic[P:], speakers[P:], prompt)
            _sync(device)
            return result

        storm_s, result = _median_time(soundstorm, runs if n else 1)
        posterior_s = _median_time(posterior, runs if n else 1)[0] if codec.renders_posterior else None
        ar_s, (_, ar_steps) = _median_time(ar, runs if n else 1)
        given = semantic[P :: synth.ratio] if codec.needs_semantic else None
        decode_s, _ = _median_time(
            lambda r=result, g=given: codec.decode(r.codes, semantic=g), runs if n else 1
        )
        t2s_s = _time_t2s(synth, int(round(seconds * SEMANTIC_RATE)), runs if n else 1, seed)
        if n == 0:
            continue
        point = _point(seconds, storm_s, ar_s, t2s_s, decode_s, result.forward_passes, ar_steps)
        report.results.append(
            replace(point, posterior_s=None if posterior_s is None else round(posterior_s, 4))
        )
        if progress:
            progress("bench", len(report.results), len(durations))
    return report


def _new_report(device, precision: str, ar_weights: str, runs: int) -> BenchReport:
    """An empty report that names the machine and what runs on it."""
    import torch

    return BenchReport(
        device=str(device),
        dtype=precision,
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        ar_weights=ar_weights,
        runs=runs,
    )


def _point(seconds, storm_s, ar_s, t2s_s, decode_s, passes, ar_steps) -> BenchPoint:
    return BenchPoint(
        duration_s=seconds,
        soundstorm_s=round(storm_s, 4),
        ar_s=round(ar_s, 4),
        ratio=round(ar_s / storm_s, 2),
        t2s_s=None if t2s_s is None else round(t2s_s, 4),
        decode_s=round(decode_s, 4),
        soundstorm_passes=passes,
        ar_steps=ar_steps,
        soundstorm_rtf=round(storm_s / seconds, 4),
        ar_rtf=round(ar_s / seconds, 4),
    )


def _time_t2s(synth, tokens: int, runs: int, seed: int) -> float | None:
    """T2S producing exactly `tokens` semantic tokens (forced length: timing, not content), sampled as
    the tool samples (`T5Stepper`: top-k 50, its own cache, fp32)."""
    import torch

    from soundstorm.models.t2s import END

    if not synth.has_t2s:
        return None
    t2s = synth.t2s
    text = t2s.input_ids(synth.text_tokenizer.encode("the quick brown fox jumps over the lazy dog " * 8))

    def no_end(scores, length, last):  # as generate()'s min_new_tokens: the length is the duration's
        scores[END] = float("-inf")

    def run():
        torch.manual_seed(seed)
        return t2s.stepper.sample(text, [0], tokens, no_end, END, temperature=1.0, top_k=50)

    return _median_time(run, runs)[0]


def random_ar_baseline(soundstorm_config, seed: int = 0):
    """An AR baseline of SoundStorm's size with random weights (timing only)."""
    import torch

    from soundstorm.models.ar_baseline import ARBaseline, ARConfig

    c = soundstorm_config
    torch.manual_seed(seed)
    config = ARConfig(
        levels=c.levels,
        codebook_size=c.codebook_size,
        semantic_vocab=c.semantic_vocab,
        dim=c.dim,
        layers=c.layers,
        heads=c.heads,
    )
    return ARBaseline(config).eval()


def plot_bench(report: BenchReport, path) -> None:
    """Time vs duration, both generators, log scale (needs matplotlib: the `eval` extra)."""
    from soundstorm.base.errors import OutputError
    from soundstorm.io.audio import replaced_atomically

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OutputError("--plot needs matplotlib: pip install 'soundstorm[eval]'") from exc
    xs = [p.duration_s for p in report.results]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(xs, [p.soundstorm_s for p in report.results], "o-", label="SoundStorm")
    ax.plot(xs, [p.ar_s for p in report.results], "s-", label=f"AR baseline ({report.ar_weights})")
    ax.set_yscale("log")
    ax.set_xlabel("audio duration (s)")
    ax.set_ylabel("acoustic generation (s)")
    ax.set_title(f"{report.device}, {report.dtype}, {report.threads} threads")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    try:
        with replaced_atomically(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def ar_baseline_of(synth, fallback: str, warn):
    """(model, "trained") from the bundle, else a random-init one of SoundStorm's size, said with `warn`."""
    if "ar_baseline" in synth.bundle.components:
        from soundstorm.bundles.checkpoints import component_path
        from soundstorm.models.ar_baseline import load_ar_baseline

        folder = component_path(synth.bundle, "ar_baseline")
        return load_ar_baseline(folder, device=str(synth.device)), "trained"
    warn(f"bundle '{synth.bundle.name}' has no trained AR baseline: {fallback}")
    return random_ar_baseline(synth.soundstorm.config).to(synth.device), "random-init"


def bench_table(report: BenchReport):
    """The report as a rich table, for the terminal."""
    from rich.table import Table

    table = Table(
        title=f"SoundStorm vs AR baseline: {report.device}, {report.dtype}, {report.threads} threads, "
        f"median of {report.runs}"
    )
    columns = (
        "audio s",
        "T2S s",
        "SoundStorm s",
        "passes",
        "AR s",
        "AR steps",
        "AR / SoundStorm",
        "decode s",
    )
    posterior = any(p.posterior_s is not None for p in report.results)
    columns += ("posterior s",) if posterior else ()
    for column in columns:
        table.add_column(column, justify="right")
    for p in report.results:
        extra = (f"{p.posterior_s:.2f}",) if posterior else ()
        table.add_row(
            f"{p.duration_s:g}",
            "-" if p.t2s_s is None else f"{p.t2s_s:.2f}",
            f"{p.soundstorm_s:.2f}",
            str(p.soundstorm_passes),
            f"{p.ar_s:.2f}",
            str(p.ar_steps),
            f"{p.ratio:.1f}x",
            f"{p.decode_s:.2f}",
            *extra,
        )
    return table
