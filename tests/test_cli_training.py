"""``petite finetune`` -> adapter bundle -> ``predict`` / ``evaluate``, as real subprocesses.

A tiny UNETR base checkpoint and a small two-scanner dataset on disk keep this under a minute.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import ANISO_AFFINE, pet_like, write_nifti
from test_cli import petite

from napari_petite.io.nifti import read_volume
from napari_petite.models.checkpoint import save_checkpoint
from napari_petite.models.registry import build_model, smoke_overrides

SHAPE_XYZ = (40, 36, 34)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-train")
    data = root / "data"
    for s, scanner in enumerate(("site-a", "site-b")):
        for k in range(4):
            sub = data / scanner / f"sub-{k}"
            full = pet_like(SHAPE_XYZ, seed=100 * s + k)
            low = np.random.default_rng(k).poisson(full / 6.0).astype(np.float32) * 6.0
            write_nifti(sub / "low.nii.gz", low)
            write_nifti(sub / "full.nii.gz", full)
            labels = np.zeros(SHAPE_XYZ, np.int16)
            labels[10:30, 10:26, 8:26] = 1
            write_nifti(sub / "labels.nii.gz", labels)
            (sub / "meta.json").write_text(json.dumps({"labels": {"1": "core"}}))
    torch.manual_seed(0)
    base = save_checkpoint(build_model("unetr", "small", **smoke_overrides("unetr")),
                           root / "base.safetensors", extra={"source": "site-a"})
    torch.manual_seed(1)
    other = save_checkpoint(build_model("unetr", "small", **smoke_overrides("unetr")),
                            root / "other.safetensors")
    return {"root": root, "data": data, "base": base, "other": other}


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_finetune_predict_evaluate_round_trip(workspace):
    root, data, base = workspace["root"], workspace["data"], workspace["base"]
    before = snapshot(data)
    adapter = root / "adapter"
    out = petite("finetune", "--data", str(data), "--target", "site-b", "--base", str(base),
                 "--encoder", "lora", "--decoder", "ssf", "--steps", "3", "--val-every", "3",
                 "--device", "cpu", "--seed", "1", "--out", str(adapter), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["steps"] == 3 and 0 < summary["percent"] < 100
    assert summary["split"] == {"train": ["sub-0", "sub-1"], "val": ["sub-2"], "test": ["sub-3"]}
    card = json.loads((adapter / "adapter.json").read_text())
    assert card["spec"]["encoder"] == "lora" and card["training"]["target"] == "site-b"
    assert card["training"]["source"] == "site-a"

    recon_dir = root / "recon"
    low = data / "site-b" / "sub-3" / "low.nii.gz"
    out = petite("predict", str(low), "--base", str(base), "--adapter", str(adapter),
                 "--out", str(recon_dir), "--device", "cpu", "--json")
    assert out.returncode == 0, out.stderr
    written = json.loads(out.stdout)["outputs"]
    recon, source = read_volume(written[0]), read_volume(low)
    assert recon.shape == source.shape
    np.testing.assert_array_equal(recon.affine, source.affine)
    np.testing.assert_allclose(recon.affine, ANISO_AFFINE, atol=1e-5)
    assert np.isfinite(recon.data).all()

    out = petite("evaluate", "--data", str(data), "--target", "site-b", "--base", str(base),
                 "--adapter", str(adapter), "--device", "cpu", "--out", str(root / "eval"),
                 "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["subjects_chosen"] == ["sub-3"]
    assert set(result["mean"]) >= {"low", "recon"}
    assert "core" in result["mean"]["recon"]["regional_bias_pct"]
    assert (root / "eval" / "metrics.csv").read_text().startswith("subject,comparison")
    assert snapshot(data) == before  # inputs untouched


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("corrupted-base", "corrupt"),
        ("unknown-scanner", "Unknown scanner 'site-z'"),
        ("empty-training-set", "training set needs at least one subject"),
        ("existing-out", "already exists"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(workspace, tmp_path, case, message):
    data, base = workspace["data"], workspace["base"]
    out_dir = tmp_path / "out"
    args = ["--data", str(data), "--target", "site-b", "--steps", "1", "--device", "cpu"]
    if case == "corrupted-base":
        broken = tmp_path / "broken.safetensors"
        raw = bytearray(base.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        broken.write_bytes(bytes(raw))
        (tmp_path / "broken.json").write_bytes(base.with_suffix(".json").read_bytes())
        cmd = ["finetune", *args, "--base", str(broken), "--out", str(out_dir)]
    elif case == "unknown-scanner":
        cmd = ["finetune", *args[:2], "--target", "site-z", "--steps", "1", "--base", str(base),
               "--out", str(out_dir)]
    elif case == "empty-training-set":
        cmd = ["finetune", *args, "--base", str(base), "--n-val", "2", "--n-test", "2",
               "--out", str(out_dir)]
    else:
        out_dir.mkdir()
        (out_dir / "keep.txt").write_text("mine")
        cmd = ["finetune", *args, "--base", str(base), "--out", str(out_dir)]
    before = snapshot(data)
    result = petite(*cmd)
    assert result.returncode == 2, result.stderr
    assert message.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert snapshot(data) == before
    if case == "existing-out":
        assert os.listdir(out_dir) == ["keep.txt"]
    else:
        assert not out_dir.exists()
