"""NIfTI I/O keeps geometry and units exactly, writes atomically and refuses bad input."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
from conftest import ANISO_AFFINE, pet_like, write_nifti

from napari_petite.errors import InputError, OutputError
from napari_petite.io import atomic
from napari_petite.io.nifti import read_volume, write_like, write_volume


def test_read_gives_zyx_data_and_spacing(aniso_nifti):
    vol = read_volume(aniso_nifti)
    raw = nib.load(str(aniso_nifti)).get_fdata(dtype=np.float32)
    assert vol.shape == (12, 20, 24)
    np.testing.assert_array_equal(vol.data, raw.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, (2.0, 1.65, 1.65), rtol=1e-6)
    np.testing.assert_allclose(vol.affine, ANISO_AFFINE, atol=1e-5)
    assert vol.data.dtype == np.float32


def test_round_trip_is_exact(aniso_nifti, tmp_path):
    vol = read_volume(aniso_nifti)
    out = write_like(tmp_path / "copy.nii.gz", vol.data, vol)
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_array_equal(back.affine, vol.affine)
    assert back.spacing == vol.spacing
    assert int(back.header["sform_code"]) == int(vol.header["sform_code"])


def test_written_files_get_the_usual_permissions(aniso_nifti, tmp_path):
    """Atomic writes go through a 0o600 temporary file; the result must not stay private."""
    import os
    import stat

    out = write_like(tmp_path / "copy.nii.gz", read_volume(aniso_nifti).data,
                     read_volume(aniso_nifti))
    text = atomic.write_text(tmp_path / "card.json", "{}")
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (out, text):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_units_travel_through_sidecar_and_header(aniso_nifti, tmp_path):
    (tmp_path / "scan.json").write_text(json.dumps({"Units": "Bq/mL"}))
    vol = read_volume(aniso_nifti)
    assert vol.units == "Bq/mL"
    out = write_like(tmp_path / "out" / "recon.nii.gz", vol.data * 2, vol)
    assert json.loads((out.parent / "recon.json").read_text())["Units"] == "Bq/mL"
    (out.parent / "recon.json").unlink()  # header descrip alone still carries them
    assert read_volume(out).units == "Bq/mL"


def test_scaled_integer_file_reads_in_physical_values(tmp_path):
    data = (pet_like() / 10).astype(np.int16)
    img = nib.Nifti1Image(data, ANISO_AFFINE)
    img.header.set_slope_inter(2.5, 1.0)
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    vol = read_volume(tmp_path / "scaled.nii.gz")
    np.testing.assert_allclose(vol.data, data.transpose(2, 1, 0) * 2.5 + 1.0)


def test_refuses_to_overwrite_its_input(aniso_nifti):
    vol = read_volume(aniso_nifti)
    before = aniso_nifti.read_bytes()
    with pytest.raises(OutputError, match="is an input"):
        write_like(aniso_nifti, vol.data * 0, vol, overwrite=True)
    assert aniso_nifti.read_bytes() == before


def test_refuses_existing_output_without_overwrite(aniso_nifti, tmp_path):
    vol = read_volume(aniso_nifti)
    dest = write_like(tmp_path / "a.nii.gz", vol.data, vol)
    with pytest.raises(OutputError, match="already exists"):
        write_like(dest, vol.data, vol)
    write_like(dest, vol.data + 1, vol, overwrite=True)
    np.testing.assert_array_equal(read_volume(dest).data, vol.data + 1)


def test_failed_write_leaves_nothing_under_final_name(tmp_path):
    def broken_writer(tmp):
        tmp.write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        atomic.atomic_write(tmp_path / "out.nii.gz", broken_writer)
    assert list(tmp_path.iterdir()) == []


def test_write_without_affine_uses_spacing(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    out = write_volume(tmp_path / "v.nii.gz", data, spacing=(3.0, 2.0, 1.0))
    vol = read_volume(out)
    assert vol.spacing == (3.0, 2.0, 1.0)
    np.testing.assert_array_equal(vol.data, data)


def test_unusable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        write_volume(blocker / "v.nii.gz", np.zeros((2, 2, 2)), spacing=(1, 1, 1))
    assert blocker.read_text().startswith("a file")


# -- bad input --------------------------------------------------------------------------
def _truncated(tmp_path):
    good = write_nifti(tmp_path / "good.nii.gz", pet_like((40, 40, 30)))
    raw = good.read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    return bad


def _put(path, content: bytes):
    path.write_bytes(content)
    return path


BAD_CASES = {
    "not a nifti (text)": (lambda p: _put(p / "notes.nii.gz", b"hello"), "could not be read"),
    "plain gzip not nifti": (lambda p: _put(p / "z.nii.gz", gzip.compress(b"x" * 500)),
                             "could not be read"),
    "wrong extension": (lambda p: _put(p / "scan.png", b"\x89PNG"), "not a NIfTI"),
    "truncated": (_truncated, "truncated"),
    "2D": (lambda p: write_nifti(p / "flat.nii.gz", np.ones((8, 8), np.float32)), "2D"),
    "4D": (lambda p: write_nifti(p / "dyn.nii.gz", np.ones((8, 8, 8, 3), np.float32)),
           r"4D .*static frame"),
    "NaN": (lambda p: write_nifti(p / "nan.nii.gz", np.where(pet_like() > 4000, np.nan,
                                                             pet_like())), "NaN"),
    "Inf": (lambda p: write_nifti(p / "inf.nii.gz", np.full((6, 6, 6), np.inf, np.float32)),
            "infinite"),
    "missing": (lambda p: p / "nowhere.nii.gz", "does not exist"),
    "folder": (lambda p: (p / "dir.nii.gz").mkdir() or p / "dir.nii.gz", "is a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_clear_sentence(case, tmp_path):
    make, message = BAD_CASES[case]
    path = make(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(InputError, match=message) as info:
        read_volume(path)
    assert "\n" not in str(info.value)
    if before is not None:
        assert path.read_bytes() == before


def test_single_frame_4d_is_accepted(tmp_path):
    path = write_nifti(tmp_path / "one.nii.gz", pet_like()[..., None])
    assert read_volume(path).shape == (12, 20, 24)


def test_nonfinite_can_be_allowed_explicitly(tmp_path):
    path = write_nifti(tmp_path / "inf.nii.gz", np.full((6, 6, 6), np.inf, np.float32))
    assert np.isinf(read_volume(path, allow_nonfinite=True).data).all()
