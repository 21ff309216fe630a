"""The bundle registry: named model bundles, where their files are, and their sha256.

`checkpoints.yaml` (at the repository root, shipped inside the package) names
each bundle. A bundle is a set of components — codec, semantic tokenizer, text
tokenizer, t2s, soundstorm, ar_baseline — each a folder of files found in one of
three places:

- `package: PATH`  inside `soundstorm/assets/` (the embedded default; offline);
- `path: PATH`     a local folder (absolute, or relative to the registry file);
- `hub: ID`        a Hugging Face hub repository, downloaded into the user cache
                   when online; offline, the user can place the files there by hand.

Every file carries a sha256 that is checked before anything is loaded, and a
component's folder may hold no other file (an unlisted file would be loaded
unhashed: it is refused, and `verify` reports it); a hub
file whose hash the registry cannot know in advance is pinned at its first
download (recorded beside it) and checked against that record afterwards.
Weights are only ever read from safetensors: a pickle posing as weights is refused.

Which bundle: `--checkpoint`, else `$SOUNDSTORM_CHECKPOINT`, else the registry's default.
`--checkpoint` may also be a folder holding a `bundle.yaml` (one registry entry).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from soundstorm.base.errors import CheckpointError, ModelNotAvailableError

COMPONENT_KINDS = ("codec", "semantic", "text", "t2s", "soundstorm", "ar_baseline", "voices", "testset")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the soundstorm package
ASSETS = PACKAGE_ROOT / "assets"
ENV_CHECKPOINT = "SOUNDSTORM_CHECKPOINT"
ENV_REGISTRY = "SOUNDSTORM_REGISTRY"
ENV_CACHE = "SOUNDSTORM_CACHE"
# Where hashes of hub files are pinned at their first download.
PIN_FILE = ".soundstorm-sha256.json"
# Extensions of pickle-based checkpoints, which can run code when loaded.
PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".th"}


def default_registry_path() -> Path:
    """`$SOUNDSTORM_REGISTRY`, else the repository's `checkpoints.yaml`, else the packaged copy."""
    if os.environ.get(ENV_REGISTRY):
        return Path(os.environ[ENV_REGISTRY])
    in_checkout = PACKAGE_ROOT.parent / "checkpoints.yaml"
    return in_checkout if in_checkout.is_file() else PACKAGE_ROOT / "checkpoints.yaml"


