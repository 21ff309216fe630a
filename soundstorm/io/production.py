"""What a rendered dialogue becomes for an editor: speaker stems, a stereo placement, a loudness target.

- **Stems**: every sample of the mix belongs to one speaker (a turn runs from its start to the next
  turn's start; the first from 0), so a speaker's stem is the mix there and silence elsewhere, and
  the stems add up to the mix exactly.
- **Stereo**: each speaker is panned with the constant-power law (gains cos θ and sin θ, θ = (pan + 1)
  π/4, so L² + R² is the mono power at any pan); by default the speakers spread over [-0.3, 0.3] in
  their order of appearance: S1 slightly left, S2 slightly right.
- **Loudness**: the programme is brought to an integrated loudness target (ITU-R BS.1770 / EBU R128,
  measured by pyloudnorm), and a look-ahead brick-wall limiter with a 4x-oversampled (true-peak)
  side chain (pedalboard's `BrickwallLimiter`) holds its peaks under the ceiling, as podcast chains do:
  turning the whole programme down instead would miss the target (issue 38: -17.9 LUFS for -16). The
  gain is raised again by what the limiting took (a few rounds, until within 0.1 LU), and the limiter's
  ceiling lowered by any true-peak overshoot it leaves. Mix and stems get the same gain curve, so they
  still add up; the report says the loudness and peaks before and after, the gain and the limiting.

Samples: mono [S] or stereo [S, 2] float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from soundstorm.base.errors import InputError

DEFAULT_SPREAD = 0.3  # the default pans lie in [-DEFAULT_SPREAD, DEFAULT_SPREAD]
LUFS_RANGE = (-70.0, -5.0)
TRUE_PEAK_RANGE = (-20.0, 0.0)
_SAFE_PEAK = 0.99  # without a loudness target: a mix that would clip is scaled down to this


@dataclass(frozen=True)
class Production:
    """Per-call output settings; the defaults leave the mono render as it is."""

    stereo: bool = False
    pans: dict[str, float] = field(default_factory=dict)  # speaker -> pan in [-1, 1] (stereo only)
    stems: bool = False
    loudness_lufs: float | None = None
    true_peak_db: float = -1.0

    def check(self, speakers: list[str] | None) -> Production:
        """Refuse settings that cannot apply (before any model loads); `speakers` None: any names."""
        unknown = sorted(set(self.pans) - set(speakers)) if speakers is not None else []
        if unknown:
            raise InputError(
                f"--pan given for {', '.join(unknown)}, who has no turn (speakers: {', '.join(speakers)})"
            )
        if self.pans and not self.stereo:
            raise InputError("--pan places speakers in a stereo mix: add --stereo")
        for name, pan in self.pans.items():
            if not -1 <= pan <= 1:
                raise InputError(f"--pan {name}={pan:g}: a pan is in [-1, 1] (-1 left, 0 centre, 1 right)")
        if self.loudness_lufs is not None and not LUFS_RANGE[0] <= self.loudness_lufs <= LUFS_RANGE[1]:
            raise InputError(
                f"--loudness {self.loudness_lufs:g}: a target in [{LUFS_RANGE[0]:g}, {LUFS_RANGE[1]:g}] LUFS"
            )
        if not TRUE_PEAK_RANGE[0] <= self.true_peak_db <= TRUE_PEAK_RANGE[1]:
            raise InputError(
                f"--true-peak {self.true_peak_db:g}: a ceiling in [{TRUE_PEAK_RANGE[0]:g}, 0] dBTP"
            )
        return self


@dataclass
class Produced:
    """The mix, each speaker's stem in the mix's layout, and the loudness report (None without a target)."""

    mix: np.ndarray
    stems: dict[str, np.ndarray]
    loudness: dict | None = None


def pan_gains(pan: float) -> tuple[float, float]:
    """(left, right) gains of the constant-power law: their squares add up to 1 at every pan."""
    theta = (pan + 1) * math.pi / 4
    return math.cos(theta), math.sin(theta)


def default_pans(speakers: list[str]) -> dict[str, float]:
    """Speakers spread evenly over [-0.3, 0.3] in order of appearance; one speaker is centred."""
    if len(speakers) == 1:
        return {speakers[0]: 0.0}
    step = 2 * DEFAULT_SPREAD / (len(speakers) - 1)
    return {s: round(-DEFAULT_SPREAD + n * step, 6) for n, s in enumerate(speakers)}


def split_stems(mix: np.ndarray, turns, sample_rate: int) -> dict[str, np.ndarray]:
    """Mono mix [S] -> speaker -> stem [S]: each sample goes to the turn that started last before it."""
    speakers = list(dict.fromkeys(t.speaker for t in turns))
    stems = {s: np.zeros_like(mix) for s in speakers}
    starts = [0] + [min(len(mix), int(round(t.start_s * sample_rate))) for t in turns[1:]]
    ends = starts[1:] + [len(mix)]
    for turn, start, end in zip(turns, starts, ends, strict=True):
        stems[turn.speaker][start:end] = mix[start:end]
    return stems


def true_peak_db(samples: np.ndarray, sample_rate: int) -> float:
    """The true peak in dBTP: the sample peak of the signal oversampled 4× (BS.1770 Annex 2's method)."""
    from soundstorm.io.audio import resample

    channels = samples.reshape(len(samples), -1)
    peak = max(
        float(np.abs(resample(channels[:, c], sample_rate, 4 * sample_rate)).max(initial=0.0))
        for c in range(channels.shape[1])
    )
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness in LUFS (pyloudnorm); -inf for silence."""
    import pyloudnorm

    if len(samples) < int(0.4 * sample_rate):
        raise InputError("the audio is shorter than 0.4 s: its loudness cannot be measured")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(samples.astype(np.float64)))


def _limit(samples: np.ndarray, sample_rate: int, ceiling_db: float) -> np.ndarray:
    """The gain curve [S] (<= 1) of a look-ahead true-peak brick-wall limiter on `samples` [S] or [S, C].

    pedalboard's limiter is a gain computer (latency compensated, linked across channels): its output is
    the input times one smooth gain curve, read back here from the loudest channel of each sample so that
    the same curve can be applied to the stems."""
    import pedalboard

    limiter = pedalboard.BrickwallLimiter(ceiling_db=ceiling_db, release_ms=100.0, lookahead_ms=5.0, true_peak=True)
    channels = samples.reshape(len(samples), -1).astype(np.float32)
    limited = limiter(np.ascontiguousarray(channels.T), sample_rate, reset=True).T
    loudest = np.abs(channels).argmax(axis=1)
    rows = np.arange(len(channels))
    before, after = channels[rows, loudest], limited[rows, loudest]
    known = np.abs(before) > 1e-4 * max(float(np.abs(before).max(initial=0.0)), 1e-12)
    if not known.any():
        return np.ones(len(samples), dtype=np.float32)
    curve = np.interp(rows, rows[known], after[known] / before[known])
    return np.clip(curve, 0.0, 1.0).astype(np.float32)


def _measure(mix: np.ndarray, curve: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(LUFS, dBTP) of `mix` under the gain curve."""
    after = mix * curve.reshape(-1, *([1] * (mix.ndim - 1)))
    return integrated_loudness(after, sample_rate), true_peak_db(after, sample_rate)


def _reach_loudness(mix: np.ndarray, sample_rate: int, target: float, ceiling: float, rounds: int = 6):
    """(gain curve [S], report): `mix` brought to `target` LUFS with its true peaks under `ceiling` dBTP."""
    before = integrated_loudness(mix, sample_rate)
    if not math.isfinite(before):
        raise InputError("the audio is silent: there is no loudness to normalise")
    peak_before = true_peak_db(mix, sample_rate)
    gain_db, limiter_db = target - before, ceiling - 0.1
    for _ in range(rounds):
        applied = gain_db, limiter_db
        curve = 10 ** (gain_db / 20) * _limit(mix * 10 ** (gain_db / 20), sample_rate, limiter_db)
        lufs, peak = _measure(mix, curve, sample_rate)
        if peak > ceiling:  # the oversampled side chain still let an inter-sample peak through
            limiter_db -= peak - ceiling + 0.05
        elif abs(lufs - target) > 0.1:  # the limiting took some loudness: give it back
            gain_db += target - lufs
        else:
            break
    gain_db, limiter_db = applied
    if peak > ceiling:  # out of rounds: the ceiling is a promise, the target a goal
        curve = curve * 10 ** ((ceiling - peak) / 20)
        lufs, peak = _measure(mix, curve, sample_rate)
    reduction = 20 * np.log10(np.maximum(curve / 10 ** (gain_db / 20), 1e-9))
    report = {
        "target_lufs": target,
        "true_peak_ceiling_db": ceiling,
        "before": {"lufs": round(before, 2), "true_peak_db": round(peak_before, 2)},
        "after": {"lufs": round(lufs, 2), "true_peak_db": round(peak, 2)},
        "gain_db": round(gain_db, 2),
        "limiter": {
            "ceiling_db": round(limiter_db, 2),
            "max_reduction_db": round(float(-reduction.min(initial=0.0)), 2),
            "limited_share": round(float((reduction < -0.01).mean()), 4),
        },
    }
    return curve, report


def produce(audio: np.ndarray, turns, sample_rate: int, production: Production) -> Produced:
    """Stems, stereo placement and loudness for a mono render `audio` [S] of `turns`."""
    stems = split_stems(audio, turns, sample_rate) if production.stems or production.stereo else {}
    if production.stereo:
        pans = default_pans(list(stems)) | production.pans
        stems = {s: np.stack([g * x for g in pan_gains(pans[s])], axis=1) for s, x in stems.items()}
        mix = sum(stems.values())
    else:
        mix = audio
    if production.loudness_lufs is not None:
        gain, report = _reach_loudness(mix, sample_rate, production.loudness_lufs, production.true_peak_db)
    else:
        peak = float(np.abs(mix).max(initial=0.0))
        gain, report = (_SAFE_PEAK / peak if peak > 1.0 else 1.0), None
    if np.ndim(gain):  # a gain curve [S]: the same for every channel and every stem
        gain = gain.reshape(-1, *([1] * (mix.ndim - 1)))
    return Produced(
        mix=(mix * gain).astype(np.float32),
        stems={s: (x * gain).astype(np.float32) for s, x in stems.items()} if production.stems else {},
        loudness=report,
    )
