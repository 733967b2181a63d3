"""Every place that takes a volume takes a NIfTI file, a DICOM PET series or an ECAT 7 file
alike.

The napari reader, ``petite info / predict / evaluate``, and the dataset layout (a DICOM
series folder or a ``.v`` file wherever ``low.nii.gz`` or ``full.nii.gz`` stands) go through
:func:`read_any`, so a clinician's DICOM export or an older scanner's ECAT file needs no
conversion step. Geometry checks read headers only (:func:`geometry`). Formats still not read
are named in the refusal, with the tool that converts them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_petite.errors import InputError
from napari_petite.io.nifti import Volume, is_nifti

#: formats recognised only to be refused: (name suffixes, leading bytes, the sentence)
UNSUPPORTED = (
    ((".hdr", ".img"), None, "an Analyze 7.5 image; convert it to NIfTI with nibabel "
     "(`nib-convert FILE.hdr FILE.nii.gz`)"),
    ((".mnc",), b"\x89HDF", "a MINC image; convert it to NIfTI with mnc2nii (minc-tools)"),
    ((".nrrd", ".nhdr"), b"NRRD", "an NRRD image; convert it to NIfTI with 3D Slicer or "
     "SimpleITK"),
    ((".mha", ".mhd"), b"ObjectType", "a MetaImage; convert it to NIfTI with SimpleITK or "
     "ITK-SNAP"),
    ((".hv", ".h33", ".i33"), b"!INTERFILE", "an Interfile image; convert it to NIfTI with "
     "STIR's conversion tools or the scanner's software"),
    ((".par", ".rec"), None, "a Philips PAR/REC image; convert it with nibabel's parrec2nii"),
    ((".s", ".scn", ".a"), b"MATRIX6", "an ECAT 6 file, which nibabel does not read; convert "
     "it to ECAT 7 or NIfTI with the scanner's software (or CAPP's matcopy)"),
    ((".png",), b"\x89PNG", "a PNG picture, not a PET volume; open the scan's NIfTI file, "
     "DICOM series or ECAT 7 file"),
    ((".jpg", ".jpeg"), b"\xff\xd8\xff", "a JPEG picture, not a PET volume; open the scan's "
     "NIfTI file, DICOM series or ECAT 7 file"),
    ((".zip", ".tar", ".tgz", ".gz"), None, "an archive; unpack it first and open the NIfTI "
     "file, DICOM folder or .v file inside"),
)


def is_volume_path(path: str | os.PathLike) -> bool:
    """A NIfTI file, an ECAT 7 file, a DICOM file, or a folder of DICOM files (cheap: a few
    headers)."""
    from napari_petite.io.dicom import is_dicom_path
    from napari_petite.io.ecat import is_ecat

    return is_nifti(path) or is_ecat(path) or is_dicom_path(path)


def _refusal(path: str | os.PathLike) -> str:
    """The sentence for a file read_any does not read: its format by name or first bytes,
    and what converts it."""
    from pathlib import Path

    path = Path(path)
    head = b""
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(16)
    name = path.name.lower()
    by_bytes = [what for _, magic, what in UNSUPPORTED if magic and head.startswith(magic)]
    by_name = [what for suffixes, _, what in UNSUPPORTED if name.endswith(suffixes)]
    for what in by_bytes or by_name:
        return f"{path} is {what}."
    return (f"{path} is neither a NIfTI file (.nii, .nii.gz), a DICOM series (a folder of "
            ".dcm files or one multi-frame file) nor an ECAT 7 file (.v); convert it to NIfTI "
            "(for example with nibabel or SimpleITK) or choose one of those.")


def read_any(path: str | os.PathLike, *, series: str | None = None,
             allow_nonfinite: bool = False) -> Volume:
    """Read a NIfTI volume, an ECAT 7 file or a DICOM PET series (``series``: its
    SeriesInstanceUID when the folder holds several)."""
    from napari_petite.io.dicom import is_dicom_path, read_series
    from napari_petite.io.ecat import is_ecat, read_ecat
    from napari_petite.io.nifti import read_volume

    if is_nifti(path):
        return read_volume(path, allow_nonfinite=allow_nonfinite)
    if is_ecat(path):
        return read_ecat(path)
    if is_dicom_path(path):
        return read_series(path, series)
    from pathlib import Path

    if not Path(path).expanduser().exists():
        raise InputError(f"{path} does not exist; check the path.")
    raise InputError(_refusal(path))


def geometry(path: str | os.PathLike) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape z, y, x; NIfTI-style affine) from the headers alone."""
    from napari_petite.io.grid import check_affine

    if is_nifti(path):
        from napari_petite.io.grid import check_nifti_header
        from napari_petite.io.nifti import open_nifti

        img, shape, _ = open_nifti(Path(path))
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise InputError(f"{path}: {len(shape)}D with shape {shape}; a 3D volume is "
                             "needed.")
        check_nifti_header(path)
        check_affine(img.affine, Path(path).name)
        return tuple(reversed(shape)), np.asarray(img.affine, dtype=np.float64)  # type: ignore
    from napari_petite.io.ecat import is_ecat

    if is_ecat(path):
        import nibabel as nib

        img = nib.ecat.load(str(path))
        sub = img.get_subheaders()
        return tuple(reversed(sub.get_shape(0))), np.asarray(sub.get_frame_affine(0),
                                                              dtype=np.float64)
    from napari_petite.io.dicom import select_series, series_frames, stack_frames

    _, members = select_series(path, None)
    stack = stack_frames(series_frames(members), path)
    check_affine(stack.affine, Path(path).name)
    return stack.shape, np.asarray(stack.affine, dtype=np.float64)


def describe(volume: Volume) -> dict:
    """What ``petite info --json`` prints about one volume."""
    return {
        "path": str(volume.path),
        "format": volume.extra.get("format", "nifti"),
        "shape_zyx": list(volume.shape),
        "spacing_mm_zyx": [round(float(s), 6) for s in volume.spacing],
        "units": volume.units,
        "suv_factor": volume.extra.get("suv_factor"),
        "suv_reason": volume.extra.get("suv_reason"),
        "min": float(volume.data.min()),
        "max": float(volume.data.max()),
        "mean": float(volume.data.mean()),
        "affine": np.round(volume.affine, 6).tolist(),
    }
