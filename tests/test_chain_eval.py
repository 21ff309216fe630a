"""pipelines/evaluations/chain.py's natural-prompt test (issue 35): which prompts it takes, and what it reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from pipelines.evaluations.chain import SENTENCES, natural_prompts, prompt_test


def test_one_held_out_natural_utterance_per_identity(tmp_path):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    rows = [
        ("sk000001", "kokoro-a", 4.0, "test"),
        ("sk000002", "kokoro-a", 5.0, "test"),  # a second one of the same identity: not taken
        ("sk000003", "kokoro-b", 1.5, "test"),  # too short to prompt with
        ("sk000004", "kokoro-b", 6.0, "test"),
        ("sn000001", "kokoro-c", 4.0, "train"),  # a training identity: never a prompt here
    ]
    for item, speaker, seconds, split in rows:
        (wavs / f"{item}.json").write_text(
            json.dumps(
                {
                    "id": item,
                    "speaker": speaker,
                    "split": split,
                    "duration_s": seconds,
                    "path": f"wavs/{item}.wav",
                }
            )
        )
    assert natural_prompts(tmp_path) == [tmp_path / "wavs/sk000001.wav", tmp_path / "wavs/sk000004.wav"]


def _record_prompted(synth) -> set:
    """The audio bytes of every prompted `say` of `synth` from now on (its renders are spied on)."""
    prompted = set()
    real_say = synth.say

    def say(text, prompt=None, **kw):
        out = real_say(text, prompt=prompt, **kw)
        if prompt is not None:
            prompted.add(out.audio.tobytes())
        return out

    synth.say = say
    return prompted


@pytest.mark.slow
def test_the_prompt_test_reports_cer_similarity_and_the_default_voices_margin(tiny_bundle, tmp_path):
    from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer

    synth = Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu")
    prompt = tmp_path / "guest.wav"
    sf.write(prompt, voice_like(3.0, 16000, 150.0, 3), 16000)
    prompted = _record_prompted(synth)

    def sim(audio, reference, rate):  # the default voice's renders score 0.4, prompted ones 0.7
        key = audio.tobytes()
        return 0.7 if key in prompted else 0.4

    report = prompt_test(
        synth, SynthesisOptions(frontend="espeak"), lambda audio, rate: SENTENCES[0], sim, [prompt]
    )
    assert len(report["rows"]) == len(SENTENCES) and report["per_prompt"]["guest"]["similarity"] == 0.7
    summary = report["summary"]
    assert summary["default_similarity"] == 0.4 and summary["margin"] == pytest.approx(0.3)
    assert report["rows"][0]["cer"] == 0.0 and summary["cer"] == pytest.approx(
        np.mean([r["cer"] for r in report["rows"]]), abs=1e-4
    )


@pytest.mark.slow
def test_the_prompt_test_gives_the_margin_without_the_default_voices_own_identity(tiny_bundle, tmp_path):
    """A bundle whose default voice is one of the prompts' identities: that prompt's margin (both renders in
    its voice) is left out of `margin_other_identities`, and kept in `margin`."""
    from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer

    synth = Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu")
    own, guest = tmp_path / "own.wav", tmp_path / "guest.wav"
    sf.write(own, voice_like(2.0, 16000, 120.0, 1), 16000)
    sf.write(guest, voice_like(3.0, 16000, 150.0, 3), 16000)
    prompted = _record_prompted(synth)

    def sim(audio, reference, rate):  # prompted renders 0.7; the default 0.4, or 0.65 to its own identity
        if audio.tobytes() in prompted:
            return 0.7
        return 0.65 if len(reference) == 32000 else 0.4

    default = synth.voices[0].name
    report = prompt_test(
        synth,
        SynthesisOptions(frontend="espeak"),
        lambda a, r: SENTENCES[0],
        sim,
        [own, guest],
        [default, "guest"],
    )
    summary = report["summary"]
    assert summary["default_voice"] == default
    assert summary["margin"] == pytest.approx((0.05 + 0.3) / 2, abs=1e-4)
    assert summary["margin_other_identities"] == pytest.approx(0.3, abs=1e-4)


def test_the_voices_flag_picks_bundled_voices_in_its_order_and_refuses_what_it_cannot_pair():
    from types import SimpleNamespace

    from pipelines.evaluations.chain import chosen_voices

    voices = [SimpleNamespace(name=n, path=f"/v/{n}.wav") for n in ("kokoro-a", "kokoro-b", "flite-c", "espeak-d")]
    assert chosen_voices(voices, None) == [v.path for v in voices]
    assert chosen_voices(voices, "kokoro-b, kokoro-a") == ["/v/kokoro-b.wav", "/v/kokoro-a.wav"]
    with pytest.raises(SystemExit, match="no bundled voice kokoro-z .*there are: kokoro-a, kokoro-b"):
        chosen_voices(voices, "kokoro-a,kokoro-z")
    for odd in ("kokoro-a", "kokoro-a,kokoro-b,flite-c", "kokoro-a,kokoro-a"):
        with pytest.raises(SystemExit, match="even number"):
            chosen_voices(voices, odd)
