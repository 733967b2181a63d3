"""``petite pretrain`` as a real subprocess, and the base models shipped in sample_data/models.

The runs use the smoke-size networks (``--override`` with models.registry.smoke_overrides) on
a one-scanner dataset of 34-voxel volumes, so each takes seconds.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import pet_like, write_nifti
from test_cli import petite

from napari_petite._resources import sample_data_dir
from napari_petite.models.checkpoint import file_sha256, load_checkpoint
from napari_petite.models.registry import build_model, smoke_overrides

SHAPE_XYZ = (34, 34, 34)
MAX_SHIPPED_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain") / "data"
    for k in range(4):
        sub = root / "site-a" / f"sub-{k}"
        full = pet_like(SHAPE_XYZ, seed=k)
        low = np.random.default_rng(k).poisson(full / 6.0).astype(np.float32) * 6.0
        write_nifti(sub / "low.nii.gz", low)
        write_nifti(sub / "full.nii.gz", full)
        (sub / "meta.json").write_text(json.dumps({"drf": 6.0, "seed": k}))
    (root / "site-a" / "scanner.json").write_text(
        json.dumps({"id": "site-a", "name": "Site A", "simulation": {"seed": 0}}))
    (root / "dataset.json").write_text(json.dumps({"generator": "test", "seed": 0, "drf": 6.0}))
    return root


def override_args(backbone: str) -> list[str]:
    out = []
    for key, value in smoke_overrides(backbone).items():
        value = list(value) if isinstance(value, tuple) else value
        out += ["--override", f"{key}={json.dumps(value)}"]
    return out


def pretrain(data, backbone, out, *extra):
    return petite("pretrain", "--data", str(data), "--source", "site-a", "--backbone", backbone,
                  *override_args(backbone), "--device", "cpu", "--out", str(out), *extra)


def test_pretrain_unetr_card_metrics_and_strict_reload(data, tmp_path):
    out = tmp_path / "base.safetensors"
    res = pretrain(data, "unetr", out, "--steps", "2", "--val-every", "2", "--seed", "3",
                   "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["steps"] == 2 and summary["split"]["test"] == ["sub-3"]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["source"] == "site-a" and card["split"]["train"] == ["sub-0", "sub-1"]
    assert card["training"]["steps_done"] == 2 and card["training"]["config"]["seed"] == 3
    assert card["training"]["spec"]["encoder"] == card["training"]["spec"]["decoder"] == "full"
    assert card["data"]["subject_meta"]["drf"] == 6.0
    assert card["data"]["scanner_profile"]["name"] == "Site A"
    assert card["data"]["dataset"]["generator"] == "test"
    for kind in ("low_vs_full", "model_vs_full"):
        assert {"psnr_mask", "ssim_mask", "nrmse_mask"} <= set(card["metrics"][kind])
    # the low-count image is the Poisson-thinned full one: a real, finite PSNR
    assert 15 < card["metrics"]["low_vs_full"]["psnr_mask"] < 60
    assert card["training"]["val_best"]["step"] == 2
    command = shlex.split(card["command"])
    assert command[:2] == ["petite", "pretrain"] and "--seed" in command
    assert command[command.index("--steps") + 1] == "2"

    model, loaded = load_checkpoint(out, backbone="unetr")  # strict, sha256 checked
    assert loaded["sha256"] == file_sha256(out)
    assert model.config["hidden_size"] == smoke_overrides("unetr")["hidden_size"]
    assert "peft_state" not in model.__dict__
    torch.manual_seed(3)
    fresh = build_model("unetr", "small", **smoke_overrides("unetr"))
    trained = dict(model.named_parameters())
    changed = [n for n, p in fresh.named_parameters() if not torch.equal(p, trained[n])]
    assert len(changed) > len(trained) // 2  # all weights trained, not a PEFT subset


def test_pretrain_cvtgan_trains_the_discriminator(data, tmp_path):
    out = tmp_path / "gan.safetensors"
    res = pretrain(data, "cvtgan", out, "--steps", "1", "--val-every", "0", "--n-val", "0",
                   "--seed", "5")
    assert res.returncode == 0, res.stderr
    assert "model vs full PSNR" in res.stdout
    model, card = load_checkpoint(out, backbone="cvtgan")
    assert card["training"]["discriminator_params"] > 0
    torch.manual_seed(5)
    fresh = build_model("cvtgan", "small", **smoke_overrides("cvtgan"))
    trained = dict(model.named_parameters())
    moved = {model.group_of(n) for n, p in fresh.named_parameters()
             if not torch.equal(p, trained[n])}
    assert {"encoder", "decoder", "head"} <= moved


def test_sigterm_stops_after_a_step_and_still_writes(data, tmp_path):
    out = tmp_path / "stopped.safetensors"
    cmd = [sys.executable, "-m", "napari_petite.cli", "pretrain", "--data", str(data),
           "--source", "site-a", "--backbone", "unetr", *override_args("unetr"),
           "--device", "cpu", "--steps", "100000", "--val-every", "0", "--n-val", "0",
           "--checkpoint-every", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = tmp_path / "stopped.safetensors.resume" / "resume.json"
    try:
        while not progress.exists() and proc.poll() is None:  # a step has completed
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=280)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped early" in stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["stopped"] is True
    assert 1 <= card["training"]["steps_done"] < 100000
    load_checkpoint(out)


def test_pretrain_refusals_leave_nothing(data, tmp_path):
    out = tmp_path / "x.safetensors"
    res = petite("pretrain", "--data", str(data), "--source", "nope", "--backbone", "unetr",
                 "--out", str(out))
    assert res.returncode == 2 and "nope" in res.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()

    res = pretrain(data, "unetr", tmp_path / "x.pt", "--steps", "1")
    assert res.returncode == 2 and ".safetensors" in res.stderr

    res = pretrain(data, "unetr", out, "--steps", "1", "--override", "no_such_option=3")
    assert res.returncode == 2 and "no_such_option" in res.stderr
    assert list(tmp_path.iterdir()) == []

    out.write_bytes(b"keep me")
    res = pretrain(data, "unetr", out, "--steps", "1")
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("backbone", ["unetr", "cvtgan"])
def test_shipped_base_model_loads_and_matches_its_card(backbone):
    path = sample_data_dir() / "models" / f"{backbone}-small.safetensors"
    assert path.is_file(), f"shipped base model {path} is missing"
    assert path.stat().st_size <= MAX_SHIPPED_BYTES
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == file_sha256(path)
    model, card = load_checkpoint(path, backbone=backbone, preset="small")
    assert card["source"] == "mct" and card["command"].startswith("petite pretrain ")
    assert card["training"]["steps_done"] >= 100
    metrics = card["metrics"]
    assert metrics["model_vs_full"]["psnr_mask"] > 0 and metrics["low_vs_full"]["psnr_mask"] > 0
    window = torch.rand(1, 1, *model.patch_size)
    with torch.no_grad():
        assert torch.isfinite(model(window)).all()
