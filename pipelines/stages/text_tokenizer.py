"""Stage 2: the text tokenizer: SentencePiece trained on the corpus text, or espeak-ng phonemes.

    python -m pipelines text-tokenizer --config pipelines/configs/tiny.yaml

Unigram with byte fallback (no text is ever out of vocabulary), the control
pieces of `soundstorm.chain.text` (separator, pause, speaker turns) as
user-defined pieces. Only the train and valid splits' text is used. With `experimental.phoneme_t5` it
writes the fixed phoneme vocabulary instead (`soundstorm/chain/phonemes.py`).
"""

from __future__ import annotations

import time

from pipelines.config import DataConfig
from pipelines.data.manifest import read_manifest
from soundstorm.chain.phonemes import PhonemeTokenizer
from soundstorm.chain.text import CONTROL_PIECES, TextTokenizer


def _phonemes(config: DataConfig, out) -> dict:
    """The fixed phoneme vocabulary (nothing to fit), and how much of the corpus text it reads as <unk>."""
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = PhonemeTokenizer()
    tokenizer.save(out)
    rows = [r for r in read_manifest(config.out_dir) if r["split"] != "test"]
    lines = sorted({t["text"] for r in rows for t in (r["turns"] or [{"text": r["text"]}])})[:2000]
    ids = [i for line in lines for i in tokenizer.encode(line)]
    return {
        "kind": "phonemes",
        "vocab_size": tokenizer.vocab_size,
        "sentences_checked": len(lines),
        "unknown_share": round(ids.count(0) / max(1, len(ids)), 5),
        "wall_s": round(time.time() - started, 1),
    }


def run(config: DataConfig, progress=None) -> dict:
    import sentencepiece as spm

    out = config.out_dir / "text_tokenizer"
    if config.experimental.phoneme_t5:
        return _phonemes(config, out)
    model = out / "spm.model"
    if model.exists():
        return {"vocab_size": TextTokenizer(str(model)).vocab_size, "skipped": True}
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = [r for r in read_manifest(config.out_dir) if r["split"] != "test"]
    lines = sorted({t["text"] for r in rows for t in (r["turns"] or [{"text": r["text"]}])})
    corpus = out / "text.txt"
    corpus.write_text("\n".join(lines) + "\n")
    spm.set_random_generator_seed(config.seed)
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out / "spm"),
        vocab_size=config.text_tokenizer.vocab_size,
        model_type="unigram",
        byte_fallback=True,
        hard_vocab_limit=False,
        character_coverage=1.0,
        user_defined_symbols=list(CONTROL_PIECES),
        input_sentence_size=200000,
        shuffle_input_sentence=True,
        seed_sentencepiece_size=200000,
        num_threads=1,
        minloglevel=2,
    )
    corpus.unlink()
    tokenizer = TextTokenizer(str(model))
    tokens = sum(len(tokenizer.encode(line)) for line in lines)
    return {
        "vocab_size": tokenizer.vocab_size,
        "sentences": len(lines),
        "tokens": tokens,
        "wall_s": round(time.time() - started, 1),
    }
