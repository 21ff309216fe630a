"""cli.py: commands, the one error boundary, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ("say", "dialogue", "bench", "eval", "voices", "checkpoints")


def test_help_lists_every_command(cli):
    code, stdout, _ = cli("--help")
    assert code == 0
    for command in COMMANDS:
        assert command in stdout


@pytest.mark.parametrize("args", [(), ("checkpoints",)])
def test_a_bare_command_prints_its_help_once(cli, args):
    code, stdout, _ = cli(*args)
    assert code == 0
    assert stdout.count("Usage:") == 1


def test_importing_the_cli_does_not_import_torch():
    probe = "import sys, soundstorm.doors.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version(cli):
    code, stdout, _ = cli("--version")
    assert code == 0 and stdout.startswith("soundstorm ")


@pytest.mark.parametrize(
    "args",
    [
        ("say", "hello"),
        ("dialogue", "{script}"),
        ("bench", "--durations", "5,30"),
        ("eval",),
        ("voices",),
    ],
)
def test_commands_without_models_say_so_and_fail(tmp_path, cli, args):
    # encodec-24khz holds a codec only: every command that needs more says what is missing.
    script = tmp_path / "s.txt"
    script.write_text("[S1] Hello.\n")
    args = [a.format(script=script) for a in args]
    outputs = ["-o", tmp_path / "x.wav"] if args[0] in ("say", "dialogue") else []
    code, stdout, stderr = cli(*args, *outputs, "--checkpoint", "encodec-24khz")
    assert code == 4
    assert (
        stderr.startswith("error: bundle 'encodec-24khz' has no ") and len(stderr.strip().splitlines()) == 1
    )
    assert "yet" in stderr
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("say", "hi", "--device", "gpu"), "--device"),
        (("say", "hi", "--seed", "-1"), "--seed"),
        (("say", "   "), "empty"),
        (("say", "hi", "--precision", "fp16"), "--precision"),
        (("bench", "--durations", "5,-3"), "--durations"),
        (("bench", "--durations", "abc"), "--durations"),
        (("bench", "--runs", "0"), "--runs"),
        (("dialogue", "{tmp}/missing.txt"), "no such file"),
        (("dialogue", "{tmp}"), "a batch renders into a folder"),  # a folder of scripts is a batch
        (("dialogue", "{tmp}/empty.txt"), "empty"),
        (("dialogue", "{tmp}/binary.txt"), "UTF-8"),
        (("dialogue", "{tmp}/ok.txt", "--voice", "S1"), "NAME=path"),
        (("say", "hi", "-o", "{tmp}/out.xyz"), "extension"),
        (("say", "hi", "-o", "{tmp}"), "directory"),
        (("say", "hi", "-o", "{tmp}/no/such/dir/out.wav"), "does not exist"),
        (("say", "hi", "--checkpoint", "nope"), "unknown checkpoint"),
        (("frobnicate",), "No such command"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, cli, args, words):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "ok.txt").write_text("[S1] Hi.\n")
    if args[-1] == "{tmp}" and args[0] == "say":
        (tmp_path / "out_dir.wav").mkdir()
        args = (*args[:-1], "{tmp}/out_dir.wav")
    code, stdout, stderr = cli(*[a.format(tmp=tmp_path) for a in args])
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert words in lines[0]
    assert "Traceback" not in stdout + stderr


def test_an_existing_output_is_untouched_by_a_failure(tmp_path, cli):
    out = tmp_path / "keep.wav"
    out.write_bytes(b"precious")
    code, _, _ = cli("say", "hello", "--prompt", tmp_path / "missing.wav", "-o", out)
    assert code != 0 and out.read_bytes() == b"precious"


def test_debug_shows_the_traceback(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "soundstorm.doors.cli",
        "--debug",
        "say",
        "hi",
        "--prompt",
        str(tmp_path / "x.wav"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr and "AudioError" in result.stderr
    result = subprocess.run([c for c in cmd if c != "--debug"], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot read audio '{tmp_path / 'x.wav'}': no such file"
    ]


def test_checkpoint_env_is_honoured(cli, monkeypatch):
    monkeypatch.setenv("SOUNDSTORM_CHECKPOINT", "encodec-24khz")
    code, _, stderr = cli("say", "hello")
    assert code != 0 and "bundle 'encodec-24khz'" in stderr
