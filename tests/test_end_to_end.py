"""The real embedded bundle, end to end, offline: `say` and a two-turn `dialogue` through the CLI's library.

What is asserted is what the shipped small bundle does reliably: the whole chain runs, the
audio has the length the front end planned, its turns tile it, it is speech-loud, and the same
seed gives the same audio. How intelligible it is (Whisper) and whose voice it takes (resemblyzer)
is measured by `pipelines.evaluations.soundstorm`, `t2s_eval` and `chain_eval` and reported in the model
card: they vary by sentence and voice (through `say`, Whisper recovers 66 % of the words on average
over ten sentences, from 22 % to 100 %; a turn's voice is nearer its own prompt in 58 of 60 turns),
so they are not asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from soundstorm.chain.frontends import espeak_render
from soundstorm.chain.prompts import trim_silence
from soundstorm.chain.script import parse_script
from soundstorm.chain.synthesize import SynthesisOptions, Synthesizer

pytestmark = pytest.mark.slow  # the real bundle


@pytest.fixture(scope="module")
def synth():
    return Synthesizer.from_checkpoint("tiny", device="cpu")


def test_the_default_bundle_is_complete(synth):
    assert synth.t2s is not None and len(synth.voices) == 12
    # natural voices first (the default voice is one), and at least half of them
    natural = [v.name for v in synth.voices if v.name.startswith("kokoro-")]
    assert synth.voices[0].name in natural and len(natural) >= len(synth.voices) / 2
    assert synth.soundstorm.config.levels == 4 and synth.bundle.facts["frontend"] == "espeak"
    assert synth.codec.renders_posterior and synth.codec.reads_voice  # the decoder takes each prompt's voice


def test_say_with_the_real_bundle(synth):
    text = "The weather is lovely today, so we will walk to the market."
    result = synth.say(text, seed=0)
    guide = len(trim_silence(espeak_render(text), 16000)) / 16000
    assert result.duration_s == pytest.approx(guide, rel=0.05)  # the espeak front end sets the timing
    rms = float(np.sqrt(np.mean(result.audio**2)))
    assert 0.01 < rms < 0.5 and np.isfinite(result.audio).all()
    again = synth.say(text, seed=0)
    assert np.array_equal(result.audio, again.audio)


def test_two_turn_dialogue_with_the_real_bundle(synth):
    voices = {v.name: v.path for v in synth.voices}
    script = parse_script("[A] Good morning, how are you today?\n[B] I am fine, thank you very much.\n")
    result = synth.dialogue(
        script, voices={"A": voices["flite-slt-300"], "B": voices["flite-rms-300"]}, seed=0
    )
    assert [t.speaker for t in result.turns] == ["A", "B"] and not result.warnings
    first, second = result.turns
    assert first.start_s == 0 and first.end_s < second.start_s  # the gap between turns
    assert second.end_s == pytest.approx(result.duration_s, abs=0.05)
    for turn in result.turns:
        piece = result.audio[int(turn.start_s * 16000) : int(turn.end_s * 16000)]
        assert float(np.sqrt(np.mean(piece**2))) > 0.01
    assert result.decoding == "posterior" and result.forward_passes == 1  # the bundle's default: one pass
    paper = synth.dialogue(
        script,
        voices={"A": voices["flite-slt-300"], "B": voices["flite-rms-300"]},
        seed=0,
        options=SynthesisOptions(decoding="paper"),
    )
    assert paper.forward_passes == 16 + 1 + 1 + 1  # the paper's schedule over 4 levels, one window
    assert len(paper.audio) == len(result.audio) and not np.array_equal(paper.audio, result.audio)
