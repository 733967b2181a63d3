"""Reading DICOM PET series: sorting, geometry in any orientation, per-slice rescaling,
multi-frame files, choosing among series, and every refusal of bad input.

Series are written with pydicom by tests/dicom_fixtures.py; expected positions and values
come from those files read with plain pydicom, never from the reader under test.
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from dicom_fixtures import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    file_hashes,
    oblique,
    pet_volume,
    write_dynamic_series,
    write_enhanced_pet,
    write_pet_series,
)

from napari_petite.errors import InputError
from napari_petite.io.dicom import is_dicom_path, list_series, read_series

SPACING = (2.0, 1.5, 1.25)  # dz, dy, dx
FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS -> RAS


def _refused(path, match, **kwargs) -> InputError:
    """read_series must refuse with one readable sentence and leave the files as they were."""
    before = file_hashes(path)
    with pytest.raises(InputError, match=match) as info:
        read_series(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and message.endswith(".")
    assert file_hashes(path) == before
    return info.value


def test_axial_series_sorted_by_position_with_per_slice_slopes(tmp_path):
    data = pet_volume()
    folder = write_pet_series(tmp_path / "pet", data, spacing=SPACING, origin=(-40, -30, -12))
    files = sorted(folder.iterdir())
    headers = [pydicom.dcmread(f) for f in files]
    by_z = sorted(headers, key=lambda d: float(d.ImagePositionPatient[2]))
    # the fixture really shuffled: InstanceNumber does not follow the position
    assert [int(d.InstanceNumber) for d in by_z] != sorted(int(d.InstanceNumber) for d in by_z)
    assert len({float(d.RescaleSlope) for d in headers}) == len(headers)

    vol = read_series(folder)
    assert vol.shape == (6, 8, 10)
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    expected_affine = np.array([[-1.25, 0, 0, 40.0], [0, -1.5, 0, 30.0], [0, 0, 2.0, -12.0],
                                [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected_affine, atol=1e-5)
    for k, ds in enumerate(by_z):
        stored = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope)
        np.testing.assert_allclose(vol.data[k], stored, rtol=1e-6)
        assert np.abs(vol.data[k] - data[k]).max() <= float(ds.RescaleSlope) / 2 + 1e-3
    assert vol.units == "Bq/mL" and vol.header is None and vol.path == folder
    assert vol.extra["format"] == "dicom"
    assert vol.extra["suv_factor"] > 0 and vol.extra["suv_reason"] is None
    info = vol.extra["dicom"]
    json.dumps(vol.extra)  # JSON-able as a whole
    assert [pydicom.dcmread(info["files"][s["file"]]).SOPInstanceUID for s in info["slices"]] \
        == [d.SOPInstanceUID for d in by_z]
    assert info["PatientID"] == "PETITE-001" and info["PatientName"] == "Test^Petite"
    assert info["StudyInstanceUID"] == by_z[0].StudyInstanceUID
    assert info["FrameOfReferenceUID"] == by_z[0].FrameOfReferenceUID
    assert info["SeriesInstanceUID"] == by_z[0].SeriesInstanceUID
    assert info["suv_tags"]["RadionuclideTotalDose"].startswith("370000000")


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL, SAGITTAL, oblique(20, 10),
                                         oblique(-35, 50)],
                         ids=["axial", "coronal", "sagittal", "oblique", "steep-oblique"])
@pytest.mark.parametrize("descending", [False, True], ids=["up", "down"])
def test_affine_maps_every_pixel_to_its_patient_position(tmp_path, orientation, descending):
    data = pet_volume(seed=3)
    offsets = [-2.5 * k for k in range(6)] if descending else None
    folder = write_pet_series(tmp_path / "pet", data, spacing=(2.5, 1.5, 1.25),
                              origin=(12.0, -7.5, 30.0), orientation=orientation,
                              offsets=offsets, thickness=3.27)
    vol = read_series(folder)
    np.testing.assert_allclose(vol.spacing, (2.5, 1.5, 1.25), rtol=1e-5)  # not SliceThickness
    found = set()
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        dy, dx = (float(v) for v in ds.PixelSpacing)
        row, col = iop[:3], iop[3:]
        # which slice of the volume is this file? the one whose origin is this IPP (in RAS)
        inv = np.linalg.inv(vol.affine)
        k_float = (inv @ np.append(FLIP @ ipp, 1.0))[2]
        k = round(k_float)
        assert abs(k - k_float) < 1e-4 and 0 <= k < 6
        found.add(k)
        for i, j in ((0, 0), (9, 0), (0, 7), (4, 5), (9, 7)):  # i = column, j = row
            lps = ipp + i * dx * row + j * dy * col
            np.testing.assert_allclose(vol.affine @ [i, j, k, 1.0], [*(FLIP @ lps), 1.0],
                                       atol=1e-4)
            assert vol.data[k, j, i] == pytest.approx(
                float(ds.pixel_array[j, i]) * float(ds.RescaleSlope), rel=1e-6)
    assert found == set(range(6))
    # slices go along +normal: k increases with the IPP projected on cross(row, col)
    normal = np.cross(orientation[:3], orientation[3:])
    normal_ras = FLIP @ normal
    assert vol.affine[:3, 2] @ normal_ras > 0


def test_enhanced_multiframe_file_matches_the_single_frame_series(tmp_path):
    data = pet_volume(seed=5)
    single = read_series(write_pet_series(tmp_path / "classic", data, spacing=SPACING,
                                          orientation=oblique()))
    path = write_enhanced_pet(tmp_path / "enhanced" / "pet.dcm", data, spacing=SPACING,
                              orientation=oblique())
    before = file_hashes(path)
    multi = read_series(path)
    assert file_hashes(path) == before
    assert multi.shape == single.shape
    np.testing.assert_allclose(multi.affine, single.affine, atol=1e-5)
    np.testing.assert_allclose(multi.spacing, single.spacing, rtol=1e-6)
    np.testing.assert_allclose(multi.data, single.data, rtol=1e-6)
    assert multi.units == "Bq/mL"
    assert multi.extra["suv_factor"] == pytest.approx(single.extra["suv_factor"], rel=1e-12)
    frames = [s["frame"] for s in multi.extra["dicom"]["slices"]]
    assert sorted(frames) == list(range(6)) and frames != list(range(6))  # stored shuffled
    # a folder holding just that file reads the same
    np.testing.assert_allclose(read_series(path.parent).data, multi.data)


def _study(tmp_path):
    study = tmp_path / "study"
    write_pet_series(study / "pet" / "ac", pet_volume(), spacing=SPACING, description="PET AC")
    write_pet_series(study / "ct", pet_volume(seed=1), spacing=SPACING, modality="CT",
                     description="CT low dose", slopes=[1.0] * 6)
    (study / "notes.txt").write_text("not DICOM")
    (study / "pet" / "broken.dcm").write_bytes(b"\x00" * 300)  # .dcm that does not parse
    (study / "pet" / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 64)
    return study


def test_list_series_groups_by_uid_and_skips_non_dicom(tmp_path):
    study = _study(tmp_path)
    infos = {info.modality: info for info in list_series(study)}
    assert sorted(infos) == ["CT", "PT"]
    pet, ct = infos["PT"], infos["CT"]
    assert (pet.n_files, pet.n_frames, pet.description) == (6, 6, "PET AC")
    assert (ct.n_files, ct.description) == (6, "CT low dose")
    assert pet.patient_id == "PETITE-001" and pet.study_date == "20240102"
    assert all(f.parent.name == "ac" for f in pet.files)
    one = list_series(pet.files[0])
    assert len(one) == 1 and one[0].n_files == 1


def test_several_series_need_a_choice(tmp_path):
    study = _study(tmp_path)
    infos = {info.modality: info for info in list_series(study)}
    err = _refused(study, "holds 2 DICOM series")
    for info in infos.values():
        assert info.uid in str(err) and info.description in str(err)
    assert "--series" in str(err)
    vol = read_series(study, series_uid=infos["PT"].uid)
    assert vol.shape == (6, 8, 10)
    _refused(study, "not PET", series_uid=infos["CT"].uid)
    _refused(study, "no DICOM series with UID 1.2.3", series_uid="1.2.3")


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_ct_or_mr_folder_is_refused(tmp_path, modality):
    folder = write_pet_series(tmp_path / modality, pet_volume(), spacing=SPACING,
                              modality=modality, slopes=[1.0] * 6)
    err = _refused(folder, f"a {modality} series")
    assert "PET" in str(err)


def test_missing_slice_is_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume((5, 8, 10)), spacing=SPACING,
                              offsets=[0, 2, 4, 8, 10])
    err = _refused(folder, "missing 1 slice")
    assert "4.00" in str(err) or "8.00" in str(err)


def test_unequal_spacing_is_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING,
                              offsets=[0, 2, 4, 6.5, 8.5, 10.5])
    _refused(folder, "unequal slice spacing")


def test_spacing_rounding_within_tolerance_is_accepted(tmp_path):
    offsets = [0, 2.004, 3.998, 6.01, 8.0, 9.996]  # < 1 % of 2 mm
    vol = read_series(write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING,
                                       offsets=offsets))
    assert vol.spacing[0] == pytest.approx(9.996 / 5, rel=1e-6)


def test_duplicate_positions_are_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING,
                              offsets=[0, 2, 4, 4, 6, 8])
    _refused(folder, "two slices at the same position")


def test_mixed_orientations_are_refused(tmp_path):
    tilted = oblique(0, 15)
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING, extra_tags={
        "ImageOrientationPatient": lambda k: [round(v, 8) for v in (tilted if k == 2 else AXIAL)]})
    _refused(folder, "mixes slice orientations")


def test_mixed_pixel_spacing_is_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING, extra_tags={
        "PixelSpacing": lambda k: [2.0, 2.0] if k == 4 else [1.5, 1.25]})
    _refused(folder, "mixes pixel spacings")


def test_mixed_image_sizes_are_refused(tmp_path):
    folder = tmp_path / "pet"
    series = write_pet_series(folder, pet_volume(), spacing=SPACING)
    uid = pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID
    # one more slice of another size, same series, further along z
    write_pet_series(tmp_path / "other", pet_volume((1, 6, 10)), spacing=SPACING,
                     origin=(-40.0, -30.0, 0.0), series_uid=uid, prefix="X")
    (tmp_path / "other" / "X0001.dcm").rename(folder / "X0001.dcm")
    _refused(folder, "mixes image sizes")


def test_slices_shifted_in_plane_are_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING, extra_tags={
        "ImagePositionPatient": lambda k: [-40.0 + (3.0 if k == 3 else 0.0), -30.0,
                                           -12.0 + 2.0 * k]})
    _refused(folder, "shifted within their plane")


def test_single_slice_is_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume((1, 8, 10)), spacing=SPACING)
    _refused(folder, "single slice")


def test_truncated_pixel_data_names_the_file(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING)
    victim = sorted(folder.iterdir())[2]
    raw = victim.read_bytes()
    victim.write_bytes(raw[:-37])
    err = _refused(folder, "pixel data")
    assert victim.name in str(err)


def test_missing_geometry_tag_is_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING,
                              extra_tags={"ImagePositionPatient": lambda k: None if k == 1
                                          else [-40.0, -30.0, -12.0 + 2 * k]})
    _refused(folder, "ImagePositionPatient")


@pytest.mark.parametrize(("kwargs", "words"), [({"weight": None}, "PatientWeight"),
                                               ({"dose": None}, "dose")])
def test_missing_weight_or_dose_reads_without_suv(tmp_path, kwargs, words):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING, **kwargs)
    before = file_hashes(folder)
    vol = read_series(folder)
    assert file_hashes(folder) == before
    assert vol.shape == (6, 8, 10) and vol.units == "Bq/mL"
    assert vol.extra["suv_factor"] is None and words in vol.extra["suv_reason"]


def test_admin_decay_reads_with_no_decay(tmp_path):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING, decay="ADMIN")
    before = file_hashes(folder)
    vol = read_series(folder)
    assert file_hashes(folder) == before
    assert vol.extra["suv_factor"] == pytest.approx(75.0 * 1000.0 / 3.7e8, rel=1e-12)


def test_dynamic_series_is_refused_as_static(tmp_path):
    frames = np.stack([pet_volume((3, 8, 10), seed=t) for t in range(3)])
    folder = write_dynamic_series(tmp_path / "dyn", frames, starts_s=[0, 60, 120],
                                  durations_s=[60, 60, 60], spacing=SPACING)
    _refused(folder, "dynamic series with 3 time frames")


def test_empty_and_non_dicom_inputs_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    _refused(tmp_path / "empty", "No DICOM image files")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("hello")
    _refused(tmp_path / "text", "No DICOM image files")
    _refused(tmp_path / "text" / "a.txt", "not a DICOM image file")
    with pytest.raises(InputError, match="does not exist"):
        read_series(tmp_path / "nowhere")


def test_memory_is_checked_before_reading(tmp_path, monkeypatch):
    folder = write_pet_series(tmp_path / "pet", pet_volume(), spacing=SPACING)
    monkeypatch.setenv("PETITE_MAX_MEMORY", "1K")
    _refused(folder, "memory")


def test_is_dicom_path(tmp_path):
    folder = write_pet_series(tmp_path / "study" / "pet", pet_volume(), spacing=SPACING)
    file = next(folder.iterdir())
    plain = tmp_path / "plain.dcm"  # no preamble, but parses
    ds = pydicom.dcmread(file)
    ds.save_as(plain, enforce_file_format=False)
    raw = plain.read_bytes()
    plain.write_bytes(raw[132:] if raw[128:132] == b"DICM" else raw)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "junk.dcm").write_bytes(b"junk" * 10)
    (tmp_path / "none").mkdir()
    assert is_dicom_path(folder) and is_dicom_path(tmp_path / "study") and is_dicom_path(file)
    assert is_dicom_path(plain)
    assert not is_dicom_path(tmp_path / "notes.txt")
    assert not is_dicom_path(tmp_path / "junk.dcm")
    assert not is_dicom_path(tmp_path / "none")
    assert not is_dicom_path(tmp_path / "missing")
