"""import-encodec: an original-format EnCodec checkpoint (.th) becomes the Hugging Face model, verified."""

from __future__ import annotations

import hashlib
import re

import pytest
import torch
from conftest import tiny_encodec_config

from soundstorm.base.errors import CheckpointError
from soundstorm.bundles.encodec_import import hf_key, import_encodec

# transformers -> the `encodec` package's names: the inverse of the import's renames.
_BACK = (
    (r"^(encoder|decoder)\.layers\.", r"\1.model."),
    (r"\.parametrizations\.weight\.original0$", ".weight_g"),
    (r"\.parametrizations\.weight\.original1$", ".weight_v"),
    (r"^quantizer\.layers\.", "quantizer.vq.layers."),
    (r"\.codebook\.", "._codebook."),
)


def original_key(key: str, transposed: bool) -> str:
    for pattern, replacement in _BACK:
        key = re.sub(pattern, replacement, key)
    return key.replace(".conv.", ".convtr.convtr." if transposed else ".conv.conv.", 1)


def save_original(model, folder, corrupt: bool = False):
    """The model's weights as the encodec package stores them, named with their hash prefix."""
    transposed = {n for n, m in model.named_modules() if isinstance(m, torch.nn.ConvTranspose1d)}
    state = {}
    for key, value in model.state_dict().items():
        module = key.split(".parametrizations")[0].rsplit(".", 1)[0]
        state[original_key(key, module in transposed)] = value.clone()
    raw = folder / "raw.th"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    final = folder / f"encodec_tiny-{digest[:8]}.th"
    raw.rename(final)
    if corrupt:
        final.write_bytes(final.read_bytes()[:-8] + b"\x00" * 8)
    return final


def test_names_map_as_the_original_package_writes_them():
    assert (
        hf_key("encoder.model.0.conv.conv.weight_g")
        == "encoder.layers.0.conv.parametrizations.weight.original0"
    )
    assert (
        hf_key("decoder.model.3.convtr.convtr.weight_v")
        == "decoder.layers.3.conv.parametrizations.weight.original1"
    )
    assert hf_key("encoder.model.1.shortcut.conv.conv.bias") == "encoder.layers.1.shortcut.conv.bias"
    assert hf_key("quantizer.vq.layers.2._codebook.embed") == "quantizer.layers.2.codebook.embed"
    assert hf_key("encoder.model.7.lstm.weight_ih_l0") == "encoder.layers.7.lstm.weight_ih_l0"


def test_import_round_trips_a_random_encodec(tiny_encodec, tmp_path):
    from transformers import EncodecModel

    th = save_original(tiny_encodec, tmp_path)
    folder = import_encodec(th, tmp_path / "hf", config=tiny_encodec_config())
    loaded = EncodecModel.from_pretrained(folder, use_safetensors=True).eval()
    for key, value in tiny_encodec.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    wav = torch.randn(1, 1, 800)
    with torch.no_grad():
        codes = tiny_encodec.encode(wav, bandwidth=20.0).audio_codes
        assert torch.equal(loaded.encode(wav, bandwidth=20.0).audio_codes, codes)
    assert (folder / ".soundstorm-sha256.json").is_file()


def test_a_corrupt_or_foreign_checkpoint_is_refused(tiny_encodec, tmp_path):
    bad = save_original(tiny_encodec, tmp_path, corrupt=True)
    with pytest.raises(CheckpointError, match="corrupt"):
        import_encodec(bad, tmp_path / "hf", config=tiny_encodec_config())
    unnamed = tmp_path / "weights.th"
    torch.save({"a": torch.zeros(1)}, unnamed)
    with pytest.raises(CheckpointError, match="--sha256"):
        import_encodec(unnamed, tmp_path / "hf", config=tiny_encodec_config())
    digest = hashlib.sha256(unnamed.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="does not fit EnCodec"):
        import_encodec(unnamed, tmp_path / "hf", config=tiny_encodec_config(), sha256=digest)


def test_cli_import_writes_where_asked(cli, tiny_encodec, tmp_path):
    th = save_original(tiny_encodec, tmp_path)
    # The default config is the 24 kHz model's: a tiny checkpoint does not fit it, and says so in one line.
    code, _, stderr = cli("checkpoints", "import-encodec", th, "--out", tmp_path / "hf")
    assert code == 4 and stderr.startswith("error: ") and "does not fit EnCodec" in stderr
    code, _, stderr = cli("checkpoints", "import-encodec", tmp_path / "missing-12345678.th")
    assert code == 2 and "no such file" in stderr
