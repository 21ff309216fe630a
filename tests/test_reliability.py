"""Issue 24: bad input, as a new user gives it, through the CLI.

Every case asserts the exit code, the one `error:` line, that no output or temporary
file is left, and that the files that were there are unchanged. Checks that need no
model must fail before any loads: those tests make loading itself an error.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soundstorm.base.errors import InputError


def snapshot(folder):
    """Every file under `folder` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(stderr: str, words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], stderr
    assert "Traceback" not in stderr


@pytest.fixture
def no_models(monkeypatch):
    """Loading a bundle fails the test: what is checked here must be refused before any model loads."""
    from soundstorm.chain.synthesize import Synthesizer

    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(Synthesizer, "from_checkpoint", classmethod(refuse))


@pytest.fixture
def workdir(tmp_path):
    sf.write(tmp_path / "v.wav", voice_like(2.0, 16000, 140.0, 1), 16000)
    (tmp_path / "s.txt").write_text("---\nvoices:\n  S1: v.wav\n---\n[S1] Hello there.\n")
    return tmp_path


def run_refused(cli, folder, args, code, words):
    before = snapshot(folder)
    got, stdout, stderr = cli(*[str(a) for a in args])
    assert got == code, stderr
    one_error_line(stderr, words)
    assert snapshot(folder) == before  # nothing written, nothing changed, no temporary file


# 1. Unbounded reads ---------------------------------------------------------------------------------


def test_a_device_or_oversized_script_is_refused_at_once(cli, workdir, no_models):
    run_refused(cli, workdir, ["dialogue", "/dev/zero", "-o", workdir / "x.wav"], 2, "not a regular file")
    huge = workdir / "huge.txt"
    with open(huge, "wb") as handle:  # sparse: 50 MB that cost nothing to make
        handle.truncate(50 * 2**20)
    run_refused(cli, workdir, ["dialogue", huge, "-o", workdir / "x.wav"], 2, "over the 2 MiB limit")
    os.mkfifo(workdir / "fifo.wav")  # a pipe as a voice prompt would block the read forever
    run_refused(
        cli,
        workdir,
        ["say", "Hi.", "--prompt", workdir / "fifo.wav", "-o", workdir / "x.wav"],
        2,
        "not a regular",
    )


def test_a_device_as_registry_bundle_or_config_is_refused(cli, workdir, monkeypatch, tiny_bundle):
    monkeypatch.setenv("SOUNDSTORM_REGISTRY", "/dev/zero")
    run_refused(cli, workdir, ["voices"], 4, "not a regular file")
    monkeypatch.delenv("SOUNDSTORM_REGISTRY")
    copy = workdir / "bundle"
    shutil.copytree(tiny_bundle, copy)
    config = copy / "codec" / "config.json"
    with open(config, "ab") as handle:
        handle.truncate(8 * 2**20)
    code, _, stderr = cli("say", "Hi.", "-o", workdir / "o.wav", "--checkpoint", copy)
    assert code == 4 and not (workdir / "o.wav").exists()
    one_error_line(stderr, "")


# 2. An output that is an input ------------------------------------------------------------------------


def test_an_output_over_an_input_is_refused(cli, workdir, no_models):
    run_refused(
        cli, workdir, ["say", "Hi.", "--prompt", workdir / "v.wav", "-o", workdir / "v.wav"], 2, "same file"
    )
    run_refused(
        cli,
        workdir,
        ["dialogue", workdir / "s.txt", "-o", workdir / "d.wav", "--timings", workdir / "s.txt"],
        2,
        "same file as the script",
    )
    # the voice named in the front matter, reached through a symbolic and a hard link
    os.symlink(workdir / "v.wav", workdir / "link.wav")
    os.link(workdir / "v.wav", workdir / "hard.wav")
    for alias in ("link.wav", "hard.wav", "sub/../v.wav"):
        (workdir / "sub").mkdir(exist_ok=True)
        run_refused(cli, workdir, ["dialogue", workdir / "s.txt", "-o", workdir / alias], 2, "S1's voice")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=2, max_size=4, unique=True
    ),
    alias=st.sampled_from(["same", "dot", "parent", "symlink", "hardlink"]),
)
def test_outputs_apart_from_inputs_pass_and_aliases_are_refused(tmp_path, names, alias):
    from soundstorm.io.audio import check_outputs_apart

    folder = tmp_path / "_".join(names) / alias
    (folder / "d").mkdir(parents=True)
    inputs = {}
    for n, name in enumerate(names[1:]):
        (folder / f"{name}.wav").write_bytes(b"input")
        inputs[f"input {n}"] = folder / f"{name}.wav"
    output = folder / f"{names[0]}.wav"
    check_outputs_apart({"the output": output}, inputs)  # a different file: accepted
    target = folder / f"{names[1]}.wav"
    aliases = {
        "same": target,
        "dot": folder / "." / target.name,
        "parent": folder / "d" / ".." / target.name,
        "symlink": folder / "ln.wav",
        "hardlink": folder / "hl.wav",
    }
    if alias == "symlink":
        os.symlink(target, aliases[alias])
    if alias == "hardlink":
        os.link(target, aliases[alias])
    with pytest.raises(InputError, match="same file"):
        check_outputs_apart({"the output": aliases[alias]}, inputs)


