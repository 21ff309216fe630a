"""Voice prompts' tokens, kept between calls.

A prompt costs a codec encode and a Whisper pass (about 0.8 s on 2 CPU cores) the
first time it is used; after that its codes and semantic tokens come from here, the
same numbers the models would give again. Entries are keyed by the sha256 of the
prompt's samples (as cut and trimmed) and of the bundle's codec and semantic
tokenizer files, so another bundle, another prompt length or an edited file never
meets a stale entry. They live in `$SOUNDSTORM_HOME/cache/prompts`, else in
platformdirs' user cache folder, as safetensors; `SOUNDSTORM_NO_CACHE=1` turns the
cache off. An entry that cannot be read is ignored and written again; a folder that
cannot be written only means no cache.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from soundstorm.io.home import prompt_cache_home

ENV_OFF = "SOUNDSTORM_NO_CACHE"


def enabled() -> bool:
    return os.environ.get(ENV_OFF, "") in ("", "0")


def bundle_identity(bundle, *kinds: str, **facts) -> str:
    """What makes a bundle's prompt tokens what they are: its components' files (with their sha256, or
    their size and time where the registry pins none) and `facts` (levels, conditioning)."""
    parts = {"facts": facts}
    for kind in kinds:
        component = bundle.components.get(kind)
        if component is None:
            continue
        files = {}
        for name, digest in sorted(component.files.items()):
            if digest is None:
                path = component.folder / name
                stat = path.stat() if path.exists() else None
                digest = f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else str(path)
            files[name] = digest
        parts[kind] = files
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def key(samples: np.ndarray, identity: str) -> str:
    digest = hashlib.sha256(identity.encode())
    digest.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    return digest.hexdigest()


def load(entry: str):
    """(codes [Q, P] long tensor, semantic [P25] int64) of a cached prompt, or None."""
    path = prompt_cache_home() / f"{entry}.safetensors"
    if not enabled() or not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        return tensors["codes"].long(), tensors["semantic"].numpy().astype(np.int64)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
        return None  # damaged or foreign: computed again and rewritten


def store(entry: str, codes, semantic: np.ndarray) -> None:
    """Keep a prompt's tokens (written whole, then renamed into place); a failure only means no cache."""
    if not enabled():
        return
    import torch
    from safetensors.torch import save_file

    folder = prompt_cache_home()
    tmp = folder / f".{entry}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "codes": codes.to(torch.int32).contiguous(),
                "semantic": torch.from_numpy(semantic.astype(np.int32)),
            },
            str(tmp),
        )
        os.replace(tmp, folder / f"{entry}.safetensors")
    except OSError:
        tmp.unlink(missing_ok=True)
