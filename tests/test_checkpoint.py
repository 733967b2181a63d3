"""Checkpoints: safetensors + JSON card round trip, and every way loading must refuse."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from napari_petite.errors import CheckpointError, OutputError
from napari_petite.models import (
    backbone_names,
    build_model,
    file_sha256,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from napari_petite.models.checkpoint import card_path
from napari_petite.models.registry import smoke_overrides


def _tiny(name: str):
    torch.manual_seed(0)
    return build_model(name, "small", **smoke_overrides(name))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    model = _tiny("unetr").eval()
    path = tmp_path_factory.mktemp("ckpt") / "base.safetensors"
    save_checkpoint(model, path, extra={"data": "scanner-a",
                                        "metrics": {"psnr": torch.tensor(31.5).numpy()[()]},
                                        "loss": torch.tensor(0.25), "root": Path("/data")})
    return path, model


def _copy(saved_path: Path, tmp_path: Path) -> Path:
    dest = tmp_path / saved_path.name
    dest.write_bytes(saved_path.read_bytes())
    card_path(dest).write_bytes(card_path(saved_path).read_bytes())
    return dest


def _edit_card(path: Path, **changes) -> None:
    card = json.loads(card_path(path).read_text())
    card.update(changes)
    card_path(path).write_text(json.dumps(card))


@pytest.mark.parametrize("name", backbone_names())
def test_round_trip_is_bit_identical_buffers_included(name, tmp_path):
    model = _tiny(name).train()
    x = torch.rand(2, 1, *model.patch_size)
    with torch.no_grad():
        model(x)  # moves BatchNorm running statistics away from their initial values
    model.eval()
    with torch.no_grad():
        before = model(x)
    path = save_checkpoint(model, tmp_path / "m.safetensors", extra={"command": "petite test"})
    loaded, card = load_checkpoint(path)
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), before)
    with safe_open(str(path), framework="pt") as fh:
        assert set(fh.keys()) == set(model.state_dict())  # buffers too, not only parameters
        assert fh.metadata()["backbone"] == name
    assert card["backbone"] == name and card["preset"] == "small"
    assert card["sha256"] == file_sha256(path)
    assert card["n_params"] == sum(p.numel() for p in model.parameters())
    assert card["command"] == "petite test" and card["torch_version"] == torch.__version__
    assert loaded.config == model.config


def test_card_contents(saved):
    path, _ = saved
    card = read_card(path)
    assert card_path(path) == path.with_suffix(".json")
    assert card["config"]["patch_size"] == [32, 32, 32]
    assert card["metrics"] == {"psnr": 31.5} and card["data"] == "scanner-a"
    assert card["loss"] == 0.25 and card["root"] == "/data"
    assert card["created"].endswith("+00:00")


def test_expected_backbone_and_preset(saved):
    path, _ = saved
    load_checkpoint(path, backbone="unetr", preset="small")
    with pytest.raises(CheckpointError, match="cvtgan"):
        load_checkpoint(path, backbone="cvtgan")
    with pytest.raises(CheckpointError, match="paper"):
        load_checkpoint(path, preset="paper")


def test_corrupted_file_is_refused(saved, tmp_path):
    path = _copy(saved[0], tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_missing_files(saved, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    path = _copy(saved[0], tmp_path)
    card_path(path).unlink()
    with pytest.raises(CheckpointError, match="no card"):
        load_checkpoint(path)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format": "other"}'])
def test_invalid_card(saved, tmp_path, text):
    path = _copy(saved[0], tmp_path)
    card_path(path).write_text(text)
    with pytest.raises(CheckpointError, match="card"):
        load_checkpoint(path)


def test_card_of_another_network(saved, tmp_path):
    path = _copy(saved[0], tmp_path)
    _edit_card(path, config={**read_card(path)["config"], "hidden_size": 64})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(path)
    _edit_card(path, config=read_card(saved[0])["config"], backbone="cvtgan")
    with pytest.raises(CheckpointError, match=r"cannot build|missing"):
        load_checkpoint(path)
    _edit_card(path, backbone="resnet")
    with pytest.raises(CheckpointError, match="resnet"):
        load_checkpoint(path)


def test_weights_of_another_network_with_a_valid_sha(tmp_path):
    """A card whose sha256 matches but whose tensors belong to a different config."""
    small = save_checkpoint(_tiny("unetr"), tmp_path / "a.safetensors")
    other = build_model("unetr", "small", **{**smoke_overrides("unetr"), "feature_size": 4})
    b = save_checkpoint(other, tmp_path / "b.safetensors")
    _edit_card(b, config=read_card(small)["config"])
    with pytest.raises(CheckpointError, match=r"shape mismatch.*different models"):
        load_checkpoint(b)


def test_save_refuses_overwrite_and_other_suffixes(saved, tmp_path):
    path, model = saved
    with pytest.raises(OutputError, match="exists"):
        save_checkpoint(model, path)
    dest = _copy(path, tmp_path)
    save_checkpoint(model, dest, overwrite=True)
    with pytest.raises(CheckpointError, match="safetensors"):
        save_checkpoint(model, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, card_path(dest).name])


class _Payload:
    """Unpickling this object creates a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".safetensors"])
def test_pickles_are_never_unpickled(tmp_path, suffix):
    marker = tmp_path / "unpickled"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    # sanity: the payload really does create the marker when unpickled
    pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    card = {"format": "napari-petite-checkpoint", "backbone": "unetr", "preset": "small",
            "config": smoke_overrides("unetr"), "sha256": file_sha256(path)}
    card_path(path).write_text(json.dumps(card))
    match = "only safetensors" if suffix != ".safetensors" else "cannot be read as safetensors"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
    assert not marker.exists()
