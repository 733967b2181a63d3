"""Two-process DistributedDataParallel fine-tuning on the CPU (gloo), launched by torchrun.

``python -m torch.distributed.run --standalone --nproc-per-node 2 -m napari_petite.cli finetune``
must train with averaged gradients, end with bit-identical tensors on both ranks (the card
records each rank's digest), print once and write one bundle that loads back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import pet_like, write_nifti
from safetensors.torch import load_file

from napari_petite.models.checkpoint import save_checkpoint
from napari_petite.models.registry import build_model, smoke_overrides
from napari_petite.training.distributed import state_digest

SHAPE_XYZ = (32, 32, 32)


def tiny_workspace(root, backbone="unetr", n_subjects=3):
    data = root / "data"
    for k in range(n_subjects):
        sub = data / "site-b" / f"sub-{k}"
        full = pet_like(SHAPE_XYZ, seed=k)
        low = np.random.default_rng(k).poisson(full / 6.0).astype(np.float32) * 6.0
        write_nifti(sub / "low.nii.gz", low)
        write_nifti(sub / "full.nii.gz", full)
    torch.manual_seed(0)
    base = save_checkpoint(build_model(backbone, "small", **smoke_overrides(backbone)),
                           root / f"{backbone}.safetensors", extra={"source": "site-a"})
    return data, base


def torchrun(*args, nproc=2):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "napari_petite.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.parametrize(("backbone", "encoder", "decoder"),
                         [("unetr", "lora", "ssf"), ("cvtgan", "full", "full")])
def test_two_process_finetune_agrees_and_writes_once(tmp_path, backbone, encoder, decoder):
    data, base = tiny_workspace(tmp_path, backbone)
    out = tmp_path / "adapter"
    run = torchrun("finetune", "--data", str(data), "--target", "site-b", "--base", str(base),
                   "--encoder", encoder, "--decoder", decoder, "--steps", "2",
                   # no validation: the run keeps its last state, not a best one that may be
                   # the base itself (step 0), so the tensors must have moved
                   "--val-every", "0", "--batch", "2", "--device", "cpu", "--seed", "3",
                   "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)  # exactly one JSON object: only rank 0 printed
    assert summary["steps"] == 2 and summary["adapter"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("adapter")) \
        == ["adapter"]
    card = json.loads((out / "adapter.json").read_text())
    ranks = card["training"]["distributed"]
    assert ranks["world_size"] == 2 and ranks["ranks_identical"]
    digests = ranks["trainable_sha256_by_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    # the written tensors are the ones every rank ended with, and they moved off the base
    saved = load_file(str(out / "adapter.safetensors"))
    assert state_digest(saved) == digests[0]
    base_tensors = load_file(str(base))
    moved = [k for k in saved if k in base_tensors and not torch.equal(saved[k], base_tensors[k])]
    assert moved, "training changed no base tensor"

    from napari_petite.training.job import model_for_inference

    model, description = model_for_inference(base, out, merge=False)
    assert encoder in description.lower() or "full" in description.lower()
    state = dict(model.named_parameters())
    name = next(k for k in saved if k in state)
    assert torch.equal(state[name].detach(), saved[name])


def test_state_digest_sees_one_changed_value():
    a = {"w": torch.zeros(3, 2), "b": torch.ones(2)}
    b = {"w": torch.zeros(3, 2), "b": torch.ones(2)}
    assert state_digest(a) == state_digest(b)
    b["w"][1, 1] = 1e-7
    assert state_digest(a) != state_digest(b)