def cache_dir() -> Path:
    """Where hub components are downloaded: `$SOUNDSTORM_CACHE` or `~/.cache/soundstorm`."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "soundstorm"


@dataclass(frozen=True)
class Component:
    """One model of a bundle: a folder of files with their sha256 (None: pinned at download)."""

    kind: str
    source: str  # "package" | "path" | "hub"
    location: str
    files: dict[str, str | None]
    revision: str | None = None
    base: Path = field(default=ASSETS, compare=False)

    @property
    def folder(self) -> Path:
        """Where the files are, or will be once fetched."""
        if self.source == "package":
            return ASSETS / self.location
        if self.source == "path":
            path = Path(self.location).expanduser()
            return path if path.is_absolute() else self.base / path
        return cache_dir() / "hub" / self.location.replace("/", "--")


@dataclass(frozen=True)
class Bundle:
    """A named set of components plus the facts the chain needs (rates, levels)."""

    name: str
    description: str
    facts: dict
    components: dict[str, Component]
    card: Path | None = None

    def require(self, *kinds: str, command: str = "this command") -> None:
        """Raise a clear error when a component `command` needs is not in the bundle."""
        missing = [kind for kind in kinds if kind not in self.components]
        if missing:
            raise ModelNotAvailableError(
                f"bundle '{self.name}' has no {', '.join(missing)} model yet, so {command} cannot run; "
                "`soundstorm checkpoints list` shows what each bundle holds"
            )


@dataclass(frozen=True)
class FileCheck:
    """The outcome of hashing one file of a bundle."""

    bundle: str
    component: str
    path: Path
    status: str  # "ok" | "mismatch" | "missing" | "not fetched" | "unlisted"
    expected: str | None
    actual: str | None

    @property
    def failed(self) -> bool:
        return self.status in ("mismatch", "missing", "unlisted")


@dataclass(frozen=True)
class Registry:
    default: str
    bundles: dict[str, Bundle]
    path: Path

    def names(self) -> list[str]:
        return sorted(self.bundles)

    def get(self, name_or_path: str | None = None) -> Bundle:
        """The bundle named (or the folder given); None resolves through env and default."""
        name = resolve_name(name_or_path, self.default)
        if name in self.bundles:
            return self.bundles[name]
        folder = Path(name).expanduser()
        if (folder / "bundle.yaml").is_file():
            return load_bundle_folder(folder)
        if folder.exists():
            raise CheckpointError(f"checkpoint folder '{folder}' has no bundle.yaml")
        raise CheckpointError(f"unknown checkpoint '{name}'; available: {', '.join(self.names())}")


def resolve_name(cli_value: str | None, default: str) -> str:
    """`--checkpoint`, else `$SOUNDSTORM_CHECKPOINT`, else the registry default."""
    return cli_value or os.environ.get(ENV_CHECKPOINT) or default


def load_registry(path: str | Path | None = None) -> Registry:
    """Read and validate a registry file (default: `default_registry_path()`)."""
    path = Path(path) if path else default_registry_path()
    raw = _read_yaml(path)
    bundles_raw = raw.get("bundles")
    if not isinstance(bundles_raw, dict) or not bundles_raw:
        raise CheckpointError(f"registry '{path}' names no bundles")
    bundles = {name: _parse_bundle(name, entry, path.parent) for name, entry in bundles_raw.items()}
    default = raw.get("default") or next(iter(bundles))
    if default not in bundles:
        raise CheckpointError(f"registry '{path}': default bundle '{default}' is not defined")
    return Registry(default=default, bundles=bundles, path=path)


def load_bundle_folder(folder: Path) -> Bundle:
    """A bundle described by `folder/bundle.yaml`, its `path:` components relative to the folder."""
    entry = _read_yaml(folder / "bundle.yaml")
    return _parse_bundle(entry.get("name", folder.name), entry, folder)


def _read_yaml(path: Path) -> dict:
    from soundstorm.io.textfiles import REGISTRY_LIMIT, load_yaml, read_text_file

    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"registry file '{path}' not found")
    text = read_text_file(path, REGISTRY_LIMIT, CheckpointError, "registry file")
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"cannot read '{path}': {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"'{path}' is not a mapping")
    return data


def _parse_bundle(name: str, entry: dict, base: Path) -> Bundle:
    if not isinstance(entry, dict):
        raise CheckpointError(f"bundle '{name}': entry must be a mapping")
    for key, kind in (("components", dict), ("facts", dict), ("description", str), ("card", str)):
        if entry.get(key) is not None and not isinstance(entry[key], kind):
            raise CheckpointError(
                f"bundle '{name}': '{key}' must be a {'mapping' if kind is dict else 'text'}"
            )
    components = {}
    for kind, spec in (entry.get("components") or {}).items():
        if kind not in COMPONENT_KINDS:
            raise CheckpointError(
                f"bundle '{name}': unknown component '{kind}' (known: {', '.join(COMPONENT_KINDS)})"
            )
        components[kind] = _parse_component(name, kind, spec, base)
    card = entry.get("card")
    return Bundle(
        name=name,
        description=str(entry.get("description", "")),
        facts=dict(entry.get("facts") or {}),
        components=components,
        card=(ASSETS / card) if card else None,
    )


def _parse_component(bundle: str, kind: str, spec: dict, base: Path) -> Component:
    if not isinstance(spec, dict):
        raise CheckpointError(f"bundle '{bundle}', component '{kind}': must be a mapping")
    sources = [key for key in ("package", "path", "hub") if key in spec]
    if len(sources) != 1 or not isinstance(spec[sources[0]], str):
        raise CheckpointError(
            f"bundle '{bundle}', component '{kind}': give exactly one of package, path, hub (text)"
        )
    files = spec.get("files") or {}
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"bundle '{bundle}', component '{kind}': no files listed")
    for filename, digest in files.items():
        if not isinstance(filename, str) or not (digest is None or isinstance(digest, str)):
            raise CheckpointError(f"bundle '{bundle}', component '{kind}': files map names to sha256 text")
        if Path(filename).is_absolute() or ".." in Path(filename).parts:
            raise CheckpointError(
                f"bundle '{bundle}', component '{kind}': '{filename}' is outside the component's folder"
            )
        if Path(filename).suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(
                f"bundle '{bundle}', component '{kind}': '{filename}' is a pickle-format checkpoint; "
                "only safetensors weights are loaded"
            )
    source = sources[0]
    return Component(
        kind=kind,
        source=source,
        location=str(spec[source]),
        files={str(k): (str(v).lower() if v else None) for k, v in files.items()},
        revision=spec.get("revision"),
        base=base,
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _pinned_hashes(component: Component) -> dict[str, str]:
    pin = component.folder / PIN_FILE
    if component.source != "hub" or not pin.is_file():
        return {}
    from soundstorm.io.textfiles import read_json

    try:
        pins = read_json(pin, CheckpointError, "hash pins")
    except CheckpointError:
        return {}
    return pins if isinstance(pins, dict) else {}


def check_component(bundle: str, component: Component) -> list[FileCheck]:
    """Hash every file of a component against the registry (or the hub pin)."""
    pinned = _pinned_hashes(component)
    checks = [
        FileCheck(bundle, component.kind, path, "unlisted", None, None) for path in unlisted_files(component)
    ]
    for filename, expected in component.files.items():
        path = component.folder / filename
        expected = expected or pinned.get(filename)
        if not path.is_file():
            status = "not fetched" if component.source == "hub" else "missing"
            checks.append(FileCheck(bundle, component.kind, path, status, expected, None))
            continue
        actual = sha256_file(path)
        status = "ok" if expected is None or actual == expected else "mismatch"
        checks.append(FileCheck(bundle, component.kind, path, status, expected, actual))
    return checks


def unlisted_files(component: Component) -> list[Path]:
    """Files in a component's folder that its entry does not list (hidden ones, such as hash pins, aside).

    Loaders open fixed names (config.json, model.safetensors, ...): one present but unlisted would be
    loaded without its hash ever being checked, so it is refused instead."""
    folder = component.folder
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.is_dir():
            continue
        if str(relative) not in component.files:
            found.append(path)
    return found


def verify_bundle(bundle: Bundle) -> list[FileCheck]:
    """Hash every file of every component of `bundle`."""
    return [check for comp in bundle.components.values() for check in check_component(bundle.name, comp)]


def fetch_component(component: Component) -> Path:
    """Locate a component's folder; a hub component is downloaded (once) and its hashes pinned."""
    folder = component.folder
    missing = [name for name in component.files if not (folder / name).is_file()]
    if missing and component.source != "hub":
        raise CheckpointError(f"component '{component.kind}' is missing {', '.join(missing)} in '{folder}'")
    if missing:
        _download(component, folder)
        missing = [name for name in component.files if not (folder / name).is_file()]
        if missing:
            raise CheckpointError(
                f"'{component.location}' has no {', '.join(missing)}; place them in '{folder}'"
            )
    if component.source == "hub" and not (folder / PIN_FILE).is_file():
        # Trust on first use: later changes to these files are caught by `verify`.
        pins = {name: sha256_file(folder / name) for name in component.files}
        (folder / PIN_FILE).write_text(json.dumps(pins, indent=1))
    return folder


