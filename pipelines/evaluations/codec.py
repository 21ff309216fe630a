"""Codec evaluation on held-out speakers: `python -m pipelines.evaluations.codec --config ... [--codec DIR]`.

On `codec.eval_utterances` single utterances of the test split (held-out
speakers), for the original audio and the codec's resynthesis with 8, 4, 2 and 1
levels (a decoder that reads a voice vector given the utterance's own, as the chain gives it its
prompt's): Whisper tiny.en CER and WER, resemblyzer similarity to the original,
and log-mel distance to the original. Writes `codec/eval.json`.

With `--natural-corpus DIR` the utterances are instead the held-out natural identities' single
utterances of a corpus built with `corpus.natural_hours` (issue 35's first measure: does the codec keep
a natural voice it never heard?), read from the corpus's per-item rows (no manifest or semantic stage
needed: their semantic tokens come from the shipped tokenizer, or `--semantic FILE`).

With `--guide` as well (a decoder that reads no level or level 1, `codec.decoder_levels: 0` or 1, the go/no-go of
a decoder for the chain's espeak-ng front end without SoundStorm): each utterance's text is rendered by espeak-ng
as the chain's guide, its tokens (and its level 1) go to the decoder with the voice of another utterance of the
same identity (the prompt), and the report gives CER, the render's similarity to the prompt and to the guide, how
often it is nearer the prompt, how much its pitch moves against the utterance's (`pitch_spread`: 1 moves as much,
below 1 flatter), and the original's own similarity to the prompt (the ceiling). A decoder reading level 1 also
renders the utterance's own level 1 and tokens in the prompt's voice (`own_cer`, `own_similarity_to_prompt`):
where level 1 holds the right voice, against espeak-ng's, where it holds another; SoundStorm's lies between.

With `--probe SHARDS` it also measures how predictable the codes are from the
semantic tokens, the first thing SoundStorm must learn: a lookup model
p(code of level 1 | semantic token) counted on the train split (add-0.5
smoothing), its cross-entropy and top-1 accuracy on the test split, beside the
codes' unigram entropy and log(codebook size).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipelines.config import config_of, config_parser
from pipelines.data.manifest import read_manifest
from soundstorm.chain.codec import load_codec
from soundstorm.measures.evaluate import Transcriber, VoiceSimilarity, cer, log_mel_distance, wer


def predictability(shards_dir: Path, smoothing: float = 0.5) -> dict:
    """How well the semantic token alone tells level 1's code (train counts, test figures, in nats)."""
    from pipelines.stages.shards import TokenShards
    from soundstorm.chain.semantic import semantic_to_codec

    def pairs(split: str):
        shards = TokenShards(shards_dir, split)
        codes, sem = [], []
        for i in range(len(shards)):
            item = shards[i]
            level1 = item["codes"][0]
            codes.append(level1)
            sem.append(semantic_to_codec(item["semantic_tokens"], shards.ratio, len(level1)).numpy())
        return np.concatenate(sem), np.concatenate(codes), shards.meta

    sem, codes, meta = pairs("train")
    size, vocab = int(meta["codebook_size"]), int(max(sem.max() + 1, 512))
    counts = np.full((vocab, size), smoothing)
    np.add.at(counts, (sem, codes), 1)
    table = np.log(counts / counts.sum(1, keepdims=True))
    unigram = np.bincount(codes, minlength=size) / len(codes)
    test_sem, test_codes, _ = pairs("test")
    return {
        "codebook_size": size,
        "log_codebook_size": round(float(np.log(size)), 3),
        "unigram_entropy": round(float(-(unigram[unigram > 0] * np.log(unigram[unigram > 0])).sum()), 3),
        "lookup_cross_entropy": round(float(-table[test_sem, test_codes].mean()), 3),
        "lookup_top1": round(float((table[test_sem].argmax(1) == test_codes).mean()), 4),
        "train_frames": int(len(codes)),
        "test_frames": int(len(test_codes)),
    }


def natural_rows(corpus: Path) -> list[dict]:
    """The held-out natural identities' single utterances (test split, `k` group), paths made whole."""
    rows = []
    for path in sorted((corpus / "wavs").glob("sk*.json")):
        row = json.loads(path.read_text())
        if row["split"] == "test":
            rows.append(row | {"path": str(corpus / row["path"])})
    return rows


