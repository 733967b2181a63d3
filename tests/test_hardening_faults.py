"""Faults: interrupting training, inference and export, and a worker that raises.

- CLI: Ctrl-C during ``petite finetune --checkpoint-every 1`` exits 130 with no bundle under
  the final name and a complete resume checkpoint, which ``--resume`` continues to the end.
- A checkpoint torn between its two files (killed between the writes) still resumes the state
  its tensors belong to.
- GUI: Stop during inference and during a batch export, an unexpected exception inside a
  worker, and closing napari while a batch export runs: no partial file under a final name,
  a notification instead of a crash, and docks that work again afterwards.
(Stop / pause / close during GUI training are covered in test_widgets.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_subject, pet_like, write_nifti

SHAPE_XYZ = (40, 36, 34)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    import torch

    from napari_petite.models.checkpoint import save_checkpoint
    from napari_petite.models.registry import build_model, smoke_overrides

    torch.manual_seed(0)  # CVT-GAN: a process loads it 2 s faster than a UNETR
    return save_checkpoint(build_model("cvtgan", "small", **smoke_overrides("cvtgan")),
                           tmp_path_factory.mktemp("faults") / "base.safetensors")


def _dataset(root: Path, n: int = 4) -> Path:
    for k in range(n):
        make_subject(root / "site" / f"sub-{k}", seed=k, shape_xyz=SHAPE_XYZ, with_truth=False)
    return root


def _final_names(folder: Path) -> list[str]:
    """Files whose names are not the hidden temporary names of atomic writes."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _signal_after_two_steps(cmd: list[str], out: Path, signum: int, tmp_path: Path):
    """Run ``petite finetune`` (``cmd``, checkpointing every step into OUT.resume), send
    ``signum`` once two steps are saved; return (returncode, stderr)."""
    # stderr to a file, not a pipe: a full pipe nobody drains would block the child's progress
    # bar writes and make the signal's timing depend on the reader. A shell starts background
    # jobs with SIGINT ignored, and Python then keeps it ignored: give the child the default
    # disposition a user's terminal gives it.
    resume = out.with_name(out.name + ".resume") / "resume.json"
    with (tmp_path / "stderr.txt").open("w") as log:
        proc = subprocess.Popen(cmd, stderr=log, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 240
        while not resume.is_file() or json.loads(resume.read_text())["step"] < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.1)
        proc.send_signal(signum)
        proc.wait(timeout=120)
    return proc.returncode, (tmp_path / "stderr.txt").read_text()


