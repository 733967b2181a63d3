"""DICOM and dynamic scans through the front ends: `petite info / predict / make-pairs /
finetune` as real subprocesses, a dataset whose subjects are DICOM series folders, and a
DICOM folder dropped on a real napari viewer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_nifti
from dicom_fixtures import file_hashes, write_pet_series
from test_cli import petite

SHAPE_ZYX = (32, 32, 34)  # >= the smoke models' 32^3 window


def _pet(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE_ZYX], indexing="ij")
    blob = np.exp(-(x**2 + y**2 + z**2) * 2.5) * 20000.0 + 300.0
    return rng.poisson(blob).astype(np.float32)


@pytest.fixture
def series(tmp_path):
    return write_pet_series(tmp_path / "pet", _pet(), spacing=(2.0, 2.0, 2.0))


@pytest.fixture
def base(tmp_path):
    import torch

    from napari_petite.models.checkpoint import save_checkpoint
    from napari_petite.models.registry import build_model, smoke_overrides

    torch.manual_seed(0)
    return save_checkpoint(build_model("unetr", "small", **smoke_overrides("unetr")),
                           tmp_path / "base.safetensors", extra={"source": "site-a"})


def test_info_describes_a_dicom_series_with_its_suv_factor(series):
    out = petite("info", str(series), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["format"] == "dicom" and info["units"] == "Bq/mL"
    assert info["shape_zyx"] == list(SHAPE_ZYX) and info["spacing_mm_zyx"] == [2.0, 2.0, 2.0]
    # 75 kg, 370 MBq injected at 09:30, series at 10:00, F-18 half-life 6586.2 s (by hand)
    expected = 75.0 * 1000.0 / (3.7e8 * 2 ** (-1800.0 / 6586.2))
    assert info["suv_factor"] == pytest.approx(expected, rel=1e-6)
    text = petite("info", str(series))
    assert text.returncode == 0 and "SUV factor" in text.stdout


def test_predict_dicom_in_nifti_and_dicom_out(series, base, tmp_path):
    from napari_petite.io.dicom import read_series
    from napari_petite.io.nifti import read_volume

    before = file_hashes(series)
    out = petite("predict", str(series), "--base", str(base), "--out", str(tmp_path / "n"),
                 "--device", "cpu", "--json")
    assert out.returncode == 0, out.stderr
    (written,) = json.loads(out.stdout)["outputs"]
    nii, src = read_volume(written), read_series(series)
    assert np.allclose(nii.affine, src.affine, atol=1e-5) and nii.units == "Bq/mL"
    assert nii.extra["suv_factor"] == pytest.approx(src.extra["suv_factor"])  # kept
    out = petite("predict", str(series), "--base", str(base), "--out", str(tmp_path / "d"),
                 "--device", "cpu", "--format", "dicom", "--json")
    assert out.returncode == 0, out.stderr
    (folder,) = json.loads(out.stdout)["outputs"]
    back = read_series(folder)
    assert back.shape == src.shape and np.allclose(back.affine, src.affine, atol=1e-5)
    assert np.abs(back.data - nii.data).max() <= 1e-3 * nii.data.max()
    assert back.extra["dicom"]["SeriesInstanceUID"] != src.extra["dicom"]["SeriesInstanceUID"]
    assert back.extra["dicom"]["StudyInstanceUID"] == src.extra["dicom"]["StudyInstanceUID"]
    assert back.extra["suv_factor"] == pytest.approx(src.extra["suv_factor"])
    assert file_hashes(series) == before  # the source series is never touched
    nifti = write_nifti(tmp_path / "plain.nii.gz", np.ones((34, 32, 32), np.float32))
    refused = petite("predict", str(nifti), "--base", str(base), "--out",
                     str(tmp_path / "x"), "--format", "dicom")
    assert refused.returncode == 2 and "needs DICOM inputs" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "x").exists()


def test_make_pairs_then_finetune_on_dicom_and_dynamic_subjects(base, tmp_path):
    """A dataset mixing a DICOM series folder (low/, full/) and a pair made from a dynamic
    4D NIfTI trains: every path that takes a volume takes both."""
    root = tmp_path / "data" / "site-b"
    frames = np.stack([_pet(k) for k in range(6)])  # six 5-min frames, 0-30 min
    dyn = write_nifti(tmp_path / "dyn.nii.gz", frames.transpose(3, 2, 1, 0))
    (tmp_path / "dyn.json").write_text(json.dumps({
        "FrameTimesStart": [300.0 * k for k in range(6)], "FrameDuration": [300.0] * 6,
        "Units": "Bq/mL"}))
    for k in range(2):
        out = petite("make-pairs", str(dyn), "--out", str(root / f"sub-{k}"), "--json")
        assert out.returncode == 0, out.stderr
        meta = json.loads(out.stdout)
        assert meta["low"]["frames"] == [0] and meta["full"]["frames"] == [0, 1, 2, 3, 4, 5]
    subject = root / "sub-2"
    write_pet_series(subject / "low", _pet(7), spacing=(2.0, 2.0, 2.0))
    write_pet_series(subject / "full", _pet(8), spacing=(2.0, 2.0, 2.0))
    # the DICOM subject is on another grid than the NIfTI pairs: fine per subject
    info = petite("info", str(tmp_path / "data"), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["scanners"]["site-b"]["subjects"] == ["sub-0", "sub-1",
                                                                          "sub-2"]
    run = petite("finetune", "--data", str(tmp_path / "data"), "--target", "site-b",
                 "--base", str(base), "--steps", "1", "--val-every", "0", "--n-val", "1",
                 "--n-test", "0", "--device", "cpu", "--out", str(tmp_path / "ad"), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["split"]["train"] == ["sub-0", "sub-1"]
    overlapping = tmp_path / "bad.json"
    (tmp_path / "bad.nii.gz").write_bytes(dyn.read_bytes())
    overlapping.write_text(json.dumps({"FrameTimesStart": [0, 200, 600, 900, 1200, 1500],
                                       "FrameDuration": [300.0] * 6}))
    refused = petite("make-pairs", str(tmp_path / "bad.nii.gz"), "--out", str(root / "x"))
    assert refused.returncode == 2 and "overlap" in refused.stderr
    assert not (root / "x").exists()


@pytest.mark.gui
def test_a_dicom_folder_opens_in_napari_with_geometry_and_suv(make_napari_viewer, series):
    from napari_petite.io.dicom import read_series

    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(series), plugin="napari-petite")
    src = read_series(series)
    assert layer.data.shape == SHAPE_ZYX and np.allclose(layer.scale, src.spacing)
    assert np.allclose(layer.metadata["affine"], src.affine)
    assert layer.metadata["units"] == "Bq/mL"
    assert layer.metadata["suv_factor"] == pytest.approx(src.extra["suv_factor"])
    assert "PET AC" in layer.name  # named after the series description


@pytest.mark.gui
def test_dock_shows_suv_exports_dicom_and_adds_a_dynamic_subject(
        make_napari_viewer, qtbot, series, base, tmp_path):
    """A clinician's round trip in the docks: open a DICOM series, read it in SUV, reconstruct,
    send a derived DICOM series back; and turn a dynamic scan into a new training subject."""
    from napari_petite.io.dicom import read_series
    from napari_petite.io.nifti import read_volume

    viewer = make_napari_viewer()
    _, data = viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    _, tune = viewer.window.add_plugin_dock_widget("napari-petite", "Fine-tune")
    _, comp = viewer.window.add_plugin_dock_widget("napari-petite", "Reconstruct & compare")
    tune.set_base(base)
    src = read_series(series)
    (layer,) = viewer.open(str(series), plugin="napari-petite")
    raw = np.asarray(layer.data).copy()
    comp.suv.setChecked(True)
    qtbot.waitUntil(lambda: comp.settled, timeout=30_000)  # one layer per event-loop turn
    factor = src.extra["suv_factor"]
    np.testing.assert_allclose(layer.data, raw * factor, rtol=1e-6)  # the read-out is SUV
    comp.low.setCurrentText(layer.name)
    comp.model.setCurrentIndex(comp.model.findData("base model"))
    comp.reconstruct()
    qtbot.waitUntil(lambda: comp.recon_layer is not None and comp.is_idle, timeout=60_000)
    from test_widgets import written

    assert not comp.send_pacs.isEnabled()
    out = written(qtbot, comp.export_dicom(tmp_path / "derived"))
    assert comp.send_pacs.folder == out and comp.send_pacs.isEnabled()  # Send to PACS offers it
    back = read_series(out)  # written in Bq/mL again, beside (not inside) the source
    assert back.units == "Bq/mL" and np.allclose(back.affine, src.affine, atol=1e-5)
    recon_native = np.asarray(comp.recon_layer.data) / factor
    assert np.abs(back.data - recon_native).max() <= 1e-3 * recon_native.max()
    assert back.extra["suv_factor"] == pytest.approx(factor)
    nii = written(qtbot, comp.export_nifti(tmp_path / "recon.nii.gz"))
    assert np.allclose(read_volume(nii).data, recon_native, rtol=1e-5, atol=1e-3)
    comp.suv.setChecked(False)
    qtbot.waitUntil(lambda: comp.settled, timeout=30_000)
    np.testing.assert_allclose(layer.data, raw, rtol=1e-5)

    # a dynamic scan becomes a subject of the open dataset's target scanner
    root = tmp_path / "data"
    write_pet_series(root / "src" / "s0" / "low", _pet(1), spacing=(2.0, 2.0, 2.0))
    write_pet_series(root / "src" / "s0" / "full", _pet(2), spacing=(2.0, 2.0, 2.0))
    write_pet_series(root / "tgt" / "t0" / "low", _pet(3), spacing=(2.0, 2.0, 2.0))
    write_pet_series(root / "tgt" / "t0" / "full", _pet(4), spacing=(2.0, 2.0, 2.0))
    assert data.open_dataset(root)
    data.target.setCurrentText("tgt")
    frames = np.stack([_pet(k) for k in range(6)])
    dyn = write_nifti(tmp_path / "scan7.nii.gz", frames.transpose(3, 2, 1, 0))
    (tmp_path / "scan7.json").write_text(json.dumps({
        "FrameTimesStart": [300.0 * k for k in range(6)], "FrameDuration": [300.0] * 6}))
    data.add_dynamic_subject(dyn)
    qtbot.waitUntil(lambda: data.is_idle and "Added tgt/scan7" in data.status.text(),
                    timeout=60_000)
    assert [s.id for s in data.session.dataset.scanners["tgt"].subjects] == ["scan7", "t0"]
    pair = read_volume(root / "tgt" / "scan7" / "low.nii.gz")
    np.testing.assert_allclose(pair.data, frames[0], rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "words"), [({"weight": None}, "PatientWeight"),
                                               ({"dose": None}, "dose")])
def test_a_series_without_weight_or_dose_reads_and_says_why_there_is_no_suv(
        tmp_path, kwargs, words):
    folder = write_pet_series(tmp_path / "pet", _pet(), spacing=(2.0, 2.0, 2.0), **kwargs)
    out = petite("info", str(folder))
    assert out.returncode == 0, out.stderr
    assert "no SUV:" in out.stdout and words in out.stdout


def test_an_admin_decay_series_has_suv_without_decay(tmp_path):
    folder = write_pet_series(tmp_path / "pet", _pet(), spacing=(2.0, 2.0, 2.0),
                              decay="ADMIN")
    info = json.loads(petite("info", str(folder), "--json").stdout)
    assert info["suv_factor"] == pytest.approx(75.0 * 1000.0 / 3.7e8, rel=1e-6)  # no 2^-t/T


@pytest.mark.gui
def test_a_folder_of_several_series_lets_the_user_choose(make_napari_viewer, qtbot, tmp_path,
                                                         monkeypatch):
    """Open a scan… on a study folder with two PET series and a CT: the dock lists the PET
    series (not the CT) and opens the one chosen."""
    from qtpy.QtWidgets import QInputDialog

    study = tmp_path / "study"
    write_pet_series(study / "ac", _pet(0), spacing=(2.0, 2.0, 2.0), description="PET AC")
    write_pet_series(study / "nac", _pet(1), spacing=(2.0, 2.0, 2.0), description="PET NAC")
    write_pet_series(study / "ct", _pet(2), spacing=(2.0, 2.0, 2.0), modality="CT",
                     description="CT")
    offered = {}

    def choose(parent, title, label, items, current, editable):
        offered["items"] = list(items)
        return next(i for i in items if i.startswith("PET NAC")), True

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(choose))
    viewer = make_napari_viewer()
    _, data = viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    data.open_scan(study)
    qtbot.waitUntil(lambda: data.is_idle and len(viewer.layers) == 1, timeout=30_000)
    assert len(offered["items"]) == 2 and not any("CT" in i for i in offered["items"])
    (layer,) = viewer.layers
    assert "PET NAC" in layer.name and layer.metadata["dicom"]["SeriesDescription"] == "PET NAC"
