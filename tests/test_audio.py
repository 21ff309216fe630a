"""audio.py: reading any format and layout, resampling, atomic peak-safe writing."""

from __future__ import annotations

import io
import resource
import struct

import numpy as np
import pytest
import soundfile as sf
from conftest import sine

from soundstorm.base.errors import AudioError, OutputError
from soundstorm.io.audio import read_audio, resample, write_audio


@pytest.mark.parametrize(
    ("name", "rate", "channels", "subtype"),
    [
        ("stereo.wav", 44100, 2, "PCM_16"),
        ("mono.flac", 8000, 1, "PCM_16"),
        ("float.ogg", 48000, 1, "VORBIS"),
        ("float.wav", 48000, 3, "FLOAT"),
    ],
)
def test_any_file_comes_back_mono_at_the_requested_rate(tmp_path, name, rate, channels, subtype):
    path = tmp_path / name
    seconds = 0.73
    sf.write(path, sine(seconds, rate, channels=channels), rate, subtype=subtype)
    audio = read_audio(path, sample_rate=16000)
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.sample_rate == 16000
    assert abs(len(audio.samples) - seconds * 16000) <= 1
    assert 0.1 < np.abs(audio.samples).max() <= 1.0


def test_only_the_beginning_is_read_when_asked(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, sine(3.0, 22050, channels=2), 22050)
    assert len(read_audio(path, sample_rate=16000, max_seconds=1.25).samples) == 20000
    assert len(read_audio(path, sample_rate=16000).samples) == 48000


def test_int16_is_scaled_to_unit_range(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(path, np.full(800, 0.5, dtype=np.float32), 8000, subtype="PCM_16")
    assert np.allclose(read_audio(path).samples, 0.5, atol=1e-4)


def test_resampling_keeps_the_tone_and_removes_aliases():
    rate_in, rate_out = 48000, 16000
    tone = sine(1.0, rate_in, freq=1000.0)
    alias = sine(1.0, rate_in, freq=11000.0)  # above the new Nyquist (8 kHz): must be filtered, not folded
    out = resample(tone + alias, rate_in, rate_out)
    spectrum = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / rate_out)
    assert abs(freqs[spectrum.argmax()] - 1000.0) < 2
    folded = spectrum[np.abs(freqs - 5000.0) < 20].max()  # 11 kHz would fold to 5 kHz
    assert folded < 1e-3 * spectrum.max()


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_write_by_extension_round_trips(tmp_path, suffix):
    path = write_audio(tmp_path / f"out{suffix}", sine(0.5, 16000), 16000)
    info = sf.info(path)
    assert info.samplerate == 16000 and info.channels == 1
    assert abs(info.frames - 8000) <= 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_written_files_get_the_umask_mode_and_replaced_ones_keep_theirs(tmp_path):
    """The temporary file is private (mkstemp: 0600); the output must not stay so."""
    import os

    old = os.umask(0o022)
    try:
        fresh = write_audio(tmp_path / "new.wav", sine(0.1, 16000), 16000)
        kept = tmp_path / "shared.wav"
        kept.write_bytes(b"old")
        kept.chmod(0o664)
        write_audio(kept, sine(0.1, 16000), 16000)
    finally:
        os.umask(old)
    assert fresh.stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o664 and sf.info(kept).frames > 0


def test_write_is_peak_safe(tmp_path):
    path = write_audio(tmp_path / "hot.wav", sine(0.2, 16000) * 8, 16000)
    data, _ = sf.read(path)
    assert 0.9 < np.abs(data).max() <= 1.0


def test_failed_write_leaves_the_existing_file_untouched(tmp_path):
    path = tmp_path / "keep.wav"
    path.write_bytes(b"precious")
    bad = sine(0.1, 16000)
    bad[10] = np.nan
    with pytest.raises(OutputError):
        write_audio(path, bad, 16000)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]


def test_unknown_extension_and_missing_folder_are_refused(tmp_path):
    with pytest.raises(OutputError, match="extension"):
        write_audio(tmp_path / "out.xyz", sine(0.1, 16000), 16000)
    with pytest.raises(OutputError, match="does not exist"):
        write_audio(tmp_path / "nope" / "out.wav", sine(0.1, 16000), 16000)
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(OutputError, match="directory"):
        write_audio(tmp_path / "folder.wav", sine(0.1, 16000), 16000)


