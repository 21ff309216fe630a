"""Log-mel spectrograms of the same utterance, one above the other: `python -m pipelines.evaluations.spectrograms
OUT.png LABEL=AUDIO [LABEL=AUDIO ...] [--seconds S]`.

For a model card, where a reader would rather look than read: the original, and each decoder's render
of it (e.g. `pipelines.evaluations.soundstorm --audio DIR` of two decoders, the same utterance id). 80 mel bands,
the codec stage's 1024/256 resolution, a shared colour scale; needs matplotlib (the `eval` extra).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch

from pipelines.stages.codec import MelLoss
from soundstorm.io.audio import read_audio


def log_mel(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """[mels, frames] in log units, the codec stage's middle resolution (`MelLoss`, 1024/256, 80 bands)."""
    return MelLoss(sample_rate).log_mel(torch.from_numpy(np.asarray(samples, dtype=np.float32))[None], 1)[0].numpy()


def plot(out: Path, panels: list[tuple[str, np.ndarray]], sample_rate: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mels = [(label, log_mel(x, sample_rate)) for label, x in panels]
    low = min(float(np.percentile(m, 2)) for _, m in mels)
    high = max(float(m.max()) for _, m in mels)
    fig, axes = plt.subplots(len(mels), 1, figsize=(9, 2.1 * len(mels)), sharex=True, squeeze=False)
    for ax, (label, m) in zip(axes[:, 0], mels, strict=True):
        seconds = m.shape[1] * 256 / sample_rate
        ax.imshow(m, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma", extent=(0, seconds, 0, m.shape[0]))
        ax.set_ylabel("mel band")
        ax.set_title(label, fontsize=10, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80, format="png")
    plt.close(fig)
    from PIL import Image  # matplotlib's own dependency

    Image.open(buffer).convert("RGB").quantize(64).save(out, optimize=True)  # 64 colours: a third the size
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("panels", nargs="+", help="LABEL=AUDIO")
    parser.add_argument("--seconds", type=float, default=4.0, help="the first seconds of each")
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args(argv)
    panels = []
    for item in args.panels:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: expected LABEL=AUDIO")
        audio = read_audio(path, sample_rate=args.sample_rate, max_seconds=args.seconds).samples
        panels.append((label, audio))
    plot(args.out, panels, args.sample_rate)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