# 3, 4. Caps count what is spoken ----------------------------------------------------------------------


def test_caps_count_the_spoken_text_pauses_and_the_prompt_transcript(cli, workdir, no_models):
    out = workdir / "o.wav"
    # 6000 raw characters, 24 000 once every % is spelled out
    run_refused(cli, workdir, ["say", "% " * 3000, "-o", out], 2, "once numbers and symbols are spelled out")
    (workdir / "p.txt").write_text("[S1] Hi. " + "(pause 30) " * 21 + "\n")
    run_refused(cli, workdir, ["dialogue", workdir / "p.txt", "-o", out], 2, "the pauses add up to 630 s")
    run_refused(
        cli,
        workdir,
        ["say", "Hi.", "--prompt-text", "word " * 24000, "--frontend", "t2s", "-o", out],
        2,
        "transcript",
    )


# 5. The parser is linear -------------------------------------------------------------------------------


def test_the_script_parser_takes_linear_time():
    from soundstorm.chain.script import parse_script

    def seconds(n: int) -> float:
        text = "[S1] " + "word (two words) more\n" * n
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            parse_script(text)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = seconds(4000), seconds(40000)
    assert large / small < 30  # 10x the input; the quadratic parser took ~100x


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]()S12 _:.#-\n\tab,pause3é\x00")), max_size=200))
def test_the_parser_fuzzed_raises_only_script_errors(text):
    from soundstorm.base.errors import ScriptError
    from soundstorm.chain.script import parse_script

    try:
        script = parse_script(text)
    except ScriptError as exc:
        assert str(exc).splitlines() and len(str(exc).splitlines()) == 1
        return
    assert script.turns and all(t.speaker.isidentifier() for t in script.turns)


# 6. Input errors get their documented codes -------------------------------------------------------------


def test_a_prompt_of_huge_float_samples_is_taken_not_crashed(cli, workdir, monkeypatch):
    from soundstorm.base.errors import CheckpointError
    from soundstorm.chain.prompts import load_prompt_audio
    from soundstorm.chain.synthesize import Synthesizer

    loud = workdir / "loud.wav"
    sf.write(loud, voice_like(2.0, 16000, 140.0, 1) * 1e20, 16000, subtype="FLOAT")
    speech = load_prompt_audio(loud, 16000)
    assert np.isfinite(speech).all() and 0.5 < np.abs(speech).max() <= 1.0 and len(speech) > 16000

    def stop(*_args, **_kwargs):  # the prompt passed every check: stop where the models would load
        raise CheckpointError("models would load here")

    monkeypatch.setattr(Synthesizer, "from_checkpoint", classmethod(stop))
    run_refused(
        cli, workdir, ["say", "Hi.", "--prompt", loud, "-o", workdir / "o.wav"], 4, "models would load"
    )


def test_long_numbers_and_deep_front_matter_are_input_errors(cli, workdir, no_models):
    from soundstorm.chain.text import normalize

    assert normalize("7" * 4400).split()[:2] == ["seven", "seven"]
    run_refused(cli, workdir, ["say", "1" * 6000, "-o", workdir / "o.wav"], 2, "spelled out")
    (workdir / "deep.txt").write_text("---\nvoices: " + "[" * 1000 + "]" * 1000 + "\n---\n[S1] Hi.\n")
    run_refused(cli, workdir, ["dialogue", workdir / "deep.txt", "-o", workdir / "o.wav"], 2, "deep.txt:")


@pytest.mark.parametrize(
    ("where", "content"),
    [
        ("bundle.yaml", "components: [1, 2]\n"),
        ("bundle.yaml", "components:\n  codec: 7\n"),
        ("bundle.yaml", "name: x\ncomponents:\n  codec:\n    path: codec\n    files: [config.json]\n"),
        ("codec/config.json", "{not json"),
        ("codec/config.json", "[1, 2]"),
        ("soundstorm/config.json", '{"dim": "wide"}'),
    ],
)
def test_a_malformed_bundle_is_a_checkpoint_error(cli, workdir, tiny_bundle, where, content):
    import yaml

    from soundstorm.bundles.checkpoints import sha256_file

    copy = workdir / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / where).write_text(content)
    if where != "bundle.yaml":  # rehash, so that the content itself is what is refused
        entry = yaml.safe_load((copy / "bundle.yaml").read_text())
        kind, name = where.split("/")
        entry["components"][kind]["files"][name] = sha256_file(copy / where)
        (copy / "bundle.yaml").write_text(yaml.safe_dump(entry))
    code, _, stderr = cli("say", "Hi.", "-o", workdir / "o.wav", "--checkpoint", copy)
    assert code == 4, stderr
    one_error_line(stderr, "")
    assert not (workdir / "o.wav").exists()


