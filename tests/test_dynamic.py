"""Low/full training pairs from dynamic scans (4D NIfTI + BIDS sidecar, DICOM time frames).

Each frame is a known constant times one spatial pattern, so every expected mean is the
pattern times a number worked out by hand from the frame values and durations.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ANISO_AFFINE, write_nifti
from dicom_fixtures import file_hashes, pet_volume, write_dynamic_series, write_pet_series

from napari_petite.errors import ConfigError, InputError, OutputError
from napari_petite.io.dicom import read_series
from napari_petite.io.dynamic import make_pair, read_dynamic
from napari_petite.io.nifti import read_volume

# frames 0-60, 60-120, 120-180, 180-300, 300-600, 600-1200, 1200-1800, 1800-2400 s
STARTS = [0, 60, 120, 180, 300, 600, 1200, 1800]
DURATIONS = [60, 60, 60, 120, 300, 600, 600, 600]
VALUES = [10, 20, 30, 40, 50, 60, 70, 80]
# low 0-300 s: (10*60 + 20*60 + 30*60 + 40*120) / 300 = 8400 / 300
LOW = 28.0
# full 0-1800 s: (8400 + 50*300 + 60*600 + 70*600) / 1800 = 101400 / 1800
FULL = 101400.0 / 1800.0


def _pattern_xyz(shape=(10, 8, 6)) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return (1.0 + np.exp(-sum(g**2 for g in grids))).astype(np.float32)


def _dynamic_nifti(folder, starts=STARTS, durations=DURATIONS, values=VALUES, sidecar=True,
                   **extra):
    folder.mkdir(parents=True, exist_ok=True)
    pattern = _pattern_xyz()
    data = np.stack([pattern * v for v in values], axis=-1)  # x, y, z, t
    path = write_nifti(folder / "dyn.nii.gz", data)
    if sidecar:
        meta = {"FrameTimesStart": list(starts), "FrameDuration": list(durations),
                "Units": "Bq/mL", **extra}
        (folder / "dyn.json").write_text(json.dumps(meta))
    return path


def _refused(dyn_or_path, subject, match, exc=InputError, **kwargs):
    src = dyn_or_path if not hasattr(dyn_or_path, "path") else dyn_or_path.path
    root = src.parent if src.is_file() else src
    before = file_hashes(root)
    with pytest.raises(exc, match=match) as info:
        dyn = read_dynamic(dyn_or_path) if not hasattr(dyn_or_path, "path") else dyn_or_path
        make_pair(dyn, subject, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    assert file_hashes(root) == before
    assert not subject.exists()
    assert not [p for p in subject.parent.iterdir() if p.name.startswith(".")]
    return info.value


def test_pair_from_nifti_is_the_duration_weighted_mean(tmp_path):
    src = _dynamic_nifti(tmp_path / "in")
    before = file_hashes(tmp_path / "in")
    dyn = read_dynamic(src)
    assert dyn.frames.shape == (8, 6, 8, 10) and dyn.frames.dtype == np.float32
    np.testing.assert_array_equal(dyn.starts_s, STARTS)
    np.testing.assert_array_equal(dyn.durations_s, DURATIONS)
    assert dyn.template.units == "Bq/mL"

    subject = tmp_path / "ds" / "scanner" / "sub-01"
    meta = make_pair(dyn, subject)
    assert file_hashes(tmp_path / "in") == before
    assert sorted(p.name for p in subject.iterdir()) == [
        ".petite-output.json", "full.json", "full.nii.gz", "low.json", "low.nii.gz",
        "meta.json"]
    low, full = read_volume(subject / "low.nii.gz"), read_volume(subject / "full.nii.gz")
    pattern_zyx = _pattern_xyz().transpose(2, 1, 0)
    np.testing.assert_allclose(low.data, pattern_zyx * LOW, rtol=1e-5)
    np.testing.assert_allclose(full.data, pattern_zyx * FULL, rtol=1e-5)
    np.testing.assert_array_equal(low.affine, full.affine)
    np.testing.assert_allclose(low.affine, ANISO_AFFINE, atol=1e-5)
    assert low.units == full.units == "Bq/mL"

    on_disk = json.loads((subject / "meta.json").read_text())
    assert on_disk == meta
    assert meta["low"]["frames"] == [0, 1, 2, 3] and meta["low"]["duration_s"] == 300
    assert meta["full"]["frames"] == [0, 1, 2, 3, 4, 5, 6]
    assert meta["full"]["end_s"] == 1800 and meta["low"]["window_s"] == [0, 300]
    assert meta["units"] == "Bq/mL" and meta["source"] == str(src)
    assert meta["suv_factor"] is None


def test_windows_count_from_the_first_frame(tmp_path):
    # the same frames, 600 s after time zero: windows still start at the first frame
    src = _dynamic_nifti(tmp_path / "in", starts=[s + 600 for s in STARTS])
    meta = make_pair(read_dynamic(src), tmp_path / "sub")
    assert meta["low"]["frames"] == [0, 1, 2, 3]
    low = read_volume(tmp_path / "sub" / "low.nii.gz")
    np.testing.assert_allclose(low.data, _pattern_xyz().transpose(2, 1, 0) * LOW, rtol=1e-5)


def test_frames_are_sorted_by_start(tmp_path):
    order = [3, 0, 2, 1, 7, 4, 6, 5]
    src = _dynamic_nifti(tmp_path / "in", starts=[STARTS[i] for i in order],
                         durations=[DURATIONS[i] for i in order],
                         values=[VALUES[i] for i in order])
    dyn = read_dynamic(src)
    np.testing.assert_array_equal(dyn.starts_s, STARTS)
    make_pair(dyn, tmp_path / "sub")
    full = read_volume(tmp_path / "sub" / "full.nii.gz")
    np.testing.assert_allclose(full.data, _pattern_xyz().transpose(2, 1, 0) * FULL, rtol=1e-5)


def test_overlapping_frames_are_refused(tmp_path):
    starts = [0, 50, 120, 180, 300, 600, 1200, 1800]  # frame 1 ends at 60, frame 2 starts at 50
    src = _dynamic_nifti(tmp_path / "in", starts=starts)
    _refused(src, tmp_path / "sub", "Frames 1 and 2 of dyn.nii.gz overlap")


def test_gap_inside_a_window_is_refused(tmp_path):
    starts = [0, 60, 150, 180, 300, 600, 1200, 1800]  # 120-150 s without data
    durations = [60, 60, 30, 120, 300, 600, 600, 600]
    src = _dynamic_nifti(tmp_path / "in", starts=starts, durations=durations)
    _refused(src, tmp_path / "sub", "low window 0-300 s of dyn.nii.gz has a gap between "
                                    "frames 2 and 3")


def test_missing_sidecar_is_refused(tmp_path):
    src = _dynamic_nifti(tmp_path / "in", sidecar=False)
    _refused(src, tmp_path / "sub", "no BIDS sidecar dyn.json")


@pytest.mark.parametrize(("meta", "match"), [
    ({"FrameTimesStart": [0, 60], "FrameDuration": [60, 60]}, "2 frame starts"),
    ({"FrameTimesStart": "0 60", "FrameDuration": DURATIONS}, '"FrameTimesStart"'),
    ({"FrameDuration": DURATIONS}, '"FrameTimesStart"'),
    ({"FrameTimesStart": STARTS, "FrameDuration": [60, 0, 60, 120, 300, 600, 600, 600]},
     "Frame 2 of dyn.nii.gz lasts 0 s"),
])
def test_bad_timing_is_refused(tmp_path, meta, match):
    src = _dynamic_nifti(tmp_path / "in", sidecar=False)
    (tmp_path / "in" / "dyn.json").write_text(json.dumps(meta))
    _refused(src, tmp_path / "sub", match)


def test_window_without_a_whole_frame_is_refused(tmp_path):
    src = _dynamic_nifti(tmp_path / "in", starts=[0, 600, 1200], durations=[600, 600, 600],
                         values=[1, 2, 3])
    _refused(src, tmp_path / "sub", "No whole frame of dyn.nii.gz lies inside the low window")


def test_same_frames_in_both_windows_are_refused(tmp_path):
    src = _dynamic_nifti(tmp_path / "in")
    _refused(src, tmp_path / "sub", "select the same frames", low=(0, 300), full=(0, 400))


@pytest.mark.parametrize("window", [(300, 0), (-5, 10), (0, float("nan")), "abc", (1, 2, 3)])
def test_bad_windows_are_refused(tmp_path, window):
    src = _dynamic_nifti(tmp_path / "in")
    _refused(src, tmp_path / "sub", "low window must be", exc=ConfigError, low=window)


def test_static_nifti_is_refused(tmp_path):
    src = write_nifti(tmp_path / "in" / "static.nii.gz", _pattern_xyz())
    (tmp_path / "in" / "static.json").write_text(json.dumps(
        {"FrameTimesStart": [0], "FrameDuration": [600]}))
    _refused(src, tmp_path / "sub", "not 4D with several time frames")


def test_existing_subject_needs_overwrite_and_input_is_protected(tmp_path):
    src = _dynamic_nifti(tmp_path / "in")
    dyn = read_dynamic(src)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "old.txt").write_text("a user's own file")
    with pytest.raises(OutputError, match="not written by napari-petite"):
        make_pair(dyn, mine, overwrite=True)
    subject = tmp_path / "sub"
    make_pair(dyn, subject)
    (subject / "old.txt").write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        make_pair(dyn, subject)
    assert (subject / "old.txt").exists()
    make_pair(dyn, subject, overwrite=True)
    assert not (subject / "old.txt").exists() and (subject / "low.nii.gz").exists()
    before = file_hashes(tmp_path / "in")
    for dest in (tmp_path / "in", tmp_path):
        with pytest.raises(OutputError, match=r"is an input|contains an input"):
            make_pair(dyn, dest, overwrite=True)
    assert file_hashes(tmp_path / "in") == before


def _dicom_dynamic(folder):
    starts, durations = [0, 60, 120, 240], [60, 60, 120, 120]
    values = [100.0, 200.0, 300.0, 400.0]
    pattern = pet_volume((4, 8, 10), seed=7, peak=50.0) / 50.0
    frames = np.stack([pattern * v for v in values])
    write_dynamic_series(folder, frames, starts_s=starts, durations_s=durations,
                         spacing=(2.0, 1.5, 1.25))
    return pattern, starts, durations


def test_pair_from_a_dicom_dynamic_series(tmp_path):
    pattern, starts, durations = _dicom_dynamic(tmp_path / "dyn")
    before = file_hashes(tmp_path / "dyn")
    dyn = read_dynamic(tmp_path / "dyn")
    assert dyn.frames.shape == (4, 4, 8, 10)
    np.testing.assert_allclose(dyn.starts_s, starts, atol=1e-3)
    np.testing.assert_allclose(dyn.durations_s, durations)
    assert dyn.template.units == "Bq/mL" and dyn.template.extra["suv_factor"] > 0
    meta = make_pair(dyn, tmp_path / "sub", low=(0, 120), full=(0, 360))
    assert file_hashes(tmp_path / "dyn") == before
    assert meta["low"]["frames"] == [0, 1] and meta["full"]["frames"] == [0, 1, 2, 3]
    assert meta["suv_factor"] == pytest.approx(dyn.template.extra["suv_factor"])
    low = read_volume(tmp_path / "sub" / "low.nii.gz")
    full = read_volume(tmp_path / "sub" / "full.nii.gz")
    # low: (100*60 + 200*60) / 120 = 150; full: (6000 + 12000 + 300*120 + 400*120) / 360
    np.testing.assert_allclose(low.data, pattern * 150.0, rtol=1e-4)
    np.testing.assert_allclose(full.data, pattern * (102000.0 / 360.0), rtol=1e-4)
    np.testing.assert_array_equal(low.affine, full.affine)
    np.testing.assert_allclose(low.affine, dyn.template.affine, atol=1e-4)


def test_static_dicom_is_not_dynamic(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=(2.0, 1.5, 1.25))
    _refused(folder, tmp_path / "sub", "static series")
    # and the dynamic one is not a static volume
    _dicom_dynamic(tmp_path / "dyn")
    with pytest.raises(InputError, match="dynamic series with 4 time frames"):
        read_series(tmp_path / "dyn")


def test_dicom_frames_overlapping_are_refused(tmp_path):
    frames = np.stack([pet_volume((3, 8, 10), seed=t) for t in range(3)])
    write_dynamic_series(tmp_path / "dyn", frames, starts_s=[0, 30, 120],
                         durations_s=[60, 60, 60], spacing=(2.0, 1.5, 1.25))
    _refused(tmp_path / "dyn", tmp_path / "sub", "Frames 1 and 2 of dyn overlap")


def test_enhanced_multiframe_dynamic(tmp_path):
    """An Enhanced PET file with two time frames (TemporalPositionIndex) of three slices."""
    import pydicom
    from dicom_fixtures import write_enhanced_pet

    pattern = pet_volume((3, 8, 10), seed=4, peak=50.0) / 50.0
    path = write_enhanced_pet(tmp_path / "dyn" / "pet.dcm",
                              np.concatenate([pattern * 100.0, pattern * 400.0]),
                              spacing=(2.0, 1.5, 1.25), shuffle=False)
    ds = pydicom.dcmread(path)
    for i, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        t, z = divmod(i, 3)
        group.PlanePositionSequence[0].ImagePositionPatient = [-40.0, -30.0, -12.0 + 2.0 * z]
        content = group.FrameContentSequence[0]
        content.TemporalPositionIndex = t + 1
        content.FrameAcquisitionDateTime = "20240102100000" if t == 0 else "20240102100100"
        content.FrameAcquisitionDuration = 60000.0 if t == 0 else 180000.0
    ds.save_as(path, enforce_file_format=True)
    dyn = read_dynamic(path)
    assert dyn.frames.shape == (2, 3, 8, 10)
    np.testing.assert_allclose(dyn.starts_s, [0, 60])
    np.testing.assert_allclose(dyn.durations_s, [60, 180])
    make_pair(dyn, tmp_path / "sub", low=(0, 60), full=(0, 240))
    full = read_volume(tmp_path / "sub" / "full.nii.gz")
    # (100*60 + 400*180) / 240 = 325
    np.testing.assert_allclose(full.data, pattern * 325.0, rtol=1e-4)
    with pytest.raises(InputError, match="dynamic series with 2 time frames"):
        read_series(path)
