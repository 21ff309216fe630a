"""The whole chain by ear: `python -m pipelines.evaluations.chain [--checkpoint tiny] [--frontend auto]`.

Issue 6's check on more than one sentence: `say` of ten sentences, each with a
bundled voice in turn, and a two-turn and a three-turn dialogue over ten ordered
pairs of bundled voices (voice k with voice k + 5 of the list, each both ways round),
through `Synthesizer` exactly as the CLI runs it (seed 0). For each sentence and
each turn: the share of its words that Whisper tiny.en hears (`recall`: words of
the text found in the transcript) and, for turns, whether the turn is closer in
voice (resemblyzer) to its own speaker's prompt than to the other's. Prints one
JSON object (rows and summary); `--report` writes it too. `--retries N` renders with
the per-turn check (`soundstorm/chain/turncheck.py`); `synthesis_s` sums the renders' own
time, so the check's cost can be read off against a run without it.

`--prompts DIR` (wav files, e.g. recordings of real people) or `--natural-corpus DIR` (one utterance of
each held-out natural identity of a corpus built with `corpus.natural_hours`) runs the natural-prompt
test of issue 35 instead: `say` of the ten sentences prompted with each, its CER and similarity to the
prompt, against the similarity of the default voice's `say` of the same sentences to the same prompt
(how much closer prompting brings the voice than no prompt at all). `--prompt-seconds S` is the CLI's flag
(default 4).

`--voices A,B,C,D` runs both tests over these bundled voices instead of all of them, paired the same way
(the first half against the second): e.g. `tiny`'s six natural voices, the pairs a podcast would use, where
the default list pairs each natural voice with a synthetic one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from soundstorm.chain.script import parse_script
from soundstorm.chain.semantic import SAMPLE_RATE
from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer
from soundstorm.io.audio import read_audio
from soundstorm.measures.evaluate import Transcriber, VoiceSimilarity, cer, word_recall

SENTENCES = [
    "The weather is lovely today, so we will walk to the market.",
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you have a minute.",
    "We need more bread, milk and a dozen eggs.",
    "The train to the city leaves at half past nine.",
    "She read the letter twice before she answered it.",
    "My brother plays the guitar in a small band.",
    "It rained all night, and the river is very high.",
    "Turn left at the church and follow the road.",
    "I have never seen so many birds in one place.",
]
DIALOGUES = [
    "[A] Good morning! Did you get the tickets for Saturday?\n[B] I did. Two seats near the front.\n",
    "[A] Where are you going this weekend?\n[B] To the coast, if the weather holds.\n[A] Lucky you. I have to work.\n",
]


def _tries(out, turn: int) -> dict:
    """How many renders the per-turn check tried for this turn (none without --retries)."""
    return {"tries": out.checks[turn].tries} if out.checks else {}


def natural_prompts(corpus: Path, seconds=(3.0, 10.0)) -> list[Path]:
    """One single utterance of each held-out natural identity (test split, `k` group) of a corpus."""
    chosen: dict[str, Path] = {}
    for row_path in sorted((corpus / "wavs").glob("sk*.json")):
        row = json.loads(row_path.read_text())
        if row["split"] == "test" and seconds[0] <= row["duration_s"] <= seconds[1]:
            chosen.setdefault(row["speaker"], corpus / row["path"])
    return [chosen[s] for s in sorted(chosen)]


def prompt_test(synth, options, asr, sim, prompts: list[Path], names: list[str] | None = None) -> dict:
    """Each prompt: the ten sentences said in its voice (CER, similarity to it) and the default voice's
    similarity to it; the summary's margin is the mean difference of the two similarities."""
    default = [synth.say(text, options=options, seed=0).audio for text in SENTENCES]
    rows = []
    for path, name in zip(prompts, names or [p.stem for p in prompts], strict=True):
        reference = read_audio(path, SAMPLE_RATE).samples
        for text, plain in zip(SENTENCES, default, strict=True):
            out = synth.say(text, prompt=path, options=options, seed=0)
            heard = asr(out.audio, out.sample_rate)
            rows.append(
                {
                    "prompt": name,
                    "text": text,
                    "cer": round(cer(text, heard), 4),
                    "similarity": round(sim(out.audio, reference, out.sample_rate), 4),
                    "default_similarity": round(sim(plain, reference, out.sample_rate), 4),
                    "heard": heard,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    keys = ("cer", "similarity", "default_similarity")
    per_prompt = {
        name: {k: round(float(np.mean([r[k] for r in rows if r["prompt"] == name])), 4) for k in keys}
        for name in dict.fromkeys(r["prompt"] for r in rows)
    }
    summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}
    summary["margin"] = round(summary["similarity"] - summary["default_similarity"], 4)
    # a bundle whose default voice is one of these identities: that prompt's margin says nothing of
    # following a voice (both renders are in it), so the margin is also given without it
    own = synth.voices[0].name if synth.voices else None
    others = [r for r in rows if r["prompt"] != own]
    if own in per_prompt and others:
        summary["default_voice"] = own
        summary["margin_other_identities"] = round(
            float(np.mean([r["similarity"] - r["default_similarity"] for r in others])), 4
        )
    return {"summary": summary, "per_prompt": per_prompt, "rows": rows}


def chosen_voices(voices: list, names: str | None) -> list[Path]:
    """The bundle's voices (objects with `name` and `path`), or those named in `names` (comma-separated), in
    that order; an even number of them, since the dialogue test pairs the first half with the second."""
    if not names:
        return [v.path for v in voices]
    known = {v.name: v.path for v in voices}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"chain_eval: no bundled voice {', '.join(unknown)} (there are: {', '.join(known)})")
    if len(wanted) < 2 or len(wanted) % 2 or len(set(wanted)) < len(wanted):
        raise SystemExit("chain_eval: --voices needs an even number (2 or more) of different voices to pair")
    return [known[n] for n in wanted]


