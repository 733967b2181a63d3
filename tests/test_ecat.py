"""ECAT 7 (.v) input through the one reader entry: nibabel's own real test file and larger
files written by ``ecat_fixtures`` (static and dynamic), through `petite info / predict /
make-pairs`, a dataset, and a drop on a real napari viewer; unsupported formats are named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ecat_fixtures import nibabel_tinypet, write_ecat
from test_cli import petite

from napari_petite.errors import InputError
from napari_petite.io.volumes import read_any

XYZ = (40, 36, 34)  # >= the smoke models' 32^3 window


def _activity(seed: int = 0, peak: float = 20000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in XYZ], indexing="ij")
    blob = np.exp(-sum(g**2 for g in grids) * 2.5) * peak + 300.0
    return rng.poisson(blob).astype(np.float64)


def test_nibabels_real_ecat_file():
    import nibabel as nib

    path = nibabel_tinypet()
    vol = read_any(path)
    img = nib.ecat.load(str(path))
    assert vol.shape == (3, 10, 10) and vol.units == "Bq/mL"
    assert vol.extra["format"] == "ecat" and vol.extra["suv_factor"] is None
    # calibrated file: stored x scale_factor x ecat_calibration_factor, as nibabel scales it
    np.testing.assert_allclose(vol.data, img.get_fdata()[..., 0].transpose(2, 1, 0), rtol=1e-6)
    np.testing.assert_allclose(vol.affine, img.affine)
    np.testing.assert_allclose(vol.spacing, (3.125, 2.2024198, 2.2024198), rtol=1e-6)
    info = vol.extra["ecat"]
    assert info["isotope"] == "F-18" and info["frame_durations_s"] == [300.0]
    assert info["decay_factors"] == [pytest.approx(1.1895915)]
    out = petite("info", str(path), "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["format"] == "ecat" and shown["shape_zyx"] == [3, 10, 10]


@pytest.mark.parametrize(("units", "code", "calibration", "expect_units", "factor"), [
    ("Bq/cc", 1, 2.5, "Bq/mL", 1.0),          # calibrated: times the calibration factor
    ("kBq/cc", 1, 1.0, "Bq/mL", 1000.0),      # kBq/cc -> Bq/mL
    ("Bq/cc", 2, 2.5, "Bq/mL", 1.0),          # processed: already in data_units
    ("ECAT counts/sec", 0, 2.5, "ECAT counts", 1.0),  # uncalibrated
])
def test_calibration_as_the_headers_say(tmp_path, units, code, calibration, expect_units,
                                        factor):
    frames = _activity()[None] / 100.0
    path = write_ecat(tmp_path / "scan.v", frames, calibration=calibration,
                      calibration_units=code, data_units=units)
    vol = read_any(path)
    assert vol.units == expect_units
    # the file holds frames / calibration (x scale_factor); only a calibrated file (code 1)
    # is multiplied back by the calibration factor
    expected = (frames[0] if code == 1 else frames[0] / calibration) * factor
    np.testing.assert_allclose(vol.data, expected.transpose(2, 1, 0).astype(np.float32),
                               rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_static_ecat_through_predict_and_a_dataset(tmp_path):
    import torch

    from napari_petite.io.dataset import discover
    from napari_petite.io.nifti import read_volume
    from napari_petite.models.checkpoint import save_checkpoint
    from napari_petite.models.registry import build_model, smoke_overrides

    scan = write_ecat(tmp_path / "data" / "hrplus" / "sub-1" / "low.v", _activity()[None])
    write_ecat(tmp_path / "data" / "hrplus" / "sub-1" / "full.v", _activity(1)[None])
    subject = discover(tmp_path / "data").scanner("hrplus").subject("sub-1")
    assert subject.low == scan and read_any(subject.full).shape == tuple(reversed(XYZ))
    torch.manual_seed(0)
    base = save_checkpoint(build_model("unetr", "small", **smoke_overrides("unetr")),
                           tmp_path / "base.safetensors")
    out = petite("predict", str(scan), "--base", str(base), "--device", "cpu",
                 "--out", str(tmp_path / "recon"), "--json")
    assert out.returncode == 0, out.stderr
    (written,) = json.loads(out.stdout)["outputs"]
    assert written.endswith("low_recon.nii.gz")
    recon, low = read_volume(written), read_any(scan)
    np.testing.assert_allclose(recon.affine, low.affine)
    assert recon.units == "Bq/mL" and recon.shape == low.shape


def test_dynamic_ecat_makes_a_pair(tmp_path):
    from napari_petite.io.nifti import read_volume

    pattern = _activity() / 20000.0
    levels = [100.0, 200.0, 300.0, 400.0]
    starts, durations = [0.0, 120.0, 300.0, 900.0], [120.0, 180.0, 600.0, 900.0]
    path = write_ecat(tmp_path / "dyn.v", np.stack([pattern * v for v in levels]),
                      starts_s=starts, durations_s=durations, order=[2, 0, 3, 1],
                      decay_factors=[1.01, 1.02, 1.05, 1.1])
    with pytest.raises(InputError, match="dynamic ECAT scan with 4 time frames"):
        read_any(path)
    out = petite("make-pairs", str(path), "--out", str(tmp_path / "sub"), "--json")
    assert out.returncode == 0, out.stderr
    meta = json.loads(out.stdout)
    assert meta["frame_starts_s"] == starts and meta["frame_durations_s"] == durations
    assert meta["low"]["frames"] == [0, 1] and meta["full"]["frames"] == [0, 1, 2, 3]
    low = read_volume(tmp_path / "sub" / "low.nii.gz")
    full = read_volume(tmp_path / "sub" / "full.nii.gz")
    expect_low = (100 * 120 + 200 * 180) / 300.0
    expect_full = (100 * 120 + 200 * 180 + 300 * 600 + 400 * 900) / 1800.0
    peak = float(pattern.max())
    np.testing.assert_allclose(low.data, (pattern * expect_low).transpose(2, 1, 0),
                               atol=1e-4 * peak * expect_low)
    np.testing.assert_allclose(full.data, (pattern * expect_full).transpose(2, 1, 0),
                               atol=1e-4 * peak * expect_full)
    assert low.units == "Bq/mL"


@pytest.mark.parametrize(("name", "head", "says"), [
    ("brain.hdr", b"\x00\x00\x01\x5c", "Analyze 7.5 image; convert it to NIfTI with nibabel"),
    ("brain.mnc", b"\x89HDF\r\n\x1a\n", "MINC image; convert it to NIfTI with mnc2nii"),
    ("brain.dat", b"NRRD0004\n", "NRRD image; convert it to NIfTI with 3D Slicer"),
    ("brain.img", b"MATRIX6", "ECAT 6 file, which nibabel does not read"),
    ("brain.xyz", b"hello", "neither a NIfTI file"),
])
def test_unsupported_formats_are_named(tmp_path, name, head, says):
    path = tmp_path / name
    path.write_bytes(head + b"\0" * 600)
    with pytest.raises(InputError, match=says):
        read_any(path)


@pytest.mark.gui
def test_ecat_dropped_on_napari(make_napari_viewer, tmp_path):
    path = write_ecat(tmp_path / "scan.v", _activity()[None])
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-petite")
    assert layer.data.shape == tuple(reversed(XYZ))
    np.testing.assert_allclose(layer.scale, (2.5, 2.0, 2.0))
