"""`soundstorm eval`: the paper's Table 1 on a test set, for original, codec, SoundStorm and AR baseline.

Each test utterance (a wav with a .txt transcript beside it) gives its first
3 s (REFERENCE_PROMPT_S) as the voice prompt and its own semantic tokens (ground truth,
from the same tokenizer) as the content of the rest; the generators fill the
codec tokens after the prompt. For each system, on the whole utterance
(prompt + continuation, as in the paper):

- CER / WER: Whisper tiny.en (or any faster-whisper model) against the transcript;
- voice similarity: resemblyzer cosine between the continuation and the prompt;
- consistency: the same, between the continuation's last 3 s and the prompt
  (does the voice drift over time?).

SoundStorm samples its codes the paper's way (16/1/1/... passes), as the AR baseline samples its
own; where the bundle's decoder renders SoundStorm's level-1 distribution (posterior decoding, the
chain's default there), a fifth row, `soundstorm_posterior`, is that one pass, its continuation
decoded after the prompt's codes.

The default test set is the bundle's `testset` component (held-out speakers).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from soundstorm.base.errors import InputError
from soundstorm.base.runtime import autocast, resolve_precision
from soundstorm.chain.prompts import REFERENCE_PROMPT_S

SYSTEMS = ("original", "codec", "soundstorm", "ar_baseline", "soundstorm_posterior")


@dataclass
class Row:
    utterance: str
    system: str
    cer: float
    wer: float
    similarity: float
    consistency: float
    transcript: str


@dataclass
class QualityReport:
    utterances: int
    ar_weights: str
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"utterances": self.utterances, "ar_weights": self.ar_weights, "summary": self.summary}


def read_test_set(folder: Path, limit: int | None = None) -> list[tuple[str, Path, str]]:
    """(name, wav, transcript) of every NAME.wav with a NAME.txt beside it, sorted."""
    if not folder.is_dir():
        raise InputError(f"test set '{folder}' is not a folder")
    items = []
    for wav in sorted(folder.glob("*.wav")):
        txt = wav.with_suffix(".txt")
        if txt.is_file() and txt.read_text(encoding="utf-8", errors="replace").strip():
            items.append((wav.stem, wav, txt.read_text(encoding="utf-8", errors="replace").strip()))
    if not items:
        raise InputError(f"test set '{folder}' holds no NAME.wav with a NAME.txt transcript")
    return items[:limit] if limit else items


def run_eval(
    synth, ar_model, ar_weights: str, items, seed: int = 0, asr_model=None, progress=None
) -> QualityReport:
    import torch

    from soundstorm.chain.decoding import (
        DecodingOptions,
        PromptTokens,
        decode_prompted,
        first_level_posterior,
        overlap_frames,
    )
    from soundstorm.chain.semantic import semantic_to_codec
    from soundstorm.io.audio import read_audio
    from soundstorm.measures.evaluate import Transcriber, VoiceSimilarity

    asr, sim = Transcriber(asr_model), VoiceSimilarity()
    codec, storm = synth.codec, synth.soundstorm
    rate, levels = codec.sample_rate, storm.config.levels
    P = int(REFERENCE_PROMPT_S * codec.frame_rate)
    device = synth.device
    report = QualityReport(utterances=0, ar_weights=ar_weights)
    for n, (name, path, text) in enumerate(items):
        samples = read_audio(path, sample_rate=rate).samples
        tokens = synth.semantic.tokenize([synth.to_16k(samples)])[0]  # [T25]
        given = tokens if codec.needs_semantic else None  # for a codec conditioned on them
        codes = codec.encode(torch.from_numpy(samples), semantic=given)[:levels]  # [Q, T]
        T = codes.shape[1]
        if T < P + codec.frame_rate:  # at least 1 s to generate after the prompt
            continue
        semantic = semantic_to_codec(torch.as_tensor(tokens), synth.ratio, T)
        speakers = torch.ones(T, dtype=torch.long, device=device)
        semantic = semantic.to(device)
        prompt = [PromptTokens(codes[:, :P].to(device), semantic[:P], 1)]
        with autocast(device, resolve_precision("auto", device)):
            continuation = decode_prompted(
                storm,
                semantic[P:],
                speakers[P:],
                prompt,
                DecodingOptions.paper(levels, seed=seed + n),
                overlap_frames(storm.config.window, codec.frame_rate),
            ).codes
            storm_codes = torch.cat([codes[:, :P].to(device), continuation], dim=1)
            ar_codes, _ = ar_model.generate(semantic, speakers, codes[:, :P].to(device), seed=seed + n)
            if codec.renders_posterior:
                probs, _ = first_level_posterior(storm, semantic[P:], speakers[P:], prompt)
        # A decoder that reads a voice vector takes the prompt's for what is generated (resynthesis: its own).
        voice = codec.voice(codes[:, :P]) if codec.reads_voice else None
        outputs = {
            "original": samples,
            "codec": codec.decode(codes, semantic=given).cpu().numpy(),
            "soundstorm": codec.decode(storm_codes, semantic=given, voice=voice).cpu().numpy(),
            "ar_baseline": codec.decode(
                torch.cat([codes[:, :P].to(device), ar_codes], dim=1), semantic=given, voice=voice
            )
            .cpu()
            .numpy(),
        }
        if codec.renders_posterior:
            head = codec.decode(
                codes[:, :P], semantic=None if given is None else given[: P // synth.ratio], voice=voice
            )
            rest = codec.decode_posterior(
                probs, semantic=None if given is None else given[P // synth.ratio :], voice=voice
            )
            outputs["soundstorm_posterior"] = torch.cat([head, rest]).cpu().numpy()
        report.rows += _scored(name, text, outputs, P * codec.hop_length, asr, sim, rate)
        report.utterances += 1
        if progress:
            progress("eval", n + 1, len(items))
    if not report.rows:
        raise InputError(f"no test utterance is longer than {REFERENCE_PROMPT_S + 1:g} s")
    _summarise(report)
    return report


def _scored(name: str, text: str, outputs: dict, cut: int, asr, sim, rate: int) -> list[Row]:
    """One row a system: Whisper's CER and WER against the text, the similarity of what follows the prompt
    (`cut` samples) to the prompt, and of its last `cut` samples (consistency)."""
    from soundstorm.measures.evaluate import cer, wer

    prompt_audio = outputs["original"][:cut]
    rows = []
    for system, audio in outputs.items():
        heard = asr(audio, rate)
        rest = audio[cut:]
        rows.append(
            Row(
                name,
                system,
                round(cer(text, heard), 4),
                round(wer(text, heard), 4),
                round(sim(rest, prompt_audio, rate), 4),
                round(sim(rest[-cut:], prompt_audio, rate), 4),
                heard,
            )
        )
    return rows


def _summarise(report: QualityReport) -> None:
    """Each system's mean figures into `report.summary`."""
    for system in SYSTEMS:
        mine = [r for r in report.rows if r.system == system]
        if not mine:  # soundstorm_posterior, with a decoder that renders codes only
            continue
        report.summary[system] = {
            k: round(statistics.mean(getattr(r, k) for r in mine), 4)
            for k in ("cer", "wer", "similarity", "consistency")
        }


def write_csv(report: QualityReport, path: Path) -> None:
    """One row per utterance and system (written atomically)."""
    from soundstorm.base.errors import OutputError
    from soundstorm.io.audio import replaced_atomically

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir():
        raise OutputError(f"cannot write '{path}': not a file in an existing folder")
    with replaced_atomically(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(report.rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in report.rows)


def quality_table(report: QualityReport):
    """The report as a rich table, for the terminal."""
    from rich.table import Table

    table = Table(
        title=f"{report.utterances} utterances, {REFERENCE_PROMPT_S:g} s prompt, ground-truth semantic tokens"
    )
    for column in ("system", "CER", "WER", "voice similarity", "consistency"):
        table.add_column(column, justify="right")
    for system, m in report.summary.items():
        table.add_row(
            system, f"{m['cer']:.3f}", f"{m['wer']:.3f}", f"{m['similarity']:.3f}", f"{m['consistency']:.3f}"
        )
    return table
