"""Start SoundStorm, the AR baseline or the T5 from weights trained on other semantic tokens: carry each
token's embedding across.

    python -m pipelines.stages.soundstorm_init --config C --from soundstorm/assets/tiny/soundstorm \\
        --old-semantic soundstorm/assets/tiny/semantic/semantic.safetensors --out DIR [--hours 0.5]
    ... --model ar_baseline --from soundstorm/assets/tiny/ar_baseline ...    # then --set ar.init_from=DIR
    ... --model t2s --from soundstorm/assets/tiny/t2s ...                    # then --set t2s.init_from=DIR

`soundstorm.init_from` keeps what a trained SoundStorm knows of time, speaker tracks and alignment, but its
semantic embedding means the tokens it was trained on. When the data set's semantic stage made other tokens
(`semantic.kind: learnt`, or k-means refitted), this tool tokenizes `--hours` of the training split with both
tokenizers, counts which old token each new token falls on, frame by frame, and starts each new token's
embedding at the count-weighted mean of the old tokens' embeddings (a new token seen on no frame: the mean of
them all; the padding row is kept). Everything else is copied. The same for the AR baseline's semantic
embedding, and for the T5's rows of the semantic tokens in its shared vocabulary (tied: what it reads and what
it predicts). Writes a folder at `--out` for `--set soundstorm.init_from=DIR` (`ar.init_from`, `t2s.init_from`).
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


def carried_rows(rows: torch.Tensor, counts: np.ndarray) -> torch.Tensor:
    """The old tokens' rows [old_vocab, D] -> the new tokens' [new_vocab, D]: each the count-weighted mean of
    the old rows it met, a new token seen on no frame the mean of them all."""
    weights = torch.from_numpy(counts).to(rows.dtype)
    seen = weights.sum(1) > 0
    new = rows.mean(0).expand(len(counts), -1).clone()
    new[seen] = (weights[seen] / weights[seen].sum(1, keepdim=True)) @ rows
    return new


def carried_embedding(embedding: torch.Tensor, counts: np.ndarray) -> torch.Tensor:
    """An old semantic embedding [old_vocab + 1, D] (its last row the padding) -> [new_vocab + 1, D]."""
    old_vocab = embedding.shape[0] - 1
    return torch.cat([carried_rows(embedding[:old_vocab], counts), embedding[old_vocab:]])


def carried_t2s(t2s, counts: np.ndarray):
    """A T2S whose shared vocabulary's semantic rows [FIRST_SEMANTIC, FIRST_SEMANTIC + old_vocab) are carried
    onto the new tokens (the same number of them: the text pieces' rows keep their places)."""
    from soundstorm.models.t2s import FIRST_SEMANTIC

    old_vocab = t2s.config.semantic_vocab
    if counts.shape != (old_vocab, old_vocab):
        raise ValueError(
            f"the T5's vocabulary holds {old_vocab} semantic tokens, the new tokenizer {len(counts)}"
        )
    shared = t2s.model.get_input_embeddings().weight
    with torch.no_grad():
        span = slice(FIRST_SEMANTIC, FIRST_SEMANTIC + old_vocab)
        shared[span] = carried_rows(shared[span].clone(), counts)
    return t2s


MODELS = ("soundstorm", "ar_baseline", "t2s")


def carry(kind: str, source: Path, out: Path, counts: np.ndarray, old_vocab: int) -> None:
    """Load the `kind` folder `source` (trained on `old_vocab` tokens), carry its semantic rows, write `out`."""
    from pipelines.stages.t2s import save_shipped
    from soundstorm.bundles.checkpoints import save_model_folder
    from soundstorm.models.ar_baseline import load_ar_baseline
    from soundstorm.models.soundstorm import load_soundstorm
    from soundstorm.models.t2s import load_t2s

    load = {"soundstorm": load_soundstorm, "ar_baseline": load_ar_baseline, "t2s": load_t2s}[kind]
    model = load(source)
    if model.config.semantic_vocab != old_vocab:
        raise ValueError(
            f"{source} reads {model.config.semantic_vocab} semantic tokens, the old tokenizer makes {old_vocab}"
        )
    if kind == "t2s":
        carried_t2s(model, counts)
        save_shipped(model.model, model.config, out)
        return
    state = model.state_dict()
    state["semantic_embedding.weight"] = carried_embedding(state["semantic_embedding.weight"], counts)
    settings = dataclasses.asdict(model.config)
    settings["semantic_vocab"] = len(counts)
    save_model_folder(out, state, settings)


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import config_of, config_parser
    from pipelines.stages.semantic import training_features
    from soundstorm.base.errors import SoundstormError
    from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder

    parser = config_parser(__doc__)
    parser.add_argument(
        "--model", nargs="+", choices=MODELS, default=["soundstorm"], help="what each --from is"
    )
    parser.add_argument(
        "--from", dest="source", nargs="+", required=True, type=Path, help="the folders to start from"
    )
    parser.add_argument(
        "--old-semantic", required=True, type=Path, help="the semantic tokenizer they were trained on"
    )
    parser.add_argument("--out", nargs="+", required=True, type=Path, help="a folder for each --from")
    parser.add_argument("--hours", type=float, default=0.5)
    args = parser.parse_args(argv)
    if not len(args.model) == len(args.source) == len(args.out):
        print(
            "error: give as many --model, --from and --out as each other, in the same order", file=sys.stderr
        )
        return 2
    config = config_of(args)
    new_path = config.out_dir / "semantic" / "semantic.safetensors"
    if not new_path.is_file():
        print(f"error: no semantic tokenizer at {new_path}: run the semantic stage first", file=sys.stderr)
        return 2
    try:
        old, new = SemanticTokenizer.load(args.old_semantic), SemanticTokenizer.load(new_path)
    except SoundstormError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    encoder = WhisperEncoder(config.semantic.whisper_model, threads=2)
    _, _, features = training_features(config, encoder, args.hours)
    counts = cooccurrence(
        [old.assign(f) for f in features], [new.assign(f) for f in features], old.num_tokens, new.num_tokens
    )
    for kind, source, out in zip(args.model, args.source, args.out, strict=True):
        try:
            carry(kind, source, out, counts, old.num_tokens)
        except (SoundstormError, ValueError) as exc:
            print(f"error: {kind} {source}: {exc}", file=sys.stderr)
            return 2
        print(f"soundstorm_init: {kind} -> {out}")
    seen = int((counts.sum(1) > 0).sum())
    print(f"soundstorm_init: {seen} of {new.num_tokens} new tokens seen on {int(counts.sum())} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
