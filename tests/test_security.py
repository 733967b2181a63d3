"""Nothing in a model file runs, and nothing outside a dataset folder is read.

A pickle-based PyTorch file whose ``__reduce__`` writes a marker file is offered as a base
model, an adapter and a resume checkpoint, to the CLI (real processes) and to the napari docks;
every path must refuse it with a sentence and the marker must never appear. A control run
proves the payload is live (``torch.load`` with pickling allowed does write the marker).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_subject, pet_like, write_nifti

from napari_petite.errors import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
SHAPE_XYZ = (36, 34, 33)

class Payload:
    """Unpickling this object runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code from a model file ran')",))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "napari_petite.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """A malicious .pt, the same bytes under the names the tool does read, and a dataset."""
    root = tmp_path_factory.mktemp("evil")
    marker = root / "MARKER"
    pt = root / "model.pt"
    import torch

    torch.save({"weight": torch.zeros(2), "boom": Payload(marker)}, pt)
    assert not marker.exists()
    # control: unpickling it really runs the payload
    torch.load(pt, weights_only=False)
    assert marker.read_text() == "code from a model file ran"
    marker.unlink()

    pth = root / "model.pth"
    shutil.copy(pt, pth)
    disguised = root / "disguised.safetensors"  # pickle bytes under a safetensors name
    shutil.copy(pt, disguised)
    from napari_petite.models.checkpoint import file_sha256

    card = json.loads((ROOT / "sample_data" / "models" / "unetr-small.json").read_text())
    card["sha256"] = file_sha256(disguised)  # the card even vouches for it
    disguised.with_suffix(".json").write_text(json.dumps(card))

    # a real adapter bundle of a (tiny) base whose weights file is then swapped for the
    # pickle (card updated to match), so that loading reaches the weights file itself
    from napari_petite.models.checkpoint import save_checkpoint
    from napari_petite.models.registry import build_model, smoke_overrides
    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.bundle import save_adapter
    from napari_petite.peft.spec import MixPEFTSpec
    from napari_petite.training.job import load_base

    tiny = save_checkpoint(build_model("cvtgan", "small", **smoke_overrides("cvtgan")),
                           root / "tiny.safetensors")
    model, _, sha = load_base(tiny, "cvtgan")
    spec = MixPEFTSpec("cvtgan", model.preset, "vpt", "lora", True)
    apply_spec(model, spec)
    bundle = save_adapter(model, spec, root / "adapter", base_sha256=sha)
    shutil.copy(pt, bundle / "adapter.safetensors")
    adapter_card = json.loads((bundle / "adapter.json").read_text())
    adapter_card["adapter_sha256"] = file_sha256(bundle / "adapter.safetensors")
    (bundle / "adapter.json").write_text(json.dumps(adapter_card))
    pt_bundle = root / "adapter-pt"
    pt_bundle.mkdir()
    shutil.copy(pt, pt_bundle / "adapter.pt")

    resume = root / "run.resume"
    resume.mkdir()
    shutil.copy(pt, resume / "resume.safetensors")
    (resume / "resume.json").write_text(json.dumps({"step": 1}))

    data = root / "data"
    for k in range(3):
        make_subject(data / "site" / f"sub-{k}", seed=k, shape_xyz=SHAPE_XYZ, with_truth=False)
    low = write_nifti(root / "low.nii.gz", pet_like(SHAPE_XYZ))
    return {"root": root, "marker": marker, "tiny": tiny, "pt": pt, "pth": pth,
            "disguised": disguised, "bundle": bundle, "pt_bundle": pt_bundle, "resume": resume,
            "data": data, "low": low}


CLI_CASES = {
    "base .pt (predict)": (lambda e: ["predict", e["low"], "--base", e["pt"]],
                           "pickle-based PyTorch file"),
    "base .pth (finetune)": (lambda e: ["finetune", "--data", e["data"], "--target", "site",
                                        "--base", e["pth"], "--steps", "1"],
                             "pickle-based PyTorch file"),
    "adapter holding a pickle": (lambda e: ["predict", e["low"], "--base", e["tiny"],
                                            "--adapter", e["bundle"]],
                                 "cannot be read as safetensors"),
    "adapter folder with a .pt": (lambda e: ["predict", e["low"], "--adapter", e["pt_bundle"]],
                                  "is not an adapter bundle"),
    "resume checkpoint holding a pickle": (
        lambda e: ["finetune", "--data", e["data"], "--target", "site", "--steps", "2",
                   "--base", e["tiny"], "--encoder", "vpt", "--decoder", "lora",
                   "--resume", e["resume"]],
        "Cannot resume"),
}


