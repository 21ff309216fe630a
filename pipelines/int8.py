"""Store a model's large weights as int8 rows: `python -m pipelines.int8 FOLDER_OR_FILE [...]`.

Each floating weight of at least `MIN_ELEMENTS` values (linear layers, embedding tables, heads) is
written as int8 with one float32 scale per row (its largest magnitude / 127), a quarter of fp32 and
half of the bf16 the bundle used to ship: the bundle's files fit in 64 MiB. Loading
(`checkpoints.load_safetensors`) turns them back into float32; biases, norms and small tensors keep
their stored dtype, and so does the codec's encoder side (its encoder and codebooks define the codes
of every prompt: in int8 rows a few in a hundred level-1 codes would change). The file is rewritten
whole, then renamed into place; one already stored this way is left as is.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from soundstorm.bundles.checkpoints import INT8_SCALE, int8_rows

MIN_ELEMENTS = 65536
# the codec's encoder and codebooks (names of `models/frame_codec.py`): they define the codes
CODEC_KEEP = ("encoder", "quantizer.")


def quantize_state(state: dict, min_elements: int = MIN_ELEMENTS, keep=()) -> dict:
    """A state dict with its large floating weights (2-D or more) as int8 rows plus NAME.int8_scale;
    names starting with one of `keep` stay as they are."""
    out = {}
    for name, value in state.items():
        large = value.is_floating_point() and value.dim() >= 2 and value.numel() >= min_elements
        if large and not name.startswith(tuple(keep)):
            out[name], out[name + INT8_SCALE] = int8_rows(value)
        else:
            out[name] = value.contiguous()
    return out


def store_int8(path: Path, min_elements: int = MIN_ELEMENTS) -> dict:
    """Rewrite one safetensors file with its large weights in int8 rows: {"before": bytes, "after": bytes}.
    Beside a codec's config (our frame codec), its encoder side is kept."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    config = path.parent / "config.json"
    codec = config.is_file() and json.loads(config.read_text()).get("model_type") == "soundstorm-frame-codec"

    before = path.stat().st_size
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {"format": "pt"}
    state = load_file(str(path))
    if any(name.endswith(INT8_SCALE) for name in state):
        return {"before": before, "after": before}
    tmp = path.with_name(path.name + ".tmp")
    save_file(quantize_state(state, min_elements, CODEC_KEEP if codec else ()), str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return {"before": before, "after": path.stat().st_size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="model.safetensors files, or folders holding one")
    args = parser.parse_args(argv)
    sizes = {}
    for path in args.paths:
        path = path / "model.safetensors" if path.is_dir() else path
        sizes[str(path)] = store_int8(path)
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