# 7. Checks before the models load --------------------------------------------------------------------------


def test_checks_that_need_no_model_come_before_loading(cli, workdir, no_models):
    out = workdir / "o.wav"
    run_refused(cli, workdir, ["say", "?!... ,;", "-o", out], 2, "nothing to speak")
    many = workdir / "many.txt"
    many.write_text("".join(f"[P{n}] Hello.\n" for n in range(9)))
    run_refused(cli, workdir, ["dialogue", many, "-o", out], 2, "9 speakers; at most 8")
    run_refused(cli, workdir, ["say", "Hi. " * 6000, "-o", out], 2, "at most 20000")
    run_refused(cli, workdir, ["say", "Hi.", "-o", workdir / ("n" * 252 + ".wav")], 3, "256 bytes long")


def test_an_output_name_of_250_bytes_gets_a_temporary_name_that_fits(tmp_path):
    from soundstorm.io.audio import write_audio

    out = tmp_path / ("n" * 246 + ".wav")
    write_audio(out, np.zeros(1600, np.float32), 16000)
    assert sf.info(out).samplerate == 16000 and [p.name for p in tmp_path.iterdir()] == [out.name]


# 8. Every loaded file is listed and hashed ---------------------------------------------------------------


def test_an_unlisted_weight_file_is_refused_and_verify_says_so(cli, workdir, tiny_bundle):
    import yaml

    copy = workdir / "bundle"
    shutil.copytree(tiny_bundle, copy)
    entry = yaml.safe_load((copy / "bundle.yaml").read_text())
    del entry["components"]["codec"]["files"]["model.safetensors"]  # lists only config.json
    (copy / "bundle.yaml").write_text(yaml.safe_dump(entry))
    code, _, stderr = cli("say", "Hi.", "-o", workdir / "o.wav", "--checkpoint", copy)
    assert code == 4 and not (workdir / "o.wav").exists()
    one_error_line(stderr, "not listed with a sha256")
    code, stdout, _ = cli("checkpoints", "verify", str(copy))
    assert code != 0 and "unlisted" in stdout


# 9. Subtitles are escaped ---------------------------------------------------------------------------------


def test_subtitles_escape_markup_cue_arrows_and_control_characters(cli, tiny_bundle, tmp_path):
    script = tmp_path / "d.txt"
    script.write_text("[A] Fish & chips <b>now</b> --> later\x07\x1b.\n[B] Fine.\n")
    for kind in (".vtt", ".srt"):
        subs = tmp_path / f"d{kind}"
        code, _, stderr = cli(
            "dialogue",
            script,
            "-o",
            tmp_path / "d.wav",
            "--timings",
            subs,
            "--checkpoint",
            tiny_bundle,
            "-q",
            "--frontend",
            "espeak",
        )
        assert code == 0, stderr
        text = subs.read_text()
        assert "\x07" not in text and "\x1b" not in text
        assert text.count("-->") == 2  # one per cue, none from the text
        if kind == ".vtt":
            assert "Fish &amp; chips &lt;b&gt;now&lt;/b&gt; -&gt; later" in text
        else:
            assert "A: Fish & chips <b>now</b> -> later ." in text


# 10. Ctrl-C ------------------------------------------------------------------------------------------------


def test_ctrl_c_says_interrupted_and_leaves_no_temporary_file(cli, tiny_bundle, tmp_path, monkeypatch):
    import soundstorm.io.audio as audio

    out = tmp_path / "o.wav"
    out.write_bytes(b"precious")
    before = snapshot(tmp_path)

    def interrupted(*_args, **_kwargs):  # the user presses Ctrl-C while the file is being written
        raise KeyboardInterrupt

    monkeypatch.setattr(audio.sf, "write", interrupted)
    code, stdout, stderr = cli("say", "Hi.", "-o", out, "--checkpoint", tiny_bundle, "-q")
    assert code == 130 and stderr == "error: interrupted\n" and stdout == ""
    assert snapshot(tmp_path) == before


def test_every_exit_code_is_in_the_readme():
    import re
    from pathlib import Path

    from soundstorm.base import errors

    readme = Path(__file__).resolve().parent.parent / "README.md"
    section = readme.read_text().split("**Exit codes**:", 1)[1].split("\n\n", 1)[0]
    listed = {int(c) for c in re.findall(r"`(\d+)`", section)}
    codes = {
        cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "exit_code")
    }
    assert codes | {0, 2, 70, 130} == listed  # usage errors are 2, a bug 70, Ctrl-C 130; nothing else