def tokenize(rows: list[dict], tokenizer: Path | None = None) -> dict:
    """id -> 25 Hz semantic tokens of each row's audio, by the shipped tokenizer (or `tokenizer`)."""
    from soundstorm.bundles.checkpoints import ASSETS
    from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder

    model = SemanticTokenizer.load(
        tokenizer or ASSETS / "tiny" / "semantic" / "semantic.safetensors", WhisperEncoder(threads=2)
    )
    return {r["id"]: model.tokenize([sf.read(r["path"], dtype="float32")[0]])[0] for r in rows}


def pitch_spread(features: np.ndarray) -> float:
    """How much the pitch moves: the deviation of FARGAN's pitch (log2 units) over the frames of speech (energy,
    the first cepstral coefficient, above its median)."""
    from soundstorm.vocoder.fargan import PITCH

    speech = features[:, 0] > np.median(features[:, 0])
    return float(features[speech, PITCH].std()) if speech.sum() > 1 else 0.0


def evaluate_guide(codec_dir: Path, rows: list[dict], sources: list[dict], tokenize_clip, asr, sim) -> dict:
    """The `--guide` test of `rows`, each voiced by another of `sources` (same speaker, the next in order);
    `tokenize_clip(audio)` -> 25 Hz tokens, `asr(audio)` -> text, `sim(a, b)` -> similarity."""
    from pipelines.stages.feature_codec import VOICE_LEVELS
    from soundstorm.chain.frontends import espeak_render
    from soundstorm.chain.prompts import trim_silence
    from soundstorm.chain.semantic import SAMPLE_RATE
    from soundstorm.chain.text import normalize
    from soundstorm.vocoder import fargan

    codec = load_codec(codec_dir)
    reads_level = getattr(codec.model.config, "decoder_levels", 2)
    if not (codec.needs_semantic and codec.reads_voice and reads_level <= 1):
        raise SystemExit(
            "error: --guide renders a decoder that reads the semantic tokens, a voice and at most level 1 "
            "(codec.decoder_levels: 0 or 1, codec.semantic: true, codec.voice: true)"
        )
    per = []
    for row in rows:
        mates = [r for r in sources if r["speaker"] == row["speaker"] and r["id"] != row["id"]]
        if not mates:
            continue
        source = next((r for r in mates if r["id"] > row["id"]), mates[0])
        prompt = sf.read(source["path"], dtype="float32")[0]
        wav = sf.read(row["path"], dtype="float32")[0]
        guide = trim_silence(espeak_render(normalize(row["text"])), SAMPLE_RATE)
        tokens = torch.from_numpy(np.asarray(tokenize_clip(guide), dtype=np.int64))
        prompt = prompt[: 3 * SAMPLE_RATE]
        # the voice of the levels SoundStorm renders (a chain's prompt codes), as the decoder was taught
        prompt_codes = codec.encode(torch.from_numpy(prompt), semantic=tokenize_clip(prompt))
        voice = codec.voice(prompt_codes[:VOICE_LEVELS])
        codes = codec.encode(torch.from_numpy(guide), semantic=tokens)  # their length; the decoder reads none
        render = codec.decode(codes[:1], length=len(guide), semantic=tokens, voice=voice).numpy()
        to_prompt, to_guide = sim(prompt, render), sim(guide, render)
        per.append(
            {
                "id": row["id"],
                "voice_from": source["id"],
                "cer": cer(row["text"], asr(render)),
                "similarity_to_prompt": to_prompt,
                "similarity_to_guide": to_guide,
                "nearer_prompt": bool(to_prompt > to_guide),
                "pitch_spread": pitch_spread(fargan.analyze(render))
                / max(pitch_spread(fargan.analyze(wav)), 1e-3),
                "original_similarity_to_prompt": sim(prompt, wav),
            }
        )
        if reads_level:  # and the utterance's own level 1 and tokens in the prompt's voice
            own_tokens = torch.from_numpy(np.asarray(tokenize_clip(wav), dtype=np.int64))
            own_codes = codec.encode(torch.from_numpy(wav), semantic=own_tokens)
            own = codec.decode(own_codes[:1], length=len(wav), semantic=own_tokens, voice=voice).numpy()
            per[-1] |= {"own_cer": cer(row["text"], asr(own)), "own_similarity_to_prompt": sim(prompt, own)}
    if not per:
        raise SystemExit("error: --guide needs a held-out identity with two utterances (one voices the other)")
    summary = {
        key: round(float(np.mean([p[key] for p in per])), 4)
        for key in per[0]
        if key not in ("id", "voice_from")
    }
    return {"utterances": len(per), "summary": {"guide": summary}, "per_utterance": {"guide": per}}