@pytest.fixture(scope="module")
def cli_runs(evil, tmp_path_factory):
    """All CLI cases, two processes at a time."""
    from concurrent.futures import ThreadPoolExecutor

    outs = {name: tmp_path_factory.mktemp("evil-out") / "out" for name in CLI_CASES}

    def run(name):
        return _cli(*CLI_CASES[name][0](evil), "--device", "cpu", "--out", outs[name])

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(CLI_CASES, pool.map(run, CLI_CASES), strict=True))
    return {name: (results[name], outs[name]) for name in CLI_CASES}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_refuses_pickles_without_running_them(evil, cli_runs, name):
    result, out = cli_runs[name]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(CLI_CASES[name][1], result.stderr), result.stderr
    assert not evil["marker"].exists()
    assert not out.exists()


def test_in_process_loaders_refuse_pickles(evil):
    from napari_petite.models.checkpoint import load_checkpoint
    from napari_petite.peft.bundle import load_adapter
    from napari_petite.training.job import load_base

    for path in (evil["pt"], evil["pth"], evil["disguised"]):
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    model, _, _ = load_base(evil["tiny"], "cvtgan")
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_adapter(model, evil["bundle"])
    assert not evil["marker"].exists()


def test_no_unpickling_call_in_the_package():
    """The loaders above are the only way in: no pickle anywhere in the code, and torch.load
    only with weights_only=True, once, where a MONAI state dict is imported."""
    pattern = re.compile(r"torch\.load\(|\bpickle\.loads?\(|import pickle|joblib|dill\b|"
                         r"weights_only\s*=\s*False")
    hits = [(f"{p.relative_to(ROOT)}", line) for p in (ROOT / "napari_petite").rglob("*.py")
            for line in p.read_text(encoding="utf-8").splitlines() if pattern.search(line)]
    assert [(f, "weights_only=True" in line) for f, line in hits] == [
        ("napari_petite/models/monai_import.py", True)]


@pytest.mark.gui
def test_docks_refuse_pickles_without_running_them(make_napari_viewer, qtbot, evil):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    def errors():
        return [n.message for n in notification_manager.records
                if n.severity == NotificationSeverity.ERROR]

    viewer = make_napari_viewer()
    _, data = viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    _, tune = viewer.window.add_plugin_dock_widget("napari-petite", "Fine-tune")
    assert data.open_dataset(evil["data"])
    for base in (evil["pt"], evil["disguised"]):
        tune.set_base(base)
        n = len(errors())
        tune.settings.steps.setValue(1)
        tune.start()
        qtbot.waitUntil(lambda n=n: tune.is_idle and len(errors()) > n, timeout=60_000)
        assert re.search("pickle-based|cannot be read as safetensors", errors()[-1])
    tune.set_base(evil["tiny"])
    n = len(errors())
    tune.load_adapter(evil["bundle"])
    qtbot.waitUntil(lambda: tune.is_idle and len(errors()) > n, timeout=60_000)
    assert "cannot be read as safetensors" in errors()[-1]
    assert tune.session.trained is None
    assert not evil["marker"].exists()


# -- dataset containment -------------------------------------------------------------------
def test_dataset_links_out_of_the_folder_are_not_followed(tmp_path):
    from napari_petite.io.dataset import discover

    outside = tmp_path / "outside"
    make_subject(outside / "sub-x", seed=5, shape_xyz=SHAPE_XYZ, with_truth=False)
    secret = outside / "secret.nii.gz"
    secret.write_bytes(b"not for this tool")
    root = tmp_path / "data"
    make_subject(root / "site" / "sub-0", seed=0, shape_xyz=SHAPE_XYZ, with_truth=False)
    linked = make_subject(root / "site" / "sub-1", seed=1, shape_xyz=SHAPE_XYZ,
                          with_truth=False)
    (linked / "labels.nii.gz").symlink_to(secret)  # a file link leaving the dataset
    (root / "site" / "sub-2").symlink_to(outside / "sub-x")  # a folder link leaving it
    (root / "other").symlink_to(outside)  # a scanner folder link leaving it
    # paths written into sidecars are data, never followed
    (root / "site" / "sub-0" / "meta.json").write_text(json.dumps(
        {"low": str(secret), "labels": "../../../outside/secret.nii.gz", "units": "Bq/mL"}))
    (root / "site" / "scanner.json").write_text(json.dumps({"name": "../../outside"}))

    ds = discover(root, strict=False)
    assert [s.id for s in ds.scanner("site").subjects] == ["sub-0"]
    assert "other" not in ds.scanners
    outside_problems = [p for p in ds.problems if "points outside the dataset folder" in p]
    assert len(outside_problems) == 3, ds.problems
    sub0 = ds.scanner("site").subject("sub-0")
    assert all(f.resolve().is_relative_to(root.resolve()) for f in sub0.files.values())
    assert not any("secret" in p and "not a readable NIfTI" in p for p in ds.problems)

    result = _cli("info", root)
    assert result.returncode == 2 and "points outside the dataset folder" in result.stderr
    assert "Traceback" not in result.stderr
