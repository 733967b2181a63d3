"""The derived PET series as third-party DICOM tools see it: dicom3tools' ``dciodvfy`` (each
file against the PET Image IOD) and ``dcentvfy`` (consistency across the series), and
``dcm2niix`` (the converter researchers use) giving the NIfTI output's geometry and values.

The fixtures are checked first: a conformant input is what makes a clean export meaningful.
Each test skips, with the reason, only where its binary is not installed (``make setup``
installs them).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from dicom_fixtures import (
    oblique,
    pet_volume,
    write_dynamic_series,
    write_pet_series,
)

from napari_petite.io.dicom import read_series
from napari_petite.io.dicom_export import write_derived_series
from napari_petite.io.nifti import write_like

SPACING = (2.5, 1.5, 1.25)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package "
                    f"{'dcm2niix' if name == 'dcm2niix' else 'dicom3tools'}; `make setup`)")
    return path


def _messages(folder) -> dict[str, list[str]]:
    """dciodvfy's error and warning lines for every file, and dcentvfy's for the series."""
    files = sorted(str(p) for p in folder.iterdir())
    out: dict[str, list[str]] = {}
    for file in files:
        run = subprocess.run([_tool("dciodvfy"), file], capture_output=True, text=True,
                             timeout=60)
        out[file] = [line for line in (run.stdout + run.stderr).splitlines()
                     if line.startswith(("Error", "Warning"))]
    run = subprocess.run([_tool("dcentvfy"), *files], capture_output=True, text=True,
                         timeout=60)
    out["dcentvfy"] = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    return {k: v for k, v in out.items() if v}


@pytest.fixture
def source(tmp_path):
    return write_pet_series(tmp_path / "src", pet_volume(seed=2), spacing=SPACING,
                            orientation=oblique(15, 25))


def test_fixtures_are_conformant_inputs(tmp_path, source):
    assert _messages(source) == {}
    frames = np.stack([pet_volume((3, 8, 10), seed=t) for t in range(3)])
    dynamic = write_dynamic_series(tmp_path / "dyn", frames, starts_s=[0, 60, 120],
                                   durations_s=[60, 60, 60], spacing=SPACING)
    assert _messages(dynamic) == {}


def test_export_is_conformant(tmp_path, source):
    like = read_series(source)
    out = write_derived_series(like.data * 0.7, like, tmp_path / "out",
                               description="PETITE denoised (adapter vision)")
    assert _messages(out) == {}
    # and the derivation is described the way PS3.3 asks
    first = pydicom.dcmread(sorted(out.iterdir())[0])
    assert list(first.ImageType) == ["DERIVED", "PRIMARY"]
    assert first.DerivationCodeSequence[0].CodeValue == "113087"
    assert "napari-petite" in first.DerivationDescription
    assert first.CollimatorType == "NONE"
    item = first.RadiopharmaceuticalInformationSequence[0]
    assert item.RadionuclideCodeSequence[0].CodeValue == "77004003"
    assert first.ContributingEquipmentSequence[0].Manufacturer == "napari-petite"


def test_per_slice_timing_and_sources_follow_the_slice_position(tmp_path):
    """A Siemens-like series whose slices carry three frame reference times, their own
    acquisition times and decay factors (one bed position each third of the slices)."""
    n = 6
    refs = [1000.0 * (150 + 300 * (k // 2)) for k in range(n)]
    acq = [f"1000{10 * (k // 2):02d}.000000" for k in range(n)]
    decay = [f"{1.01 + 0.01 * k:.4f}" for k in range(n)]
    src = write_pet_series(
        tmp_path / "src", pet_volume(seed=3), spacing=SPACING, acquisition_times=acq,
        extra_tags={"FrameReferenceTime": lambda k: refs[k],
                    "ActualFrameDuration": lambda k: 300000 + k,
                    "DecayFactor": lambda k: decay[k]})
    like = read_series(src)
    out = write_derived_series(like.data, like, tmp_path / "out", description="d")
    assert _messages(out) == {}
    by_uid = {d.SOPInstanceUID: d for d in map(pydicom.dcmread, src.iterdir())}
    derived = sorted(map(pydicom.dcmread, out.iterdir()), key=lambda d: int(d.InstanceNumber))
    assert len({float(d.FrameReferenceTime) for d in derived}) == 3
    for k, d in enumerate(derived):
        (ref,) = d.SourceImageSequence
        source_slice = by_uid[ref.ReferencedSOPInstanceUID]
        assert ref.ReferencedSOPClassUID == source_slice.SOPClassUID
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        np.testing.assert_allclose([float(v) for v in d.ImagePositionPatient],
                                   [float(v) for v in source_slice.ImagePositionPatient],
                                   atol=1e-5)
        for key in ("FrameReferenceTime", "ActualFrameDuration", "DecayFactor",
                    "AcquisitionDate", "AcquisitionTime"):
            assert d.get(key) == source_slice.get(key), (k, key)
        assert int(d.ImageIndex) == k + 1 and int(d.NumberOfSlices) == n
    # SUV is computed as from the source (the earliest acquisition time is kept)
    assert read_series(out).extra["suv_factor"] == pytest.approx(like.extra["suv_factor"])


def test_export_of_an_enhanced_pet_source_takes_each_frames_timing(tmp_path):
    """A multi-frame source: timing and correction factors come from each frame's functional
    groups (Frame Content, PET Frame Correction Factors)."""
    from dicom_fixtures import write_enhanced_pet

    src = write_enhanced_pet(tmp_path / "src" / "pet.dcm", pet_volume(seed=4), spacing=SPACING,
                             orientation=oblique(15, 25))
    like = read_series(src)
    out = write_derived_series(like.data, like, tmp_path / "out", description="d")
    assert _messages(out) == {}
    groups = pydicom.dcmread(src).PerFrameFunctionalGroupsSequence
    derived = sorted(map(pydicom.dcmread, out.iterdir()), key=lambda d: int(d.InstanceNumber))
    for k, d in enumerate(derived):
        frame = int(like.extra["dicom"]["slices"][k]["frame"])
        (ref,) = d.SourceImageSequence
        assert int(ref.ReferencedFrameNumber) == frame + 1
        factors = groups[frame].PETFrameCorrectionFactorsSequence[0]
        assert d.DecayFactor == factors.DecayFactor
        assert int(d.ActualFrameDuration) == 600000
        assert float(d.FrameReferenceTime) == 300000.0  # 10:05:00 from the 10:00:00 series
        assert (d.AcquisitionDate, d.AcquisitionTime[:6]) == ("20240102", "100000")


def test_dcm2niix_reads_the_export_as_the_nifti_output(tmp_path, source):
    import nibabel as nib

    tool = _tool("dcm2niix")
    like = read_series(source)
    recon = like.data * 0.7
    nifti = write_like(tmp_path / "recon.nii.gz", recon, like)
    out = write_derived_series(recon, like, tmp_path / "out", description="d")
    (tmp_path / "conv").mkdir()
    run = subprocess.run([tool, "-z", "y", "-f", "recon", "-o", str(tmp_path / "conv"),
                          str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    theirs = nib.as_closest_canonical(nib.load(str(tmp_path / "conv" / "recon.nii.gz")))
    ours = nib.as_closest_canonical(nib.load(str(nifti)))
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-4)
    peak = float(ours.get_fdata().max())
    assert np.abs(theirs.get_fdata() - ours.get_fdata()).max() <= 1e-5 * peak
