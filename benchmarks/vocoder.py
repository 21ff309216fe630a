"""FARGAN's speed: `python benchmarks/vocoder.py [--seconds 30] [--runs 3] [--bundle tiny] [--feature-codec]`.

Analyses `--seconds` of espeak-ng speech into LPCNet features and renders them back with FARGAN (in one
pass, and as `fargan.synthesize` does: cut into parts rendered side by side), then times the bundle's
codec turning a level-1 distribution of that length into audio (`Codec.decode_posterior`: the feature
decoder and FARGAN, what posterior decoding spends after SoundStorm's pass). With `--feature-codec`, also
the codec of FARGAN's features at `pipelines/configs/fargan.yaml`'s sizes (8 x 1024, the decoder over 4
levels and the semantic tokens, 256 x 8), fitted in seconds on the benchmark's own speech (speed does not
depend on what it learnt), decoding 4 levels of codes to audio. Prints the best time of each. Run it on a
quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time

import numpy as np

from soundstorm.chain.phonemes import espeak_env
from soundstorm.io.audio import read_audio
from soundstorm.vocoder import fargan

TEXT = "The quick brown fox jumps over the lazy dog, and the five boxing wizards jump quickly. "


def speech(seconds: float) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-w", tmp.name, TEXT * 3], check=True, env=espeak_env())
        audio = read_audio(tmp.name, fargan.SAMPLE_RATE).samples
    reps = int(np.ceil(seconds * fargan.SAMPLE_RATE / audio.size))
    return np.tile(audio, reps)[: int(seconds * fargan.SAMPLE_RATE)]


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def codec_decode(audio: np.ndarray, bundle_name: str, runs: int) -> dict:
    """The bundle's codec from a level-1 distribution to audio, where it renders one."""
    import torch

    from soundstorm.bundles.checkpoints import component_path, load_registry
    from soundstorm.chain.codec import load_codec
    from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder

    threads = torch.get_num_threads()  # the Whisper encoder sets its own
    bundle = load_registry().get(bundle_name)
    codec = load_codec(component_path(bundle, "codec"))
    if not codec.renders_posterior:
        return {}
    semantic = SemanticTokenizer.load(
        component_path(bundle, "semantic") / "semantic.safetensors", WhisperEncoder()
    ).tokenize([audio])[0]
    torch.set_num_threads(threads)
    codes = codec.encode(torch.from_numpy(audio), semantic=semantic)[:4]
    probs = torch.nn.functional.one_hot(codes[0], codec.codebook_size).float()
    voice = codec.voice(codes) if codec.reads_voice else None
    decode_s = best_of(runs, lambda: codec.decode_posterior(probs, semantic=semantic, voice=voice))
    return {"codec_decode_posterior_s": round(decode_s, 4), "threads": torch.get_num_threads()}


def feature_codec_decode(audio: np.ndarray, runs: int) -> dict:
    """The feature codec (fargan.yaml's sizes) from 4 levels of codes and the semantic tokens to audio."""
    import torch

    from pipelines.stages.feature_codec import feature_weights, fit
    from soundstorm.chain.codec import FeatureCodecWrapper
    from soundstorm.models.feature_codec import STACK, FeatureCodecConfig

    config = FeatureCodecConfig(levels=8, codebook_size=1024, semantic_vocab=512)
    features = torch.from_numpy(fargan.analyze(audio))
    frames = features[: len(features) // STACK * STACK].reshape(-1, config.dim)
    model, _ = fit(frames, config, feature_weights(3.0, 2.0), iterations=2, sample=len(frames), seed=0)
    codec = FeatureCodecWrapper(model.eval(), num_levels=4)
    semantic = torch.randint(0, 512, ((codec.num_frames(len(audio)) + 1) // 2,))  # 25 Hz, as the chain's
    codes = codec.encode(torch.from_numpy(audio), semantic=semantic)
    decode_s = best_of(runs, lambda: codec.decode(codes, semantic=semantic))
    return {"feature_codec_decode_s": round(decode_s, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bundle", default="tiny")
    parser.add_argument("--feature-codec", action="store_true", help="time the FARGAN feature codec too")
    args = parser.parse_args()
    audio = speech(args.seconds)
    features = fargan.analyze(audio)
    analyse_s = best_of(args.runs, lambda: fargan.analyze(audio))
    render_s = best_of(args.runs, lambda: fargan.synthesize(features))
    one_pass_s = best_of(args.runs, lambda: fargan._render(features))
    report = {
        "seconds": args.seconds,
        "analyse_s": round(analyse_s, 4),
        "synthesize_s": round(render_s, 4),
        "synthesize_rtf": round(render_s / args.seconds, 5),
        "synthesize_one_pass_s": round(one_pass_s, 4),
    } | codec_decode(audio, args.bundle, args.runs)
    if args.feature_codec:
        report |= feature_codec_decode(audio, args.runs)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
