"""Every place that takes a volume takes a NIfTI file or a DICOM PET series alike.

The napari reader, ``petite info / predict / evaluate``, and the dataset layout (a DICOM
series folder wherever ``low.nii.gz`` or ``full.nii.gz`` stands) go through
:func:`read_any`, so a clinician's DICOM export needs no conversion step. Geometry checks read
headers only (:func:`geometry`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_petite.errors import InputError
from napari_petite.io.nifti import Volume, is_nifti


def is_volume_path(path: str | os.PathLike) -> bool:
    """A NIfTI file, a DICOM file, or a folder of DICOM files (cheap: a few headers)."""
    from napari_petite.io.dicom import is_dicom_path

    return is_nifti(path) or is_dicom_path(path)


def read_any(path: str | os.PathLike, *, series: str | None = None,
             allow_nonfinite: bool = False) -> Volume:
    """Read a NIfTI volume or a DICOM PET series (``series``: its SeriesInstanceUID when the
    folder holds several)."""
    from napari_petite.io.dicom import is_dicom_path, read_series
    from napari_petite.io.nifti import read_volume

    if is_nifti(path):
        return read_volume(path, allow_nonfinite=allow_nonfinite)
    if is_dicom_path(path):
        return read_series(path, series)
    raise InputError(f"{path} is neither a NIfTI file (.nii, .nii.gz) nor a DICOM series "
                     "(a folder of .dcm files or one multi-frame file); choose one of those.")


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
