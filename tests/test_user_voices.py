"""user_voices.py and `soundstorm voices add/list/remove`: named voices in the user's folder (issue 26)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.base.errors import InputError
from soundstorm.io.named_voices import add_voice, check_name, is_voice_name, voices_home


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDSTORM_HOME", str(tmp_path / "home"))
    sf.write(tmp_path / "me.wav", np.concatenate([np.zeros(8000), voice_like(3.0, 16000, 150.0, 4)]), 16000)
    return tmp_path


@pytest.mark.slow
def test_a_voice_survives_a_restart_and_is_used_by_name(cli, home, tiny_bundle):
    code, stdout, stderr = cli("voices", "add", "alice", home / "me.wav", "--text", "A test voice.")
    assert code == 0, stderr
    stored = home / "home" / "voices" / "alice.wav"
    data, rate = sf.read(stored)
    assert rate == 16000 and 2.5 < len(data) / rate < 3.3  # the leading silence trimmed
    # a new process sees it
    probe = [sys.executable, "-m", "soundstorm.doors.cli", "voices", "--json", "--checkpoint", str(tiny_bundle)]
    listed = subprocess.run(
        probe, capture_output=True, text=True, env={"SOUNDSTORM_HOME": str(home / "home"), "PATH": ""}
    )
    names = {(v["name"], v["kind"]) for v in json.loads(listed.stdout)}
    assert ("alice", "user") in names and ("v0", "bundled") in names, listed.stderr
    # a name wherever a prompt file is taken: --prompt, and a script's front matter
    out = home / "o.wav"
    code, _, stderr = cli("say", "Hello.", "--prompt", "alice", "-o", out, "--checkpoint", tiny_bundle, "-q")
    assert code == 0 and sf.info(out).samplerate == 16000, stderr
    script = home / "s.txt"
    script.write_text("---\nvoices:\n  S1: alice\n  S2: v1\n---\n[S1] Hello.\n[S2] Hi.\n")
    code, _, stderr = cli(
        "dialogue", script, "-o", out, "--checkpoint", tiny_bundle, "-q", "--frontend", "espeak"
    )
    assert code == 0 and "has no voice" not in stderr, stderr
    code, _, stderr = cli(
        "say", "Hello.", "--prompt", "nobody", "-o", home / "x.wav", "--checkpoint", tiny_bundle
    )
    assert code == 2 and "neither an audio file nor a voice name" in stderr and not (home / "x.wav").exists()


def test_add_refuses_a_taken_name_and_remove_forgets(cli, home):
    assert cli("voices", "add", "bob", home / "me.wav")[0] == 0
    code, _, stderr = cli("voices", "add", "bob", home / "me.wav")
    assert code == 2 and "exists" in stderr
    assert cli("voices", "add", "bob", home / "me.wav", "--replace")[0] == 0
    assert cli("voices", "remove", "bob")[0] == 0
    assert not (home / "home" / "voices" / "bob.wav").exists()
    code, _, stderr = cli("voices", "remove", "bob")
    assert code == 2 and "no voice named 'bob'" in stderr


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1_-./\\~ \x00é")), min_size=0, max_size=12))
def test_a_name_never_leaves_the_voices_folder(name):
    if is_voice_name(name):
        assert check_name(name) == name
        target = voices_home() / f"{name}.wav"
        assert target.parent == voices_home() and target.name == f"{name}.wav"
    else:
        with pytest.raises(InputError, match="voice name"):
            check_name(name)


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "x" * 65, "a b", "..", "C:\\x"])
def test_names_with_paths_are_refused(home, name):
    with pytest.raises(InputError, match="voice name"):
        add_voice(name, home / "me.wav")
    assert not (home / "home").exists() or not any((home / "home").rglob("*.wav"))