def _say_test(synth, options, asr, voices: list) -> tuple[list[dict], float]:
    """`say` of each of SENTENCES in the bundled voices in turn: its word recall; and the synthesis seconds."""
    says, synthesis_s = [], 0.0
    for n, text in enumerate(SENTENCES):
        voice = voices[n % len(voices)]
        out = synth.say(text, prompt=voice, options=options, seed=0)
        synthesis_s += out.timings["total"]
        heard = asr(out.audio, out.sample_rate)
        says.append(
            {"text": text, "voice": voice.stem, "recall": round(word_recall(text, heard), 3), "heard": heard}
            | _tries(out, 0)
        )
        print(json.dumps(says[-1]), flush=True)
    return says, synthesis_s


def _dialogue_test(synth, options, asr, sim, voices: list) -> tuple[list[dict], float]:
    """Each of DIALOGUES with each ordered pair of voices (the first half against the second): each turn's
    word recall and whether it is nearer its own prompt than the other's; and the synthesis seconds."""
    synthesis_s = 0.0
    turns = []
    half = len(voices) // 2
    pairs = [(voices[k], voices[k + half]) for k in range(half)]
    pairs += [(b, a) for a, b in pairs]
    for text, (a, b) in [(text, pair) for text in DIALOGUES for pair in pairs]:
        pair = {"A": a, "B": b}
        out = synth.dialogue(parse_script(text), voices=pair, options=options, seed=0)
        synthesis_s += out.timings["total"]
        prompts = {name: read_audio(path, SAMPLE_RATE).samples for name, path in pair.items()}
        for n, turn in enumerate(out.turns):
            piece = out.audio[int(turn.start_s * out.sample_rate) : int(turn.end_s * out.sample_rate)]
            heard = asr(piece, out.sample_rate)
            scores = {name: sim(piece, audio) for name, audio in prompts.items()}
            other = "B" if turn.speaker == "A" else "A"
            turns.append(
                {
                    "voices": f"{pair['A'].stem} / {pair['B'].stem}",
                    "speaker": turn.speaker,
                    "recall": round(word_recall(turn.text, heard), 3),
                    "own": round(scores[turn.speaker], 3),
                    "other": round(scores[other], 3),
                    "right_voice": scores[turn.speaker] > scores[other],
                    "heard": heard,
                }
                | _tries(out, n)
            )
            print(json.dumps(turns[-1]), flush=True)
    return turns, synthesis_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="tiny")
    parser.add_argument("--frontend", default="auto", choices=["auto", "t2s", "espeak"])
    parser.add_argument("--retries", type=int, default=0, help="the per-turn check's retries (issue 26)")
    parser.add_argument("--check-threshold", type=float, default=0.8)
    parser.add_argument("--prompt-seconds", type=float, default=4.0, help="seconds of each prompt used (1-10)")
    parser.add_argument("--report", type=Path)
    parser.add_argument("--voices", help="comma-separated bundled voices to test and pair (default: all)")
    parser.add_argument("--prompts", type=Path, help="the natural-prompt test with these wav prompts")
    parser.add_argument(
        "--natural-corpus",
        type=Path,
        help="the natural-prompt test with a corpus's held-out natural identities",
    )
    args = parser.parse_args(argv)
    started = time.time()
    synth = Synthesizer.from_checkpoint(args.checkpoint, device="cpu")
    voices = chosen_voices(synth.voices, args.voices)
    options = SynthesisOptions(
        frontend=args.frontend,
        retries=args.retries,
        check_threshold=args.check_threshold,
        prompt_seconds=args.prompt_seconds,
    ).check()
    asr, sim = Transcriber(), VoiceSimilarity()
    if args.prompts or args.natural_corpus:
        prompts = sorted(args.prompts.glob("*.wav")) if args.prompts else natural_prompts(args.natural_corpus)
        if not prompts:
            raise SystemExit("chain_eval: no prompts found for the natural-prompt test")
        names = None
        if args.natural_corpus:  # the identity's name, from the row beside each wav
            names = [json.loads(p.with_suffix(".json").read_text())["speaker"] for p in prompts]
        report = prompt_test(synth, options, asr, sim, prompts, names)
        report["summary"]["wall_s"] = round(time.time() - started, 1)
        if args.report:
            args.report.write_text(json.dumps(report, indent=1))
        print(json.dumps(report["summary"] | {"per_prompt": report["per_prompt"]}, indent=1))
        return 0
    says, say_s = _say_test(synth, options, asr, voices)
    turns, turn_s = _dialogue_test(synth, options, asr, sim, voices)
    synthesis_s = say_s + turn_s
    summary = {
        "say_recall_mean": round(float(np.mean([s["recall"] for s in says])), 3),
        "say_at_least_half": f"{sum(s['recall'] >= 0.5 for s in says)}/{len(says)}",
        "turn_recall_mean": round(float(np.mean([t["recall"] for t in turns])), 3),
        "turns_at_least_half": f"{sum(t['recall'] >= 0.5 for t in turns)}/{len(turns)}",
        "turns_right_voice": f"{sum(t['right_voice'] for t in turns)}/{len(turns)}",
        "voices": [v.stem for v in voices],
        "frontend": synth.frontend(options),
        "retries": args.retries,
        "synthesis_s": round(synthesis_s, 1),
        "wall_s": round(time.time() - started, 1),
    }
    report = {"summary": summary, "say": says, "turns": turns}
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
