"""Start SoundStorm from weights trained on other semantic tokens: carry each token's embedding across.

    python -m pipelines.stages.soundstorm_init --config C --from soundstorm/assets/tiny/soundstorm \\
        --old-semantic soundstorm/assets/tiny/semantic/semantic.safetensors --out DIR [--hours 0.5]

`soundstorm.init_from` keeps what a trained SoundStorm knows of time, speaker tracks and alignment, but its
semantic embedding means the tokens it was trained on. When the data set's semantic stage made other tokens
(`semantic.kind: learnt`, or k-means refitted), this tool tokenizes `--hours` of the training split with both
tokenizers, counts which old token each new token falls on, frame by frame, and starts each new token's
embedding at the count-weighted mean of the old tokens' embeddings (a new token seen on no frame: the mean of
them all; the padding row is kept). Everything else is copied. Writes a SoundStorm folder at `--out` for
`--set soundstorm.init_from=DIR`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch


def cooccurrence(old: list[np.ndarray], new: list[np.ndarray], old_vocab: int, new_vocab: int) -> np.ndarray:
    """counts [new_vocab, old_vocab]: on how many frames each new token met each old one."""
    counts = np.zeros((new_vocab, old_vocab), dtype=np.float64)
    for a, b in zip(old, new, strict=True):
        n = min(len(a), len(b))
        np.add.at(counts, (b[:n], a[:n]), 1)
    return counts


def carried_embedding(embedding: torch.Tensor, counts: np.ndarray) -> torch.Tensor:
    """An old semantic embedding [old_vocab + 1, D] (its last row the padding) -> [new_vocab + 1, D]."""
    old_vocab = embedding.shape[0] - 1
    weights = torch.from_numpy(counts).float()
    seen = weights.sum(1) > 0
    rows = embedding[:old_vocab].mean(0).expand(len(counts), -1).clone()
    rows[seen] = (weights[seen] / weights[seen].sum(1, keepdim=True)) @ embedding[:old_vocab]
    return torch.cat([rows, embedding[old_vocab:]])


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import config_of, config_parser
    from pipelines.stages.semantic import training_features
    from soundstorm.bundles.checkpoints import save_model_folder
    from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder
    from soundstorm.models.soundstorm import load_soundstorm

    parser = config_parser(__doc__)
    parser.add_argument("--from", dest="source", required=True, type=Path, help="the SoundStorm folder to start from")
    parser.add_argument("--old-semantic", required=True, type=Path, help="the semantic tokenizer it was trained on")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--hours", type=float, default=0.5)
    args = parser.parse_args(argv)
    config = config_of(args)
    new_path = config.out_dir / "semantic" / "semantic.safetensors"
    if not new_path.is_file():
        print(f"error: no semantic tokenizer at {new_path}: run the semantic stage first", file=sys.stderr)
        return 2
    encoder = WhisperEncoder(config.semantic.whisper_model, threads=2)
    old, new = SemanticTokenizer.load(args.old_semantic), SemanticTokenizer.load(new_path)
    model = load_soundstorm(args.source)
    if model.config.semantic_vocab != old.num_tokens:
        print(
            f"error: {args.source} reads {model.config.semantic_vocab} semantic tokens, {args.old_semantic} makes"
            f" {old.num_tokens}",
            file=sys.stderr,
        )
        return 2
    _, _, features = training_features(config, encoder, args.hours)
    counts = cooccurrence(
        [old.assign(f) for f in features], [new.assign(f) for f in features], old.num_tokens, new.num_tokens
    )
    state = model.state_dict()
    state["semantic_embedding.weight"] = carried_embedding(state["semantic_embedding.weight"], counts)
    settings = dataclasses.asdict(model.config)
    settings["semantic_vocab"] = new.num_tokens
    save_model_folder(args.out, state, settings)
    seen = int((counts.sum(1) > 0).sum())
    print(f"soundstorm_init: {args.out} ({seen} of {new.num_tokens} new tokens seen on {int(counts.sum())} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
