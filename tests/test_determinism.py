"""Same seed on the CPU -> the same loss trace and a byte-identical exported volume.

Two independent ``petite finetune`` + ``petite predict`` runs (real processes, tiny UNETR, tiny
dataset) must agree exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import pet_like, write_nifti

SHAPE_XYZ = (40, 36, 34)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import torch

    from napari_petite.models.checkpoint import save_checkpoint
    from napari_petite.models.registry import build_model, smoke_overrides

    root = tmp_path_factory.mktemp("determinism")
    for k in range(3):
        sub = root / "data" / "site" / f"sub-{k}"
        full = pet_like(SHAPE_XYZ, seed=k)
        low = np.random.default_rng(k).poisson(full / 5.0).astype(np.float32) * 5.0
        write_nifti(sub / "low.nii.gz", low)
        write_nifti(sub / "full.nii.gz", full)
    torch.manual_seed(0)
    base = save_checkpoint(build_model("unetr", "small", **smoke_overrides("unetr")),
                           root / "base.safetensors")
    return root, base


def _run(root, base, name: str, seed: int):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two runs side by side, one core each
    cli = [sys.executable, "-m", "napari_petite.cli"]
    adapter, recon = root / name / "adapter", root / name / "recon"
    tune = subprocess.run([*cli, "finetune", "--data", str(root / "data"), "--target", "site",
                           "--base", str(base), "--encoder", "lora", "--decoder", "ssf",
                           "--steps", "4", "--batch", "1", "--val-every", "2",
                           "--seed", str(seed), "--device", "cpu", "--out", str(adapter),
                           "--json"], capture_output=True, text=True, timeout=600, env=env)
    assert tune.returncode == 0, tune.stderr
    card = json.loads((adapter / "adapter.json").read_text())
    low = root / "data" / "site" / "sub-2" / "low.nii.gz"
    pred = subprocess.run([*cli, "predict", str(low), "--base", str(base), "--adapter",
                           str(adapter), "--device", "cpu", "--out", str(recon), "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert pred.returncode == 0, pred.stderr
    (written,) = json.loads(pred.stdout)["outputs"]
    with open(written, "rb") as fh:
        volume_sha = hashlib.sha256(fh.read()).hexdigest()
    return {"losses": card["training"]["losses"], "val": card["metrics"]["val_history"],
            "adapter_sha": card["adapter_sha256"], "volume_sha": volume_sha}


def test_same_seed_same_losses_and_identical_volume(workspace):
    root, base = workspace
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda name: _run(root, base, name, 7), ["a", "b"])
    assert len(first["losses"]) == 4
    assert first["losses"] == second["losses"]  # exact floats, not approximately
    assert first["val"] == second["val"]
    assert first["adapter_sha"] == second["adapter_sha"]
    assert first["volume_sha"] == second["volume_sha"]  # the exported NIfTI, byte for byte
    assert len(set(first["losses"])) > 1  # a real trace, not a constant
