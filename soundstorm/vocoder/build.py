"""Build FARGAN (Opus 1.5.2's DNN vocoder) into a shared library: `python -m soundstorm.vocoder.build`.

The weights are C files (`dnn/fargan_data.c`, `dnn/pitchdnn_data.c`) inside Opus's *release* tarball
(git snapshots lack them), which is also Debian's source package `opus` 1.5.2 (trixie). The tarball comes
from `$SOUNDSTORM_OPUS_TARBALL` (a local copy) or Debian's archive, is checked against its sha256, and only
the files below are taken out of it. `cc` compiles them with `fargan_shim.c` in a few seconds. `.ci/setup`
runs this once; it is a no-op when the library is already built from the same sources.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from soundstorm.base.errors import VocoderError
from soundstorm.io.home import vocoder_home

OPUS_VERSION = "1.5.2"
TARBALL_NAME = "opus_1.5.2.orig.tar.gz"
TARBALL_SHA256 = "65c1d2f78b9f2fb20082c38cbe47c951ad5839345876e46941612ee87f9a7ce1"
TARBALL_URLS = (
    "http://deb.debian.org/debian/pool/main/o/opus/opus_1.5.2.orig.tar.gz",
    "https://deb.debian.org/debian/pool/main/o/opus/opus_1.5.2.orig.tar.gz",
)
ENV_TARBALL = "SOUNDSTORM_OPUS_TARBALL"
ENV_LIBRARY = "SOUNDSTORM_FARGAN_LIB"  # a library built elsewhere, used as it is
LIBRARY_NAME = "libsoundstorm_fargan.so"
SHIM = Path(__file__).with_name("fargan_shim.c")

# What FARGAN and the LPCNet feature analysis (with PitchDNN) need, and nothing of the Opus codec itself.
SOURCES = (
    "dnn/lpcnet_enc.c",
    "dnn/freq.c",
    "dnn/pitchdnn.c",
    "dnn/pitchdnn_data.c",
    "dnn/fargan.c",
    "dnn/fargan_data.c",
    "dnn/nnet.c",
    "dnn/nnet_default.c",
    "dnn/lpcnet_tables.c",
    "dnn/burg.c",
    "dnn/parse_lpcnet_weights.c",
    "celt/kiss_fft.c",
    "celt/pitch.c",
    "celt/celt_lpc.c",
    "celt/mathops.c",
    "celt/entcode.c",
)
HEADER_DIRS = (".", "include", "celt", "silk", "dnn")
DEFINES = ("-DOPUS_BUILD", "-DVAR_ARRAYS", "-DHAVE_LRINTF", "-DHAVE_LRINT")


def library_path() -> Path:
    """Where the built library lives (`$SOUNDSTORM_FARGAN_LIB` names a library built elsewhere)."""
    if os.environ.get(ENV_LIBRARY):
        return Path(os.environ[ENV_LIBRARY])
    return vocoder_home() / f"opus-{OPUS_VERSION}" / LIBRARY_NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp() -> dict:
    """What the library is built from: a change of either rebuilds it."""
    return {"opus_tarball_sha256": TARBALL_SHA256, "shim_sha256": _sha256(SHIM)}


def is_built() -> bool:
    lib = library_path()
    if os.environ.get(ENV_LIBRARY):
        return lib.is_file()
    try:
        return lib.is_file() and json.loads(lib.with_suffix(".json").read_text()) == _stamp()
    except (OSError, ValueError):
        return False


def obtain_tarball(work: Path) -> Path:
    """The tarball, sha256-checked: `$SOUNDSTORM_OPUS_TARBALL`, else downloaded from Debian's archive."""
    local = os.environ.get(ENV_TARBALL)
    if local:
        path = Path(local)
        if not path.is_file():
            raise VocoderError(f"${ENV_TARBALL} names {path}, which is not a file")
    else:
        path = work / TARBALL_NAME
        errors = []
        for url in TARBALL_URLS:
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as f:
                    shutil.copyfileobj(response, f)
                break
            except OSError as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise VocoderError(
                f"cannot download the Opus {OPUS_VERSION} release tarball ({'; '.join(errors)}); "
                f"put a copy of {TARBALL_NAME} (Debian's source package opus {OPUS_VERSION}, or "
                f"opus-{OPUS_VERSION}.tar.gz from Xiph.Org) somewhere and set ${ENV_TARBALL} to it"
            )
    actual = _sha256(path)
    if actual != TARBALL_SHA256:
        raise VocoderError(f"{path} is not the Opus {OPUS_VERSION} release tarball (sha256 {actual[:16]}...)")
    return path


def _extract(tarball: Path, dest: Path) -> Path:
    """Only the C sources and headers the build reads, each checked to stay inside `dest`."""
    root = dest / f"opus-{OPUS_VERSION}"
    wanted_dirs = tuple(f"opus-{OPUS_VERSION}/{d}/" for d in ("include", "celt", "silk", "dnn"))
    with tarfile.open(tarball) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith(wanted_dirs) and m.name.endswith((".c", ".h"))
        ]
        tar.extractall(dest, members=members, filter="data")
    return root


def build(quiet: bool = False) -> Path:
    """Build the library unless it is built already from the same sources; returns its path."""
    lib = library_path()
    if is_built():
        return lib
    if os.environ.get(ENV_LIBRARY):
        raise VocoderError(f"${ENV_LIBRARY} names {lib}, which is not a file")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise VocoderError("no C compiler found (cc or gcc; Debian: apt-get install gcc) to build FARGAN")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soundstorm-opus-") as tmp:
        work = Path(tmp)
        root = _extract(obtain_tarball(work), work)
        out = lib.parent / f".{lib.name}.{os.getpid()}.tmp"
        command = [
            cc,
            "-shared",
            "-fPIC",
            "-O3",
            "-march=native",
            *DEFINES,
            *(f"-I{root / d}" for d in HEADER_DIRS),
            *(str(root / s) for s in SOURCES),
            str(SHIM),
            "-o",
            str(out),
            "-lm",
        ]
        if not quiet:
            print(f"building FARGAN from Opus {OPUS_VERSION} into {lib}", file=sys.stderr)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            out.unlink(missing_ok=True)
            tail = done.stderr.strip().splitlines()[-3:]
            raise VocoderError(f"compiling FARGAN failed ({cc}): {' / '.join(tail)}")
        os.replace(out, lib)
    lib.with_suffix(".json").write_text(json.dumps(_stamp()))
    return lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        path = build(quiet=args.quiet)
    except VocoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"FARGAN: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
