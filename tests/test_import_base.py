"""``petite import-base``: a MONAI UNETR state dict with MONAI's default options (qkv without
bias, InstanceNorm without affine parameters) -> the project's checkpoint -> the same outputs
-> fine-tune -> predict, as real subprocesses."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_subject
from test_cli import petite

SHAPE_XYZ = (36, 34, 32)


def _monai_unetr(seed: int = 0, **options):
    """MONAI's UNETR with its default options; only the sizes are shrunk to a tiny network."""
    from monai.networks.nets import UNETR

    torch.manual_seed(seed)
    sizes = dict(img_size=32, feature_size=8, hidden_size=48, mlp_dim=96)
    return UNETR(in_channels=1, out_channels=1, **{**sizes, **options}).eval()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("import-base")
    for k in range(3):
        make_subject(root / "data" / "site-b" / f"sub-{k}", seed=k, shape_xyz=SHAPE_XYZ,
                     with_truth=False)
    monai = _monai_unetr()
    torch.save(monai.state_dict(), root / "monai_unetr.pth")
    return {"root": root, "monai": monai}


def test_monai_defaults_import_finetune_predict(workspace):
    from napari_petite.models.checkpoint import file_sha256, load_checkpoint

    root, monai = workspace["root"], workspace["monai"]
    source = root / "monai_unetr.pth"
    base = root / "base.safetensors"
    out = petite("import-base", str(source), "--out", str(base), "--source", "site-a",
                 "--json")
    assert out.returncode == 0, out.stderr
    card = json.loads(out.stdout)["card"]
    assert card["imported_from"]["sha256"] == file_sha256(source)
    assert card["monai_options"] == {"feature_size": 8, "hidden_size": 48,
                                     "img_size": [32, 32, 32], "mlp_dim": 96,
                                     "norm_affine": False, "num_heads": 12, "qkv_bias": False}
    assert "num_heads" not in card["options_from_weights"]
    assert card["made_by"]["command"].startswith("petite import-base")
    assert card["source"] == "site-a" and card["config"]["residual"] is False

    model, _ = load_checkpoint(base)
    x = torch.rand((2, 1, 32, 32, 32), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        assert float((model(x) - monai(x)).abs().max()) <= 1e-6

    data, adapter = root / "data", root / "adapter"
    out = petite("finetune", "--data", str(data), "--target", "site-b", "--base", str(base),
                 "--encoder", "lora", "--decoder", "ssf", "--steps", "2", "--val-every", "2",
                 "--device", "cpu", "--out", str(adapter), "--json")
    assert out.returncode == 0, out.stderr
    low = data / "site-b" / "sub-2" / "low.nii.gz"
    out = petite("predict", str(low), "--base", str(base), "--adapter", str(adapter),
                 "--device", "cpu", "--out", str(root / "recon"), "--json")
    assert out.returncode == 0, out.stderr
    (written,) = json.loads(out.stdout)["outputs"]
    from napari_petite.io.nifti import read_volume

    recon = read_volume(written)
    assert recon.shape == tuple(reversed(SHAPE_XYZ)) and float(recon.data.min()) >= 0.0


def test_options_safetensors_and_refusals(tmp_path):
    from safetensors.torch import save_file

    from napari_petite.errors import CheckpointError, ConfigError
    from napari_petite.models.checkpoint import load_checkpoint
    from napari_petite.models.monai_import import import_base

    # non-default options, from safetensors, read from the shapes (heads given)
    monai = _monai_unetr(1, qkv_bias=True, norm_name=("instance", {"affine": True}),
                         num_heads=4, img_size=(32, 32, 64))
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in monai.state_dict().items()}, str(path))
    with pytest.raises(ConfigError, match="not a cube"):
        import_base(path, tmp_path / "a.safetensors")
    with pytest.raises(ConfigError, match="hidden_size=64 was given, but the weights were "
                                          "trained with hidden_size=48"):
        import_base(path, tmp_path / "a.safetensors", given={"hidden_size": 64})
    written, card = import_base(path, tmp_path / "a.safetensors",
                                given={"img_size": (32, 32, 64), "num_heads": 4})
    assert card["monai_options"]["qkv_bias"] and card["monai_options"]["norm_affine"]
    model, _ = load_checkpoint(written)
    x = torch.rand((1, 1, 32, 32, 64))
    with torch.inference_mode():
        assert float((model(x) - monai(x)).abs().max()) <= 1e-6
    # the head count changes no shape: without it MONAI's default is assumed and recorded
    _, card = import_base(path, tmp_path / "b.safetensors", given={"img_size": (32, 32, 64)})
    assert card["monai_options"]["num_heads"] == 12
    assert "num_heads" not in card["options_from_weights"]
    with pytest.raises(ConfigError, match="not divisible by num_heads 5"):
        import_base(path, tmp_path / "c.safetensors",
                    given={"img_size": (32, 32, 64), "num_heads": 5})
    with pytest.raises(CheckpointError, match="holds no state dict"):
        torch.save([1, 2], tmp_path / "list.pt")
        import_base(tmp_path / "list.pt", tmp_path / "d.safetensors")
    assert not (tmp_path / "c.safetensors").exists() and not (tmp_path / "d.json").exists()


def test_pickled_objects_are_refused_without_running(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, path)
    out = petite("import-base", str(path), "--out", str(tmp_path / "b.safetensors"))
    assert out.returncode == 2 and not marker.exists()
    assert "weights-only" in out.stderr and "Traceback" not in out.stderr
    from napari_petite.errors import CheckpointError
    from napari_petite.models.checkpoint import read_card

    with pytest.raises(CheckpointError, match=r"petite import-base evil\.pth --out"):
        read_card(path)  # what --base evil.pth answers: the way forward


def test_norm_tuning_of_a_norm_free_decoder_is_a_sentence(tmp_path):
    """MONAI's decoder norms have no affine parameters: LayerNorm tuning there says so."""
    from napari_petite.errors import ConfigError
    from napari_petite.models.monai_import import build_from_state, infer_options
    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.spec import MixPEFTSpec

    state = _monai_unetr().state_dict()
    model = build_from_state(state, infer_options(state)[0])
    with pytest.raises(ConfigError, match="no normalisation layer with affine parameters"):
        apply_spec(model, MixPEFTSpec("unetr", "paper", "lora", "layernorm", True, {}))
    apply_spec(model, MixPEFTSpec("unetr", "paper", "layernorm", "ssf", True, {}))
    assert any(p.requires_grad for n, p in model.named_parameters() if "norm1" in n)


@pytest.mark.gui
def test_fine_tune_dock_imports_a_base(make_napari_viewer, qtbot, workspace, tmp_path):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-petite", "Fine-tune")
    out = tmp_path / "imported.safetensors"
    dock.import_base.start(workspace["root"] / "monai_unetr.pth", out)
    qtbot.waitUntil(lambda: dock.chooser.card is not None
                    and dock.chooser.path == out, timeout=60_000)
    assert dock.chooser.card["monai_options"]["norm_affine"] is False
    assert dock.import_base.isEnabled() and "unetr" in dock.chooser.info.text()
    bad = tmp_path / "notes.pth"
    bad.write_text("not a state dict")
    n = len(notification_manager.records)
    dock.import_base.start(bad, tmp_path / "bad.safetensors")
    qtbot.waitUntil(lambda: dock.import_base.isEnabled()
                    and len(notification_manager.records) > n, timeout=60_000)
    last = notification_manager.records[-1]
    assert last.severity == NotificationSeverity.ERROR
    assert "weights-only PyTorch file" in last.message and dock.chooser.path == out
