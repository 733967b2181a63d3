"""Is a voxel grid a grid? The one check of a volume's geometry, from its header alone.

A voxel-to-world matrix (affine) with NaN entries, a zero voxel size, collinear axes or axes
that are not perpendicular (a sheared grid: a CT gantry tilt) cannot be resampled, shown in
radiological orientation or measured in mm as a PET image. nibabel quietly "repairs" some
of these (a zero ``pixdim`` becomes 1 mm, a negative one its absolute value), so NIfTI
headers are also read raw. ``petite info``, dataset validation and every reader use these
checks, so a volume that training would refuse is refused by ``info`` too, with the same
sentence.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from napari_petite.errors import InputError

#: |cos| of the angle between two voxel axes above which the grid counts as sheared
SHEAR_TOLERANCE = 1e-3
_AXES = "xyz"


def check_affine(affine, what: str) -> None:
    """Refuse an affine whose voxel axes are not a usable grid, saying which way it fails."""
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise InputError(f"{what} has NaN or infinite entries in its voxel-to-world matrix "
                         "(affine); fix the header (sform/qform, pixdim) in the software that "
                         "wrote it.")
    axes = matrix[:3, :3]
    sizes = np.linalg.norm(axes, axis=0)
    for k, size in enumerate(sizes):
        if not size > 1e-6:
            raise InputError(f"{what} has a voxel size of 0 mm along its {_AXES[k]} axis; fix "
                             "the header's voxel size (pixdim) or affine.")
    if abs(np.linalg.det(axes)) < 1e-9 * float(np.prod(sizes)):
        raise InputError(f"{what} has collinear voxel axes (a singular affine), so its voxels "
                         "have no volume; fix the header's sform/qform.")
    unit = axes / sizes
    cosines = np.abs(unit.T @ unit - np.eye(3))
    if float(cosines.max()) > SHEAR_TOLERANCE:
        angle = math.degrees(math.acos(min(1.0, float(cosines.max()))))
        raise InputError(f"{what} has voxel axes {90 - angle:.1f} degrees from perpendicular "
                         "(a sheared grid, e.g. a gantry tilt); resample it onto a regular grid "
                         "first.")


def check_nifti_header(path: str | os.PathLike) -> None:
    """Refuse voxel sizes (``pixdim``) that are zero, negative or NaN where the affine is
    built from them (no sform), before nibabel changes them silently."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    path = Path(path)
    try:
        with ImageOpener(str(path)) as fh:
            raw = fh.read(540)
        nifti2 = 540 in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big"))
        kind = nib.Nifti2Header if nifti2 else nib.Nifti1Header
        header = kind(raw[:kind.template_dtype.itemsize], check=False)
    except Exception:  # unreadable headers are the reader's to report
        return
    if int(header["sform_code"]) > 0:
        return
    for k, size in enumerate(np.asarray(header["pixdim"][1:4], dtype=np.float64)):
        if not size > 0:
            word = "NaN" if math.isnan(size) else f"{size:g} mm"
            raise InputError(f"{path.name} gives a voxel size (pixdim) of {word} along its "
                             f"{_AXES[k]} axis and no sform; readers would invent a size. Fix "
                             "the header (pixdim) in the software that wrote it.")
