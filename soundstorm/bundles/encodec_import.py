"""`soundstorm checkpoints import-encodec FILE.th`: the original EnCodec checkpoint into Hugging Face form.

The `encodec` package caches its pretrained weights as `encodec_24khz-d7cc33bc.th`: a
PyTorch state dict whose file name carries the first 8 hex digits of its sha256. We
read it with `torch.load(weights_only=True)` (tensors only, never arbitrary pickled
objects), check that hash, rename its keys to `transformers.EncodecModel`'s, check
that every weight of the model is there and nothing else, and save the model with
`save_pretrained` (safetensors) where the `encodec-24khz` bundle looks for it.

Key renames (original -> transformers):
    encoder.model.N / decoder.model.N   -> encoder.layers.N / decoder.layers.N
    .conv.conv. / .convtr.convtr.       -> .conv.
    weight_g / weight_v (weight norm)   -> parametrizations.weight.original0 / original1
    quantizer.vq.layers.N._codebook.    -> quantizer.layers.N.codebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from soundstorm.base.errors import CheckpointError, InputError

_RENAMES = (
    (r"^(encoder|decoder)\.model\.", r"\1.layers."),
    (r"\.conv\.conv\.", ".conv."),
    (r"\.convtr\.convtr\.", ".conv."),
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
    (r"^quantizer\.vq\.layers\.", "quantizer.layers."),
    (r"\._codebook\.", ".codebook."),
)


def hf_key(original: str) -> str:
    for pattern, replacement in _RENAMES:
        original = re.sub(pattern, replacement, original)
    return original


def _check_hash(path: Path, sha256: str | None) -> str:
    from soundstorm.bundles.checkpoints import sha256_file

    actual = sha256_file(path)
    if sha256:
        if actual != sha256.lower():
            raise CheckpointError(f"'{path}' has sha256 {actual}, not the {sha256} given")
        return actual
    match = re.search(r"-([0-9a-f]{8})$", path.stem)
    if not match:
        raise CheckpointError(
            f"cannot verify '{path}': its name carries no hash prefix (as in encodec_24khz-d7cc33bc.th); "
            "give the expected hash with --sha256"
        )
    if not actual.startswith(match.group(1)):
        raise CheckpointError(
            f"'{path}' is corrupt: its sha256 starts {actual[:8]}, its name says {match.group(1)}"
        )
    return actual


def import_encodec(path: str | Path, out_dir: str | Path, config=None, sha256: str | None = None) -> Path:
    """Convert an original EnCodec `.th` state dict into a Hugging Face folder; returns the folder.

    `config`: a `transformers.EncodecConfig` (default: the 24 kHz model's, transformers' defaults).
    """
    import torch
    from transformers import EncodecConfig, EncodecModel

    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise InputError(f"cannot read '{path}': {'it is a directory' if path.is_dir() else 'no such file'}")
    _check_hash(path, sha256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a bad pickle, a truncated file: all mean the same to the user
        raise CheckpointError(
            f"'{path}' is not a weights-only PyTorch state dict: {str(exc).splitlines()[0]}"
        ) from exc
    if isinstance(state, dict) and "best_state" in state:  # a training checkpoint: the model is inside
        state = state["best_state"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"'{path}' does not hold a state dict of tensors")
    model = EncodecModel(config or EncodecConfig())
    renamed = {hf_key(k): v for k, v in state.items()}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(renamed)), sorted(set(renamed) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"'{path}' does not fit EnCodec's architecture ({len(missing)} weights missing, e.g. "
            f"{(missing or ['-'])[0]}; {len(unexpected)} unexpected, e.g. {(unexpected or ['-'])[0]})"
        )
    try:
        model.load_state_dict(renamed)
    except RuntimeError as exc:
        raise CheckpointError(
            f"'{path}': a weight has the wrong shape: {str(exc).splitlines()[-1].strip()}"
        ) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    _pin(out_dir)
    return out_dir


def _pin(folder: Path) -> None:
    """Record the hashes of what we wrote, as a first download would (checkpoints.PIN_FILE)."""
    from soundstorm.bundles.checkpoints import PIN_FILE, sha256_file

    pins = {name: sha256_file(folder / name) for name in ("config.json", "model.safetensors")}
    (folder / PIN_FILE).write_text(json.dumps(pins, indent=1))
