"""checkpoints.py: the registry, resolution order, hashes, hub fallback, no pickle."""

from __future__ import annotations

import pickle

import pytest
import torch
import yaml

from soundstorm.base.errors import CheckpointError, ModelNotAvailableError
from soundstorm.bundles.checkpoints import (
    component_path,
    load_registry,
    load_safetensors,
    sha256_file,
    verify_bundle,
)


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


def test_int8_rows_load_back_within_half_a_step_and_small_tensors_stay(tmp_path):
    """`pipelines.int8` stores large weights as int8 rows with a scale each; loading gives float32 within
    half a quantization step of every value; biases, small tensors and kept names are untouched."""
    from safetensors.torch import save_file

    from pipelines.int8 import quantize_state, store_int8

    torch.manual_seed(0)
    state = {
        "big.weight": torch.randn(300, 256) * torch.rand(300, 1),  # rows of different scales
        "conv.weight": torch.randn(256, 64, 5).to(torch.bfloat16),
        "zero.weight": torch.zeros(256, 256),
        "small.weight": torch.randn(8, 8),
        "big.bias": torch.randn(300),
        "steps": torch.arange(70000, dtype=torch.int16),
    }
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    sizes = store_int8(path)
    assert sizes["after"] < sizes["before"] / 2
    loaded = load_safetensors(path)
    assert set(loaded) == set(state)
    for name in ("big.weight", "conv.weight", "zero.weight"):
        original = state[name].float()
        step = original.reshape(original.shape[0], -1).abs().amax(1) / 127
        error = (loaded[name] - original).reshape(original.shape[0], -1).abs().amax(1)
        assert loaded[name].dtype == torch.float32 and (error <= step / 2 + 1e-6).all(), name
    for name in ("small.weight", "big.bias", "steps"):
        assert torch.equal(loaded[name], state[name]), name
    assert store_int8(path) == {"before": sizes["after"], "after": sizes["after"]}  # already stored so
    kept = quantize_state(
        {"encoder.w": state["big.weight"], "decoder.w": state["big.weight"]}, keep=("encoder",)
    )
    assert kept["encoder.w"].dtype == torch.float32 and kept["decoder.w"].dtype == torch.int8


def test_int8_weights_that_do_not_fit_are_refused(tmp_path):
    from safetensors.torch import save_file

    bad = {
        "orphan": {"w.int8_scale": torch.ones(3)},
        "float": {"w": torch.ones(3, 4), "w.int8_scale": torch.ones(3)},
        "rows": {"w": torch.ones(3, 4, dtype=torch.int8), "w.int8_scale": torch.ones(4)},
    }
    for name, state in bad.items():
        save_file(state, tmp_path / f"{name}.safetensors")
        with pytest.raises(CheckpointError, match="cannot load"):
            load_safetensors(tmp_path / f"{name}.safetensors")


def test_a_t2s_stored_in_int8_rows_loads_and_generates(tmp_path):
    """The T5 loads from int8 rows (through our loader, not transformers'): its weights within the
    quantization step, the output head still tied to the embedding, generation runs."""
    import json

    from conftest import tiny_t2s_config

    from pipelines.int8 import store_int8
    from soundstorm.models.t2s import T2S, load_t2s

    config = tiny_t2s_config()
    t2s = T2S.random_init(config, seed=0)
    t2s.model.save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "t2s.json").write_text(json.dumps(config.to_dict()))
    exact = load_t2s(tmp_path)
    store_int8(tmp_path / "model.safetensors", min_elements=64)  # a tiny model's weights are small
    stored = load_t2s(tmp_path)
    pairs = zip(exact.model.named_parameters(), stored.model.named_parameters(), strict=True)
    assert any(not torch.equal(a, b) for (_, a), (_, b) in pairs)
    for (name, a), (_, b) in zip(
        exact.model.named_parameters(), stored.model.named_parameters(), strict=True
    ):
        assert (a - b).abs().max() <= a.abs().max() / 254 + 1e-6, name
    assert stored.model.lm_head.weight.data_ptr() == stored.model.shared.weight.data_ptr()
    out = stored.generate([[5, 6, 7]], turns=[1], seed=0)[0]
    assert all(0 <= t < config.semantic_vocab for t in out.semantic)


def test_a_model_folder_loads_its_own_weights_and_refuses_a_config_they_do_not_fit(tmp_path):
    """`load_model_folder` gives every parameter as saved (bf16, back in fp32); weights for another
    shape are one CheckpointError."""
    import json

    from pipelines.training import save_bf16
    from soundstorm.models.soundstorm import SoundStorm, SoundStormConfig, load_soundstorm

    config = SoundStormConfig(levels=2, codebook_size=32, semantic_vocab=16, dim=32, layers=1, heads=2)
    model = SoundStorm(config).eval()
    save_bf16(model, tmp_path, "soundstorm")
    loaded = load_soundstorm(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert b.device.type == "cpu" and b.dtype == torch.float32, name
        assert torch.equal(a.to(torch.bfloat16).float(), b), name
    raw = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "dim": 48}))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_soundstorm(tmp_path)