def evaluate_codec(
    codec_dir: Path, rows: list[dict], levels=(8, 4, 2, 1), semantic: dict | None = None
) -> dict:
    codec = load_codec(codec_dir)
    asr, sim = Transcriber(), VoiceSimilarity()
    results = {"original": []} | {f"codec_{q}": [] for q in levels if q <= codec.num_levels}
    for row in rows:
        wav = sf.read(row["path"], dtype="float32")[0]
        text = asr(wav)
        results["original"].append(
            {"id": row["id"], "cer": cer(row["text"], text), "wer": wer(row["text"], text)}
        )
        tokens = torch.from_numpy(semantic[row["id"]].astype(np.int64)) if codec.needs_semantic else None
        codes = codec.encode(torch.from_numpy(wav), semantic=tokens)
        # A decoder that reads a voice vector gets the utterance's own, as the chain gives it its prompt's.
        voice = codec.voice(codes) if codec.reads_voice else None
        for q in levels:
            if q > codec.num_levels:
                continue
            resynth = codec.decode(codes[:q], length=len(wav), semantic=tokens, voice=voice).numpy()
            heard = asr(resynth)
            results[f"codec_{q}"].append(
                {
                    "id": row["id"],
                    "cer": cer(row["text"], heard),
                    "wer": wer(row["text"], heard),
                    "similarity": sim(wav, resynth),
                    "mel_distance": log_mel_distance(wav, resynth),
                }
            )
    summary = {}
    for name, per in results.items():
        summary[name] = {
            key: round(float(np.mean([p[key] for p in per])), 4) for key in per[0] if key != "id"
        }
    return {
        "voice_vector": "the utterance's own" if codec.reads_voice else None,
        "utterances": len(rows),
        "speakers": sorted({r["speaker"] for r in rows}),
        "summary": summary,
        "per_utterance": results,
    }


def main(argv=None) -> int:
    parser = config_parser(__doc__)
    parser.add_argument("--codec", type=Path, help="codec folder (default: OUT_DIR/codec)")
    parser.add_argument("--probe", type=Path, help="a shards folder of this codec: measure predictability")
    parser.add_argument("--report", type=Path, help="write here instead of OUT_DIR/codec/eval.json")
    parser.add_argument("--natural-corpus", type=Path, help="the held-out natural identities of this corpus")
    parser.add_argument("--semantic", type=Path, help="with --natural-corpus: the semantic tokenizer file")
    parser.add_argument(
        "--guide",
        action="store_true",
        help="with --natural-corpus: render espeak-ng's guide in another utterance's voice",
    )
    args = parser.parse_args(argv)
    config = config_of(args)
    torch.set_num_threads(2)
    if args.natural_corpus:
        test = natural_rows(args.natural_corpus)
    else:
        test = [r for r in read_manifest(config.out_dir, "test") if r["kind"] == "single"]
    # An even spread over the held-out speakers.
    rng = np.random.default_rng(config.seed)
    rows = [
        test[i]
        for i in sorted(
            rng.choice(len(test), size=min(config.codec.eval_utterances, len(test)), replace=False)
        )
    ]
    started = time.time()
    codec_dir = args.codec or config.out_dir / "codec"
    if args.guide:
        if not args.natural_corpus:
            raise SystemExit("error: --guide needs --natural-corpus (the held-out natural identities)")
        from soundstorm.bundles.checkpoints import ASSETS
        from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder

        semantic = SemanticTokenizer.load(
            args.semantic or ASSETS / "tiny" / "semantic" / "semantic.safetensors", WhisperEncoder(threads=2)
        )
        def tokenize_clip(clip):
            return semantic.tokenize([clip])[0]

        report = evaluate_guide(codec_dir, rows, test, tokenize_clip, Transcriber(), VoiceSimilarity())
    elif args.natural_corpus:
        report = evaluate_codec(codec_dir, rows, semantic=tokenize(rows, args.semantic))
    else:
        from pipelines.stages.shards import load_semantic

        report = evaluate_codec(codec_dir, rows, semantic=load_semantic(config.out_dir / "semantic"))
    report["codec"] = str(codec_dir)
    if args.probe:
        report["predictability"] = predictability(args.probe)
    report["wall_s"] = round(time.time() - started, 1)
    out = args.report or config.out_dir / "codec" / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(
        json.dumps({"summary": report["summary"], "predictability": report.get("predictability")}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