def _download(component: Component, folder: Path) -> None:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(
            repo_id=component.location,
            revision=component.revision,
            local_dir=folder,
            allow_patterns=list(component.files),
        )
    except Exception as exc:  # noqa: BLE001 - any network or hub failure means the same thing to the user
        raise CheckpointError(
            f"cannot download '{component.location}' ({type(exc).__name__}; offline?): "
            f"place {', '.join(component.files)} from that repository in '{folder}'"
        ) from exc


def component_path(bundle: Bundle, kind: str, command: str = "this command") -> Path:
    """The verified folder of one component: located (fetched if hub), every file hashed."""
    bundle.require(kind, command=command)
    component = bundle.components[kind]
    folder = fetch_component(component)
    for check in check_component(bundle.name, component):
        if check.status == "unlisted":
            raise CheckpointError(
                f"{check.path} is in component '{kind}' of bundle '{bundle.name}' but not listed with a sha256: "
                "it would be loaded unchecked; remove it, or list it with its hash"
            )
        if check.failed:
            raise CheckpointError(
                f"{check.path} does not match its sha256 in the registry (bundle '{bundle.name}'); "
                "the file is corrupt or was changed: restore it, or run `soundstorm checkpoints verify`"
            )
    return folder


# A weight stored in int8 rows (`pipelines/int8.py`) keeps its per-row scale [rows] under its name + this.
INT8_SCALE = ".int8_scale"


