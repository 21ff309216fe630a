"""chain/plan.py: a request checked once into a plan; each voice file decoded once, wherever it is named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from soundstorm.base.errors import AudioError, InputError, ScriptError, UnknownSpeakerError
from soundstorm.chain import prompts
from soundstorm.chain.plan import VoiceReader, plan_dialogue, plan_say
from soundstorm.chain.prompts import BundledVoice
from soundstorm.chain.request import SynthesisOptions
from soundstorm.chain.script import parse_script


@pytest.fixture
def reads(monkeypatch):
    """Every audio file a voice prompt decodes, in order (the one place prompts read audio)."""
    seen: list[str] = []
    original = prompts.read_audio

    def counting(path, *args, **kwargs):
        seen.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(prompts, "read_audio", counting)
    return seen


def _voice(folder: Path, name: str, seconds: float = 3.0, pitch: float = 150.0) -> Path:
    path = folder / name
    sf.write(path, voice_like(seconds, 16000, pitch, 1), 16000)
    return path


def _bundled(folder: Path, count: int = 3) -> list[BundledVoice]:
    return [
        BundledVoice(f"b{n}", _voice(folder, f"b{n}.wav", pitch=100.0 + 40 * n), "a bundled voice")
        for n in range(count)
    ]


def test_a_file_named_by_two_speakers_is_decoded_once(tmp_path, reads):
    shared = _voice(tmp_path, "shared.wav")
    script = parse_script("[S1] Hello there.\n[S2] Hi.\n[S1] Bye.\n", "s.txt")
    plan = plan_dialogue(script, {"S1": shared, "S2": shared}, voices=VoiceReader())
    assert reads == ["shared.wav"]
    assert plan.speakers == ["S1", "S2"]
    assert np.shares_memory(plan.voices["S1"].speech, plan.voices["S2"].speech)  # one copy in memory
    assert 16000 < len(plan.voices["S1"].speech) <= 3 * 16000  # trimmed, at most the 4 s used


def test_a_batch_of_lines_decodes_its_prompt_once(tmp_path, reads):
    from soundstorm.doors.batch import plan_lines

    prompt = _voice(tmp_path, "p.wav")
    lines = tmp_path / "lines.txt"
    lines.write_text("Good morning.\n?!\nSee you.\nAnd again.\n")
    items = plan_lines(lines, tmp_path, ".wav", prompt, 0, SynthesisOptions(), VoiceReader())
    assert [i.error is None for i in items] == [True, False, True, True]
    assert reads == ["p.wav"]
    assert np.shares_memory(items[0].plan.voices["S1"].speech, items[3].plan.voices["S1"].speech)


def test_the_cli_decodes_each_voice_once_from_check_to_render(cli, tiny_bundle, tmp_path, reads):
    a, b = _voice(tmp_path, "a.wav", pitch=120.0), _voice(tmp_path, "b.wav", pitch=210.0)
    script = tmp_path / "s.txt"
    script.write_text(f"---\nvoices:\n  S1: {a}\n---\n[S1] Hello there.\n[S2] Hi, how are you?\n")
    out = tmp_path / "out.wav"
    code, stdout, stderr = cli(
        "dialogue", script, "--voice", f"S2={b}", "-o", out, "--checkpoint", tiny_bundle, "--frontend", "espeak",
        "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    assert sorted(reads) == ["a.wav", "b.wav"]  # once each: checked, then rendered, from one decode
    assert json.loads(stdout)["turns"][1]["speaker"] == "S2" and sf.info(out).frames > 0


def test_speakers_without_a_voice_get_bundled_voices_no_one_uses(tmp_path):
    bundled = _bundled(tmp_path)
    script = parse_script("[A] One.\n[B] Two.\n[C] Three.\n", "s.txt")
    plan = plan_dialogue(script, {"B": "b0"}, voices=VoiceReader(16000, bundled))
    assert [plan.voices[s].name for s in "ABC"] == ["b1", "b0", "b2"]
    assert [w for w in plan.warnings if "has no voice" in w] == [
        "speaker A has no voice: using the bundled voice 'b1'",
        "speaker C has no voice: using the bundled voice 'b2'",
    ]


def test_a_voice_for_a_speaker_with_no_turn_is_one_error(tmp_path):
    script = parse_script("[S1] Hello.\n", "s.txt")
    with pytest.raises(UnknownSpeakerError, match="S9, who has no turn") as caught:
        plan_dialogue(script, {"S9": _voice(tmp_path, "v.wav")}, voices=VoiceReader())
    assert caught.value.code == "unknown_speaker" and isinstance(caught.value, ScriptError)


def test_a_script_error_carries_its_place_as_fields():
    script = parse_script("[S1] Hello.\n[S2] ?!\n", "ep.txt")
    with pytest.raises(ScriptError) as caught:
        plan_dialogue(script, voices=VoiceReader())
    error = caught.value
    assert (error.source, error.line, error.column) == ("ep.txt", 2, 1)
    assert str(error).startswith("ep.txt:2:1: ")


def test_the_options_and_the_text_are_checked_in_the_plan(tmp_path):
    prompt = _voice(tmp_path, "p.wav")
    with pytest.raises(InputError, match="prompt length"):
        plan_say("Hello.", prompt, options=SynthesisOptions(prompt_seconds=20.0))
    with pytest.raises(InputError, match="empty"):
        plan_say("   ", prompt)
    with pytest.raises(AudioError, match="neither an audio file nor a voice name"):
        plan_say("Hello.", "nobody", voices=VoiceReader(16000, _bundled(tmp_path)))


def test_a_transcript_is_kept_only_where_it_covers_the_prompt(tmp_path):
    long = _voice(tmp_path, "long.wav", seconds=6.0)
    kept = plan_say("Hello.", long, "What the first seconds say.", SynthesisOptions(prompt_seconds=8.0))
    assert kept.voices["S1"].text == "What the first seconds say." and not kept.warnings
    cut = plan_say("Hello.", long, "What the first seconds say.", SynthesisOptions(prompt_seconds=2.0))
    assert cut.voices["S1"].text is None and len(cut.voices["S1"].speech) == 2 * 16000
    assert any("prompt transcript ignored" in w for w in cut.warnings)


def test_the_server_decodes_each_voice_of_a_request_once(tiny_bundle, reads):
    from fastapi.testclient import TestClient

    from soundstorm.chain.synthesize import Synthesizer
    from soundstorm.doors.server import ServerLimits, create_app

    app = create_app(Synthesizer.from_checkpoint(str(tiny_bundle), device="cpu"), ServerLimits())
    with TestClient(app, base_url="http://localhost") as client:
        script = "[S1] Hello there.\n[S2] Hi.\n[S1] Bye."
        response = client.post("/v1/dialogue", json={"script": script, "voices": {"S1": "v0", "S2": "v0"}})
        assert response.status_code == 200, response.text
        assert reads == ["v0.wav"]  # checked before the queue, rendered from the same decode
        reads.clear()
        stranger = client.post("/v1/dialogue", json={"script": script, "voices": {"S9": "v0"}})
        assert stranger.status_code == 400 and stranger.json()["error"]["code"] == "unknown_speaker"
        assert reads == []  # refused before any voice was read
