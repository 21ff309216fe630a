"""Audio in and out: read anything soundfile reads, downmix, resample, write atomically.

Samples are float32 numpy arrays in [-1, 1], mono, shape [T]. Resampling uses
soxr (a proper band-limited resampler), never naive interpolation. Writing goes
to a temporary file beside the target and is renamed into place only once the
file is complete, so an existing output is never replaced by a broken one.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from soundstorm.base.errors import AudioError, OutputError

# Output formats by extension: (soundfile format, subtype).
OUTPUT_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),  # where the installed libsndfile writes MP3 (1.1 and newer)
    ".opus": ("OGG", "OPUS"),  # Opus in Ogg (libsndfile 1.0.29 and newer)
}

# Peak a written file is brought down to when the signal would clip.
_SAFE_PEAK = 0.99


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples [T] and their sample rate."""

    samples: np.ndarray
    sample_rate: int
    peak_in_file: float = 1.0  # above 1: a float file beyond full scale, scaled down to it when read

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"cannot read audio '{path}': no such file")
    if path.is_dir():
        raise AudioError(f"cannot read audio '{path}': it is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(f"cannot read audio '{path}': not a regular file (a device, pipe or socket)")
    if path.stat().st_size == 0:
        raise AudioError(f"cannot read audio '{path}': the file is empty")
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot read audio '{path}': permission denied")


def read_audio(
    path: str | os.PathLike | bytes, sample_rate: int | None = None, max_seconds: float | None = None
) -> Audio:
    """Read a file soundfile understands (wav, flac, ogg, ...), downmixed to mono.

    With `sample_rate`, the audio is resampled to it; with `max_seconds`, only
    the file's beginning is read (a voice prompt may be an hour-long episode).
    Integer files come back as floats in [-1, 1]. `bytes` are a whole file's
    contents (an upload), decoded in memory.
    """
    if isinstance(path, bytes):
        source, path = io.BytesIO(path), Path("the upload")
    else:
        path = Path(path)
        _check_readable(path)
        source = str(path)
    try:
        with sf.SoundFile(source) as handle:
            rate, channels = handle.samplerate, handle.channels
            _check_header(path, rate, channels)  # before a sample is decoded: a small file can unpack huge
            frames = -1 if max_seconds is None else int(max_seconds * rate)
            samples = _read_mono(handle, path, frames)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = _ADDRESS.sub("", reason)  # soundfile names an in-memory file by its object's address
        raise AudioError(f"cannot read audio '{path}': not a readable audio file ({reason})") from None
    if len(samples) == 0:
        raise AudioError(f"cannot read audio '{path}': it holds no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"cannot read audio '{path}': it contains NaN or infinite samples")
    peak = float(np.abs(samples).max())
    if (
        peak > 1.0
    ):  # a float file beyond full scale (as loud as 1e20): brought to it, as any player would clip
        samples = (samples.astype(np.float64) * (_SAFE_PEAK / peak)).astype(np.float32)
    if sample_rate is not None and sample_rate != rate:
        samples = resample(samples, rate, sample_rate)
        rate = sample_rate
    return Audio(samples=samples, sample_rate=int(rate), peak_in_file=max(1.0, peak))


# What one file may unpack to (issue 48: a 91 KB FLAC declaring 8 channels at 192 kHz for 60 s took 440 MB).
# Checked on the header before decoding, then again while decoding, block by block (a header may lie).
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8
MAX_DECODED_SAMPLES = 2**25  # samples of all channels together: 11.6 minutes of 48 kHz stereo, 128 MB as floats
_BLOCK = 2**16
_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _check_header(path, rate: int, channels: int) -> None:
    if not 0 < rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"cannot read audio '{path}': its sample rate is {rate} Hz (at most {MAX_SAMPLE_RATE} Hz is read)"
        )
    if not 0 < channels <= MAX_CHANNELS:
        raise AudioError(f"cannot read audio '{path}': it has {channels} channels (at most {MAX_CHANNELS})")


def _read_mono(handle, path, frames: int) -> np.ndarray:
    """Up to `frames` frames (-1: all) as mono float32, decoded a block at a time, so that only the mono
    result is held; refused once the decoded samples pass MAX_DECODED_SAMPLES."""
    expected = handle.frames if frames < 0 else min(frames, handle.frames)  # 0 where the header does not say
    if expected * handle.channels > MAX_DECODED_SAMPLES:
        raise AudioError(_too_long(path, handle))
    pieces, decoded = [], 0
    for block in handle.blocks(_BLOCK, frames=frames, dtype="float32", always_2d=True):
        decoded += block.size
        if decoded > MAX_DECODED_SAMPLES:
            raise AudioError(_too_long(path, handle))
        pieces.append(downmix(block))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _too_long(path, handle) -> str:
    seconds = MAX_DECODED_SAMPLES / handle.channels / handle.samplerate
    return (
        f"cannot read audio '{path}': too long for its rate and channels ({handle.channels} x "
        f"{handle.samplerate} Hz: at most {seconds:.0f} s is read)"
    )


def downmix(data: np.ndarray) -> np.ndarray:
    """[T, C] or [T] -> mono [T] float32 (mean of the channels)."""
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    return data.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of mono [T] samples with soxr (high quality)."""
    if rate_in <= 0 or rate_out <= 0:
        raise AudioError(f"cannot resample from {rate_in} Hz to {rate_out} Hz")
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    import soxr

    out = soxr.resample(samples.astype(np.float32, copy=False), rate_in, rate_out, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def output_format(path: str | os.PathLike) -> tuple[str, str]:
    """The (format, subtype) for an output path, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = ", ".join(sorted(OUTPUT_FORMATS))
        raise OutputError(f"cannot write '{path}': unknown audio extension '{suffix}' (use one of {known})")
    fmt, subtype = OUTPUT_FORMATS[suffix]
    if fmt not in sf.available_formats():
        raise OutputError(
            f"cannot write '{path}': this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}; "
            "use .wav, .flac or .ogg"
        )
    return fmt, subtype


def check_file_name(path: Path, what: str = "") -> None:
    """A file name the file system can take (at most NAME_MAX bytes; 255 on Linux and macOS)."""
    try:
        limit = os.pathconf(path.parent if str(path.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(path.name))
    if size > limit:
        raise OutputError(f"cannot write {what}'{path}': its name is {size} bytes long; at most {limit}")


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early, before any work, when `path` cannot receive an audio file."""
    path = Path(path)
    output_format(path)
    check_file_name(path)
    if path.is_dir():
        raise OutputError(f"cannot write '{path}': it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write '{path}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write '{path}': folder '{parent}' is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write '{path}': the existing file is read-only")
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same path once resolved, or (when both exist) the same inode,
    which also catches symbolic and hard links."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_outputs_apart(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """Refuse (InputError, before any work) an output that is one of the inputs, or another output.

    `outputs` and `inputs` map a label ('output', "S1's voice") to a path (None: not given)."""
    from soundstorm.base.errors import InputError

    outs = [(label, Path(p)) for label, p in outputs.items() if p is not None]
    ins = [(label, Path(p)) for label, p in inputs.items() if p is not None]
    for n, (label, out) in enumerate(outs):
        for other, path in ins + outs[n + 1 :]:
            if same_file(out, path):
                raise InputError(
                    f"{label} '{out}' is the same file as {other} '{path}': it would be overwritten; "
                    "write somewhere else"
                )


def peak_safe(samples: np.ndarray) -> np.ndarray:
    """Scale down (never up) so that no sample clips; refuse NaN or infinity."""
    if not np.isfinite(samples).all():
        raise OutputError("refusing to write audio that contains NaN or infinite samples")
    peak = float(np.abs(samples).max(initial=0.0))
    if peak > 1.0:
        samples = samples * (_SAFE_PEAK / peak)
    return samples.astype(np.float32, copy=False)


def encode_audio(samples: np.ndarray, sample_rate: int, suffix: str) -> bytes:
    """Mono [S] or stereo [S, 2] samples as the bytes of a `suffix` file (.wav, .flac, .ogg, .mp3), in memory."""
    fmt, subtype = output_format(f"audio{suffix}")
    buffer = io.BytesIO()
    sf.write(buffer, peak_safe(np.asarray(samples, dtype=np.float32)), sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono [S] or stereo [S, 2] samples by extension (wav, flac, ogg, mp3), atomically.

    The file is written next to the target under a temporary name and renamed
    over it only when complete: an existing output is replaced by a whole new
    file or left untouched.
    """
    path = check_output_path(path)
    fmt, subtype = output_format(path)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim != 1 and not (samples.ndim == 2 and samples.shape[1] == 2):
        raise OutputError(
            f"cannot write '{path}': audio must be mono [S] or stereo [S, 2], got {samples.shape}"
        )
    samples = peak_safe(samples)
    with replaced_atomically(path) as tmp, tmp.open("wb") as handle:
        sf.write(handle, samples, sample_rate, format=fmt, subtype=subtype)
        handle.flush()
        os.fsync(handle.fileno())
    return path


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike, what: str = ""):
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path`, else it is removed.

    Every file a command writes goes through it (audio, subtitles, CSV, plots).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    tmp = str(parent / _temporary_name(path.name))
    try:  # created as `open` would (0666 under the umask), not private as mkstemp's; never over a file
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as exc:
        raise OutputError(f"cannot write {what}'{path}': {exc.strerror or exc}") from exc
    try:
        yield Path(tmp)
        if path.exists():  # a replaced file keeps its permissions
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise OutputError(f"cannot write {what}'{path}': {exc.strerror or exc}") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def _temporary_name(name: str, limit: int = 255) -> str:
    """'.NAME.XXXXXXXX.tmp', NAME shortened so that the whole fits `limit` bytes (a name of 250 does)."""
    suffix = f".{secrets.token_hex(4)}.tmp"
    room = limit - 1 - len(suffix)
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}{suffix}"


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