def int8_rows(weight):
    """weight [R, ...] -> (int8 [R, ...], scale [R] float32) with weight ~ int8 * scale per row (the
    stored form `dequantize` reads back)."""
    import torch

    rows = weight.float().reshape(weight.shape[0], -1)
    scale = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
    q = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(weight.shape).contiguous(), scale.contiguous()


def load_safetensors(path: str | Path, device: str = "cpu") -> dict:
    """Load a state dict from a safetensors file; pickles are refused, never unpickled. Weights stored in
    int8 rows come back as float32 (`dequantize`)."""
    path = Path(path)
    ensure_safetensors(path)
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own untyped errors
        raise CheckpointError(f"cannot load '{path}': {str(exc).splitlines()[0]}") from exc
    return dequantize(state, path)


def dequantize(state: dict, path: str | Path = "<weights>") -> dict:
    """Each int8 tensor that has a NAME.int8_scale [rows] -> float32 rows times their scale; the rest as is."""
    import torch

    out = {}
    for name, value in state.items():
        if name.endswith(INT8_SCALE):
            if name[: -len(INT8_SCALE)] not in state:
                raise CheckpointError(f"cannot load '{path}': scale '{name}' has no weight")
            continue
        scale = state.get(name + INT8_SCALE)
        if scale is not None:
            if value.dtype != torch.int8 or scale.dim() != 1 or scale.shape[0] != value.shape[0]:
                raise CheckpointError(f"cannot load '{path}': '{name}' is not int8 rows with one scale a row")
            value = value.float() * scale.float().reshape(-1, *[1] * (value.dim() - 1))
        out[name] = value
    return out


def ensure_safetensors(path: str | Path) -> Path:
    """Raise unless `path` is a safetensors file; call before handing weights to any loader."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"refusing to load '{path}': pickle-format checkpoints can run code")
    if not path.is_file():
        raise CheckpointError(f"cannot load '{path}': no such file")
    if not _looks_like_safetensors(path):
        raise CheckpointError(
            f"refusing to load '{path}': it is not a safetensors file (pickles are never loaded)"
        )
    return path


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte little-endian header size then a JSON '{'."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
            size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= size - 8


def load_model_folder(folder: str | Path, build, what: str, device: str = "cpu"):
    """A shipped model: `config.json` rebuilt by `build(mapping)`, `model.safetensors` loaded in fp32
    (never pickle), in eval mode on `device`. A config or weights that do not fit raise CheckpointError.
    (Built on the meta device to skip the random init, it would import torch._dynamo: 2 s more.)"""
    from soundstorm.io.textfiles import read_json_object

    folder = Path(folder)
    raw = read_json_object(folder / "config.json", CheckpointError, f"{what} config")
    raw.pop("model_type", None)
    try:
        model = build(raw)
        model.load_state_dict(
            {k: v.float() for k, v in load_safetensors(folder / "model.safetensors").items()}
        )
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{what} weights in '{folder}' do not fit its config: {str(exc).splitlines()[0]}"
        ) from exc
    return model.to(device).eval()


def save_model_folder(folder: str | Path, state: dict, config: dict) -> Path:
    """The shipped form `load_model_folder` reads: `model.safetensors` (written whole, then renamed into
    place) and `config.json`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors.tmp"))
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder
