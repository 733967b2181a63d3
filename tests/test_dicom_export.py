"""Writing a derived DICOM PET series: read back with the reader and with plain pydicom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from conftest import write_nifti
from dicom_fixtures import (
    file_hashes,
    oblique,
    pet_volume,
    write_enhanced_pet,
    write_pet_series,
)

from napari_petite.errors import ConfigError, InputError, OutputError
from napari_petite.io.dicom import read_series
from napari_petite.io.dicom_export import write_derived_series
from napari_petite.io.nifti import read_volume

SPACING = (2.5, 1.5, 1.25)
GE_TAGS = {(0x0009, 0x0010): ("LO", "GEMS_PETD_01"),
           (0x0009, 0x100D): ("DT", "20240102100000.00")}


def _headers(folder):
    return [pydicom.dcmread(f) for f in sorted(folder.iterdir())]


def _no_partial(parent):
    assert not [p for p in parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kind", ["classic", "ge-fallback", "enhanced"])
def test_round_trip_keeps_patient_study_geometry_and_suv(tmp_path, kind):
    data = pet_volume(seed=2)
    if kind == "enhanced":
        src = write_enhanced_pet(tmp_path / "src" / "pet.dcm", data, spacing=SPACING,
                                 orientation=oblique(15, 25))
    elif kind == "ge-fallback":  # SeriesTime after the scan, GE's private time needed
        src = write_pet_series(tmp_path / "src", data, spacing=SPACING,
                               orientation=oblique(15, 25), series_time="120000",
                               acquisition_times="100500", extra_tags=GE_TAGS)
    else:
        src = write_pet_series(tmp_path / "src", data, spacing=SPACING,
                               orientation=oblique(15, 25))
    before = file_hashes(src)
    like = read_series(src)
    out = write_derived_series(like.data * 0.7, like, tmp_path / "out",
                               description="PETITE denoised (adapter vereos-lora)")
    assert out == tmp_path / "out"
    assert file_hashes(src) == before
    _no_partial(tmp_path)

    back = read_series(out)
    assert back.shape == like.shape
    np.testing.assert_allclose(back.affine, like.affine, atol=1e-4)
    np.testing.assert_allclose(back.spacing, like.spacing, rtol=1e-5)
    peak = float(np.abs(like.data * 0.7).max())
    assert np.abs(back.data - like.data * 0.7).max() <= 1e-3 * peak
    assert back.units == "Bq/mL"
    assert back.extra["suv_factor"] == pytest.approx(like.extra["suv_factor"], rel=1e-9)

    source = _headers(src if src.is_dir() else src.parent)[0]
    derived = _headers(out)
    assert len(derived) == like.shape[0]
    uids = {d.SOPInstanceUID for d in derived}
    assert len(uids) == len(derived) and source.SOPInstanceUID not in uids
    assert len({d.SeriesInstanceUID for d in derived}) == 1
    assert derived[0].SeriesInstanceUID != source.SeriesInstanceUID
    for d in derived:
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.128" and d.Modality == "PT"
        assert list(d.ImageType) == ["DERIVED", "PRIMARY"]
        assert d.SeriesDescription == "PETITE denoised (adapter vereos-lora)"
        assert d.Units == "BQML" and d.BitsAllocated == 16 and d.PixelRepresentation == 0
        for key in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName",
                    "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate",
                    "SeriesDate", "SeriesTime", "PatientWeight", "DecayCorrection"):
            assert d.get(key) == source.get(key), key
        assert list(d.CorrectedImage) == ["ATTN", "DECY"]
        dose = d.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
        assert float(dose) == pytest.approx(3.7e8)
        # each slice uses the full 16-bit range with its own slope
        assert int(d.pixel_array.max()) == 65535
    assert len({float(d.RescaleSlope) for d in derived}) == len(derived)
    # plain pydicom: positions are the source's, slice by slice
    by_position = sorted(derived, key=lambda d: int(d.InstanceNumber))
    for k, d in enumerate(by_position):
        np.testing.assert_allclose([float(v) for v in d.ImagePositionPatient],
                                   like.extra["dicom"]["slices"][k]["position"], atol=1e-6)
        values = d.pixel_array * float(d.RescaleSlope)
        assert np.abs(values - like.data[k] * 0.7).max() <= 1e-3 * peak


def test_suv_source_is_written_back_in_bqml(tmp_path):
    src = write_pet_series(tmp_path / "src", pet_volume(peak=8.0), spacing=SPACING, units="GML")
    like = read_series(src)
    assert like.units == "SUV"
    out = write_derived_series(like.data, like, tmp_path / "out", description="denoised")
    back = read_series(out)
    assert back.units == "Bq/mL"
    # SUV = Bq/mL * factor: the derived series gives back the source's SUV values
    np.testing.assert_allclose(back.data * back.extra["suv_factor"], like.data,
                               atol=1e-3 * float(like.data.max()))


def test_negative_values_are_clipped_to_zero(tmp_path):
    src = write_pet_series(tmp_path / "src", pet_volume(), spacing=SPACING)
    like = read_series(src)
    noisy = like.data - 500.0
    back = read_series(write_derived_series(noisy, like, tmp_path / "out", description="d"))
    assert float(back.data.min()) == 0.0
    np.testing.assert_allclose(back.data, np.clip(noisy, 0, None),
                               atol=1e-3 * float(noisy.max()))


def test_non_dicom_volume_is_refused(tmp_path, aniso_nifti):
    vol = read_volume(aniso_nifti)
    with pytest.raises(InputError, match="DICOM export needs a DICOM source series for "
                                         "patient and study; export NIfTI instead"):
        write_derived_series(vol.data, vol, tmp_path / "out", description="x")
    assert not (tmp_path / "out").exists()


def test_folder_inside_the_source_needs_permission(tmp_path):
    src = write_pet_series(tmp_path / "src", pet_volume(), spacing=SPACING)
    before = file_hashes(src)
    like = read_series(src)
    with pytest.raises(OutputError, match="inside the source series folder"):
        write_derived_series(like.data, like, src / "derived", description="x")
    assert file_hashes(src) == before and not (src / "derived").exists()
    out = write_derived_series(like.data, like, src / "derived", description="x",
                               allow_inside_source=True)
    assert len(list(out.iterdir())) == 6
    assert {k: v for k, v in file_hashes(src).items() if "derived" not in k} == before


@pytest.mark.parametrize("where", ["same", "parent"])
def test_source_files_are_never_overwritten(tmp_path, where):
    src = write_pet_series(tmp_path / "study" / "src", pet_volume(), spacing=SPACING)
    before = file_hashes(tmp_path / "study")
    like = read_series(src)
    dest = src if where == "same" else src.parent
    for allow in (False, True):
        with pytest.raises(OutputError, match="holds the source series"):
            write_derived_series(like.data, like, dest, description="x", overwrite=True,
                                 allow_inside_source=allow)
    assert file_hashes(tmp_path / "study") == before


def test_existing_folder_needs_overwrite(tmp_path):
    src = write_pet_series(tmp_path / "src", pet_volume(), spacing=SPACING)
    like = read_series(src)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "old.txt").write_text("a user's own file")
    with pytest.raises(OutputError, match="not written by napari-petite"):
        write_derived_series(like.data, like, tmp_path / "mine", description="x",
                             overwrite=True)
    write_derived_series(like.data, like, tmp_path / "out", description="first")
    with pytest.raises(OutputError, match="already exists"):
        write_derived_series(like.data, like, tmp_path / "out", description="x")
    assert read_series(tmp_path / "out").extra["dicom"]  # the first export is untouched
    write_derived_series(like.data, like, tmp_path / "out", description="x", overwrite=True)
    assert len(list((tmp_path / "out").iterdir())) == 6
    _no_partial(tmp_path)


def test_bad_data_and_description_are_refused(tmp_path):
    src = write_pet_series(tmp_path / "src", pet_volume(), spacing=SPACING)
    like = read_series(src)
    with pytest.raises(InputError, match="shape"):
        write_derived_series(like.data[:-1], like, tmp_path / "out", description="x")
    bad = like.data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_derived_series(bad, like, tmp_path / "out", description="x")
    with pytest.raises(ConfigError, match="description"):
        write_derived_series(like.data, like, tmp_path / "out", description="  ")
    assert not (tmp_path / "out").exists()


def test_moved_source_is_refused(tmp_path):
    src = write_pet_series(tmp_path / "src", pet_volume(), spacing=SPACING)
    like = read_series(src)
    src.rename(tmp_path / "moved")
    with pytest.raises(InputError, match="cannot be read any more"):
        write_derived_series(like.data, like, tmp_path / "out", description="x")
    assert not (tmp_path / "out").exists()


def test_counts_cannot_be_exported_as_bqml(tmp_path):
    src = write_pet_series(tmp_path / "src", pet_volume(), spacing=SPACING, units="CNTS")
    like = read_series(src)
    assert like.units == "counts"
    with pytest.raises(InputError, match="not Bq/mL or SUV"):
        write_derived_series(like.data, like, tmp_path / "out", description="x")
    assert not (tmp_path / "out").exists()


def test_nifti_of_the_export_is_unaffected(tmp_path):
    """A NIfTI written next to the exported series does not confuse the reader (skipped)."""
    src = write_pet_series(tmp_path / "src", pet_volume(), spacing=SPACING)
    like = read_series(src)
    out = write_derived_series(like.data, like, tmp_path / "out", description="x")
    write_nifti(out / "copy.nii.gz", like.data.transpose(2, 1, 0))
    assert read_series(out).shape == like.shape