def _bad_inputs(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    return {
        "corrupt": (corrupt, "not a readable audio file"),
        "empty": (empty, "empty"),
        "directory": (folder, "directory"),
        "missing": (tmp_path / "missing.wav", "no such file"),
    }


@pytest.mark.parametrize("kind", ["corrupt", "empty", "directory", "missing"])
def test_bad_audio_raises_a_clear_error(tmp_path, kind):
    path, words = _bad_inputs(tmp_path)[kind]
    with pytest.raises(AudioError, match=words):
        read_audio(path)


@pytest.mark.parametrize("kind", ["corrupt", "empty", "directory", "missing"])
def test_bad_audio_through_the_cli_is_one_line_and_nonzero(tmp_path, cli, kind):
    path, words = _bad_inputs(tmp_path)[kind]
    out = tmp_path / "out.wav"
    code, stdout, stderr = cli("say", "hello", "--prompt", path, "-o", out)
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
    assert "Traceback" not in stderr + stdout
    assert not out.exists()


def test_a_prompt_far_beyond_full_scale_is_scaled_down_with_a_warning(tmp_path):
    """Issue 38: a float prompt at 3e25 rendered silence; it is brought to full scale, and said."""
    from soundstorm.chain.prompts import load_prompt_audio

    speech = sine(2.0, 16000) * np.hanning(32000).astype(np.float32)
    sf.write(tmp_path / "huge.wav", speech * 3e25, 16000, subtype="FLOAT")
    sf.write(tmp_path / "fine.wav", speech * 0.5, 16000, subtype="FLOAT")
    said: list[str] = []
    loud = load_prompt_audio(tmp_path / "huge.wav", 16000, warnings=said)
    assert len(said) == 1 and "beyond full scale" in said[0] and "e+25" in said[0]
    assert 0.5 < np.abs(loud).max() <= 1.0
    quiet: list[str] = []
    fine = load_prompt_audio(tmp_path / "fine.wav", 16000, warnings=quiet)
    assert quiet == [] and np.allclose(loud / np.abs(loud).max(), fine / np.abs(fine).max(), atol=1e-4)


# -- decompression bombs (issue 48, class 4) -----------------------------------------------------------


def _bomb(channels: int, rate: int, seconds: float) -> bytes:
    """A small FLAC of silence that unpacks to channels x rate x seconds samples."""
    out = io.BytesIO()
    sf.write(out, np.zeros((int(rate * seconds), channels), dtype=np.int16), rate, format="FLAC")
    return out.getvalue()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_small_file_that_unpacks_huge_is_refused_before_decoding():
    data = _bomb(8, 192_000, 60)  # the 91 KB file: 92 M samples, 440 MB where it was decoded whole
    assert len(data) < 2_000_000
    before = _peak_rss_mb()
    with pytest.raises(AudioError, match="at most"):
        read_audio(data)
    assert _peak_rss_mb() - before < 100


def test_a_header_rate_far_beyond_audio_is_refused(tmp_path):
    path = tmp_path / "fast.wav"
    sf.write(path, np.zeros(1600, dtype=np.int16), 16000)
    raw = bytearray(path.read_bytes())
    raw[24:28] = struct.pack("<I", 655_360)  # the fmt chunk's sample rate
    raw[28:32] = struct.pack("<I", 655_360 * 2)
    path.write_bytes(bytes(raw))
    with pytest.raises(AudioError, match="655360 Hz"):
        read_audio(path)
    with pytest.raises(AudioError, match="655360 Hz"):
        read_audio(path.read_bytes())


def test_an_upload_error_names_no_python_object():
    with pytest.raises(AudioError) as caught:
        read_audio(b"RIFF" + b"\x00" * 64)
    assert " at 0x" not in str(caught.value) and "the upload" in str(caught.value)


def test_a_prompt_reads_only_its_beginning_even_at_a_high_rate():
    data = _bomb(2, 192_000, 90)  # 90 s, of which a prompt reads 60 s: 23 M samples, within the cap
    assert read_audio(data, max_seconds=60).duration_s == pytest.approx(60)