# -- CLI -----------------------------------------------------------------------------------
def test_ctrl_c_during_finetune_leaves_a_resumable_checkpoint(base, tmp_path):
    data = _dataset(tmp_path / "data")
    out = tmp_path / "runs" / "adapter"
    resume = out.with_name("adapter.resume")
    cmd = [sys.executable, "-m", "napari_petite.cli", "finetune", "--data", str(data),
           "--target", "site", "--base", str(base), "--device", "cpu", "--batch", "1",
           "--val-every", "0", "--seed", "3", "--checkpoint-every", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code, stderr = _signal_after_two_steps([*cmd, "--steps", "100000"], out, signal.SIGINT,
                                           tmp_path)
    assert code == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()  # no bundle, not even a partial one, under the final name
    assert _final_names(out.parent) == ["adapter.resume"]
    assert _final_names(resume) == ["resume.json", "resume.safetensors"]
    from safetensors import safe_open

    # the state the tensors belong to (resume.json may lag it by a step if Ctrl-C landed
    # between the two writes; --resume reads this one)
    with safe_open(str(resume / "resume.safetensors"), framework="pt") as fh:
        saved = json.loads(fh.metadata()["resume"])

    done = subprocess.run([*cmd, "--steps", str(saved["step"] + 2), "--resume", str(resume),
                           "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "adapter.json").read_text())
    assert card["training"]["steps_done"] == saved["step"] + 2
    assert card["training"]["losses"][:saved["step"]] == saved["losses"]


def test_sigterm_during_finetune_finishes_the_step_and_writes_the_bundle(base, tmp_path):
    """Batch schedulers end jobs with SIGTERM: keep what was learnt, say it stopped early."""
    data = _dataset(tmp_path / "data")
    out = tmp_path / "adapter"
    code, stderr = _signal_after_two_steps(
        [sys.executable, "-m", "napari_petite.cli", "finetune", "--data", str(data),
         "--target", "site", "--base", str(base), "--device", "cpu", "--batch", "1",
         "--val-every", "1", "--seed", "3", "--checkpoint-every", "1", "--steps", "100000",
         "--out", str(out)], out, signal.SIGTERM, tmp_path)
    assert code == 0, stderr
    card = json.loads((out / "adapter.json").read_text())
    assert card["training"]["stopped"] is True
    assert 2 <= card["training"]["steps_done"] < 100000


def test_checkpoint_torn_between_its_files_resumes_its_tensors_state(base, tmp_path):
    from napari_petite.io.dataset import discover
    from napari_petite.models.checkpoint import load_checkpoint
    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.spec import MixPEFTSpec
    from napari_petite.training.engine import Control, TrainConfig, Trainer
    from napari_petite.training.job import load_pairs

    scanner = discover(_dataset(tmp_path / "data", n=1)).scanner("site")

    def trainer():
        model, _ = load_checkpoint(base)
        apply_spec(model, MixPEFTSpec("cvtgan", "small", "vpt", "lora", True))
        pairs = load_pairs(scanner, ["sub-0"], model.patch_size)
        return Trainer(model, pairs, [], TrainConfig(steps=4, batch_size=1, val_every=0,
                                                     seed=5, device="cpu"))

    first = trainer()
    gen = first.run(Control())
    while first.step < 2:
        next(gen)
    first.save_checkpoint(tmp_path / "at2")
    next(gen)
    first.save_checkpoint(tmp_path / "torn")
    # killed after the tensors of step 3 were renamed into place, before resume.json was
    shutil.copy(tmp_path / "at2" / "resume.json", tmp_path / "torn" / "resume.json")
    list(gen)
    resumed = trainer()
    resumed.load_checkpoint(tmp_path / "torn")
    assert resumed.step == 3
    list(resumed.run(Control()))
    assert resumed.losses == first.losses


# -- GUI -----------------------------------------------------------------------------------
def _errors() -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records
            if n.severity == NotificationSeverity.ERROR]


def _docks(viewer, base, data_root):
    _, data = viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    _, tune = viewer.window.add_plugin_dock_widget("napari-petite", "Fine-tune")
    _, comp = viewer.window.add_plugin_dock_widget("napari-petite", "Reconstruct & compare")
    tune.set_base(base)
    assert data.open_dataset(data_root)
    data.n_test.setValue(3)
    data.n_val.setValue(0)
    comp.model.setCurrentIndex(comp.model.findData("base model"))
    return data, comp


def _reconstruct_started(qtbot, viewer, comp, path):
    (layer,) = viewer.open(str(path), plugin="napari-petite")
    comp.low.setCurrentText(layer.name)
    comp.reconstruct()
    qtbot.waitUntil(lambda: "% done" in comp.status.text(), timeout=60_000)


@pytest.mark.gui
def test_gui_faults_leave_nothing_partial_and_docks_usable(make_napari_viewer, qtbot, base,
                                                           tmp_path, monkeypatch):
    from napari_petite._widgets.model_choice import BASE, recon_name

    RECON_NAME = recon_name(BASE)  # the base model's reconstruction

    viewer = make_napari_viewer()
    data_root = _dataset(tmp_path / "data")
    _data, comp = _docks(viewer, base, data_root)
    big = write_nifti(tmp_path / "big.nii.gz", pet_like((96, 96, 64)))  # ~40 window batches

    # Stop during inference: nothing added, idle, usable
    _reconstruct_started(qtbot, viewer, comp, big)
    comp.stop()
    qtbot.waitUntil(lambda: comp.is_idle, timeout=60_000)
    assert RECON_NAME not in viewer.layers
    assert comp.status.text().startswith("Stopped") and comp.run_button.isEnabled()

    # an unexpected exception inside the worker: a notification, napari and the dock live on
    import napari_petite.training.inference as inference

    def broken(*args, **kwargs):
        raise RuntimeError("simulated fault inside the worker")

    monkeypatch.setattr(inference, "predict_volume", broken)
    n = len(_errors())
    comp.reconstruct()
    qtbot.waitUntil(lambda: comp.is_idle and len(_errors()) > n, timeout=60_000)
    assert "simulated fault inside the worker" in _errors()[-1]
    assert "Unexpected error" in _errors()[-1]
    monkeypatch.undo()
    viewer.layers.clear()
    small = write_nifti(tmp_path / "small.nii.gz", pet_like(SHAPE_XYZ))
    (layer,) = viewer.open(str(small), plugin="napari-petite")
    comp.low.setCurrentText(layer.name)
    comp.reconstruct()
    qtbot.waitUntil(lambda: comp.is_idle and RECON_NAME in viewer.layers, timeout=60_000)

    # Stop during a batch export: finished subjects are whole files, nothing else appears
    before = {p: p.read_bytes() for p in data_root.rglob("*.nii.gz")}
    out = tmp_path / "export"
    comp.batch_export(out)
    qtbot.waitUntil(lambda: "Exported 1/" in comp.status.text(), timeout=60_000)
    comp.stop()
    qtbot.waitUntil(lambda: comp.is_idle, timeout=60_000)
    from napari_petite.io.nifti import read_volume

    assert comp.status.text().startswith("Stopped") and comp.batch_button.isEnabled()
    written = _final_names(out / "site")
    assert 1 <= len(written) < 3 and "metrics.json" not in written
    for name in written:
        assert read_volume(out / "site" / name).shape == tuple(reversed(SHAPE_XYZ))
    assert not [p for p in (out / "site").iterdir() if "partial" in p.name]

    # closing napari while a batch export runs stops it; no partial file remains
    out2 = tmp_path / "export-2"
    comp.batch_export(out2)
    task = comp.task
    qtbot.waitUntil(lambda: task.running, timeout=30_000)
    viewer.close()
    assert task.control.stopped
    assert task.shutdown(timeout=60)
    if (out2 / "site").is_dir():
        assert "metrics.json" not in _final_names(out2 / "site")
        assert not [p for p in (out2 / "site").iterdir() if "partial" in p.name]
    assert {p: p.read_bytes() for p in data_root.rglob("*.nii.gz")} == before
    qtbot.wait(200)  # late signals must not reach deleted widgets
