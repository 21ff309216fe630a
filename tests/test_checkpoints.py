"""checkpoints.py: the registry, resolution order, hashes, hub fallback, no pickle."""

from __future__ import annotations

import pickle

import pytest
import torch
import yaml

from soundstorm_cli.checkpoints import (
    component_path,
    load_registry,
    load_safetensors,
    sha256_file,
    verify_bundle,
)
from soundstorm_cli.errors import CheckpointError, ModelNotAvailableError


def _registry(tmp_path, tiny_encodec, default="mine"):
    """A registry with one local bundle holding a tiny codec, and one hub bundle."""
    folder = tmp_path / "codec"
    tiny_encodec.save_pretrained(folder)
    files = {name: sha256_file(folder / name) for name in ("config.json", "model.safetensors")}
    registry = {
        "default": default,
        "bundles": {
            "mine": {
                "description": "test bundle",
                "facts": {"sample_rate": 8000, "codec_frame_rate": 500, "levels": 4},
                "components": {"codec": {"path": "codec", "files": files}},
            },
            "other": {"description": "no components", "components": {}},
            "hubbed": {"components": {"codec": {"hub": "someone/encodec", "files": {"config.json": None}}}},
        },
    }
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(registry))
    return path, folder


@pytest.fixture
def registry_file(tmp_path, tiny_encodec, monkeypatch):
    path, _ = _registry(tmp_path, tiny_encodec)
    monkeypatch.setenv("SOUNDSTORM_REGISTRY", str(path))
    monkeypatch.setenv("SOUNDSTORM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SOUNDSTORM_CHECKPOINT", raising=False)
    return path


def test_the_shipped_registry_parses_and_its_packaged_files_verify():
    registry = load_registry()
    assert registry.default in registry.bundles
    assert registry.bundles["encodec-24khz"].components["codec"].source == "hub"
    for bundle in registry.bundles.values():
        assert not [c for c in verify_bundle(bundle) if c.failed]


def test_resolution_order_flag_then_env_then_default(registry_file, monkeypatch):
    registry = load_registry()
    assert registry.get(None).name == "mine"
    monkeypatch.setenv("SOUNDSTORM_CHECKPOINT", "other")
    assert registry.get(None).name == "other"
    assert registry.get("hubbed").name == "hubbed"


def test_unknown_name_lists_the_available_ones(registry_file):
    with pytest.raises(CheckpointError, match="available: hubbed, mine, other"):
        load_registry().get("nope")


def test_a_bundle_folder_can_stand_for_a_name(tmp_path, registry_file):
    folder = tmp_path / "my-bundle"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(yaml.safe_dump({"name": "mine2", "components": {}}))
    assert load_registry().get(str(folder)).name == "mine2"


def test_missing_component_is_a_clear_error(registry_file):
    with pytest.raises(ModelNotAvailableError, match="bundle 'other' has no soundstorm model yet"):
        load_registry().get("other").require("soundstorm", command="`say`")


def test_component_path_checks_hashes(tmp_path, registry_file):
    bundle = load_registry().get("mine")
    assert component_path(bundle, "codec") == tmp_path / "codec"


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_detects_a_flipped_byte(tmp_path, registry_file, cli):
    code, stdout, _ = cli("checkpoints", "verify", "mine")
    assert code == 0 and stdout.count("ok") == 2
    _flip_a_byte(tmp_path / "codec" / "model.safetensors")
    code, _, stderr = cli("checkpoints", "verify", "mine")
    assert code != 0
    assert "mismatch" in stderr and "1 of 2 files failed verification" in stderr
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        component_path(load_registry().get("mine"), "codec")


def test_verify_reports_a_missing_file(tmp_path, registry_file, cli):
    (tmp_path / "codec" / "config.json").unlink()
    code, _, stderr = cli("checkpoints", "verify")
    assert code != 0 and "missing" in stderr


def test_pickle_posing_as_weights_is_refused(tmp_path):
    fake = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(3)}, fake)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_safetensors(fake)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"w": [0.0]}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_safetensors(raw)
    with pytest.raises(CheckpointError, match="pickle"):
        load_safetensors(tmp_path / "model.pt")


def test_pickle_files_cannot_be_registered(tmp_path, monkeypatch):
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {"bundles": {"x": {"components": {"t2s": {"path": ".", "files": {"model.bin": None}}}}}}
        )
    )
    with pytest.raises(CheckpointError, match="pickle"):
        load_registry(path)


def test_real_safetensors_load(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.arange(4.0)}, tmp_path / "w.safetensors")
    assert torch.equal(load_safetensors(tmp_path / "w.safetensors")["w"], torch.arange(4.0))


def test_hub_component_offline_names_the_folder_to_fill(tmp_path, registry_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = load_registry().get("hubbed")
    expected = tmp_path / "cache" / "hub" / "someone--encodec"
    with pytest.raises(CheckpointError) as info:
        component_path(bundle, "codec")
    message = str(info.value)
    assert str(expected) in message and "config.json" in message and "\n" not in message


def test_hub_component_placed_by_hand_is_used_and_pinned(tmp_path, registry_file, cli):
    folder = tmp_path / "cache" / "hub" / "someone--encodec"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    bundle = load_registry().get("hubbed")
    assert component_path(bundle, "codec") == folder
    code, stdout, _ = cli("checkpoints", "verify", "hubbed")
    assert code == 0 and "ok" in stdout
    (folder / "config.json").write_text("{ }")  # changed after its hash was pinned
    code, _, stderr = cli("checkpoints", "verify", "hubbed")
    assert code != 0 and "mismatch" in stderr


def test_list_shows_every_bundle(registry_file, cli):
    code, stdout, _ = cli("checkpoints", "list", "--json")
    assert code == 0
    names = [b["name"] for b in yaml.safe_load(stdout)["bundles"]]
    assert names == ["hubbed", "mine", "other"]
