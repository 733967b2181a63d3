"""NIfTI volumes in napari's (z, y, x) order, keeping spacing, affine, header and units.

NIfTI stores voxels as (i, j, k) = (x, y, z); napari and the models work in (z, y, x). Reading
transposes once and remembers the affine and header, so writing can put back exactly what was
read. Intensity units (Bq/mL, SUV) come from a JSON sidecar (BIDS ``Units``) or the header's
``descrip`` field and travel with the volume.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_petite.errors import InputError
from napari_petite.io.atomic import atomic_write, reserve, write_text
from napari_petite.io.grid import check_affine, check_nifti_header
from napari_petite.io.memory import check_fits_in_memory

NIFTI_SUFFIXES = (".nii", ".nii.gz")

# spatial unit codes of the NIfTI header, as nibabel names them, in mm
_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}


@dataclass
class Volume:
    """A 3D image in (z, y, x) order with everything needed to write it back faithfully.

    Attributes
    ----------
    data : float32 array (z, y, x)
    spacing : voxel size in mm, (z, y, x)
    affine : 4x4 NIfTI affine (voxel (i, j, k) -> world mm), as in the file
    units : intensity units ("Bq/mL", "SUV", ...) or None when the file does not say
    header : the original NIfTI header (or None for volumes made in memory)
    path : the file it was read from, if any
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    units: str | None = None
    header: Any = None
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]


def is_nifti(path: str | os.PathLike) -> bool:
    """True for names ending in .nii or .nii.gz (case-insensitive)."""
    name = str(path).lower()
    return name.endswith(NIFTI_SUFFIXES)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``low.nii.gz`` -> ``low.json`` (BIDS convention)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".json")


def spacing_from_affine(affine: np.ndarray, unit_mm: float = 1.0) -> tuple[float, float, float]:
    """Voxel size (z, y, x) in mm from the column norms of a NIfTI affine."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0) * unit_mm
    return tuple(float(v) for v in norms[::-1])  # type: ignore[return-value]


def affine_from_spacing(spacing_zyx) -> np.ndarray:
    """A plain diagonal affine for volumes that never had one (origin at voxel 0)."""
    affine = np.eye(4)
    affine[0, 0], affine[1, 1], affine[2, 2] = (float(s) for s in spacing_zyx[::-1])
    return affine


def read_sidecar(path: str | os.PathLike) -> dict:
    """The BIDS-style JSON sidecar beside a NIfTI file (empty when there is none)."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    from napari_petite.io.jsonfile import read_json

    return read_json(side, what=f"The sidecar {side}")


def _suv_factor_from(path: Path) -> float | None:
    """``suv_factor`` of the sidecar (multiply a value by it to get SUVbw), when valid."""
    value = read_sidecar(path).get("suv_factor")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InputError(f'"suv_factor" in {sidecar_path(path)} must be a positive number.')
    return float(value)


def _units_from(path: Path, header) -> str | None:
    side = sidecar_path(path)
    if side.is_file():
        meta = read_sidecar(path)
        units = meta.get("Units", meta.get("units"))
        if units is not None and not isinstance(units, str):
            raise InputError(f'"Units" in {side} must be a string such as "Bq/mL" or "SUV".')
        if units:
            return units
    try:
        descrip = header["descrip"].item().decode("latin-1").strip("\x00 ")
    except (KeyError, AttributeError, ValueError):
        descrip = ""
    for part in descrip.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "units" and value.strip():
            return value.strip()
    return None


def _is_scaled(header) -> bool:
    """True when the header's scl_slope/scl_inter make nibabel return floats (64-bit)."""
    try:
        slope, inter = header.get_slope_inter()
    except (AttributeError, ValueError, TypeError):
        return False
    return slope is not None or inter is not None


def read_bytes(shape, disk_dtype, *, scaled: bool = False) -> int:
    """Peak bytes :func:`read_volume` allocates for a volume: the array as stored (or scaled
    to float64), its float32 (z, y, x) copy, and the NaN/Inf masks."""
    n = 1
    for size in shape:
        n *= int(size)
    raw = 8 if scaled else max(np.dtype(disk_dtype).itemsize, 1)
    return n * (raw + 4 + 2)


def _unreadable(path: Path, err: BaseException) -> InputError:
    return InputError(
        f"{path.name} could not be read as NIfTI ({type(err).__name__}: "
        f"{' '.join(str(err).split())}); the file is "
        "truncated, corrupted or not a NIfTI image. Re-export it from the scanner software."
    )


def open_nifti(path: Path):
    """(image, shape, on-disk dtype) of a NIfTI file, its voxels not read yet; a header
    nibabel cannot parse is one sentence."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            img = nib.Nifti1Image.from_image(img)
        return img, tuple(int(n) for n in img.shape), np.dtype(img.get_data_dtype())
    except Exception as err:  # nibabel raises many types (HeaderDataError, KeyError, ...)
        raise _unreadable(path, err) from None


def nifti_voxels(img, path: Path, shape, disk_dtype) -> np.ndarray:
    """The voxels of ``img`` as stored (x, y, z[, t]), after checking they fit in memory and
    are real numbers: shared by the 3D and the dynamic readers."""
    check_fits_in_memory(
        read_bytes(shape, disk_dtype, scaled=_is_scaled(img.header)),
        f"Reading {path.name} (shape {tuple(shape)})",
        "crop it to the head or resample it to a coarser grid first, or use a machine with "
        "more memory.",
    )
    try:
        raw = np.asanyarray(img.dataobj)
    except MemoryError:
        raise InputError(f"{path.name} (shape {tuple(shape)}) does not fit in memory; crop or "
                         "resample it first, or use a machine with more memory.") from None
    except Exception as err:  # truncated or corrupted data: EOFError, zlib.error, OSError...
        raise _unreadable(path, err) from None
    if np.iscomplexobj(raw) or raw.dtype.kind not in "biuf":
        raise InputError(f"{path.name} holds {raw.dtype} voxels; a PET volume must be real-valued.")
    return raw


def read_volume(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> Volume:
    """Read a 3D NIfTI file into a :class:`Volume` in (z, y, x) order.

    Raises
    ------
    InputError
        with one sentence saying what is wrong: missing file, not a NIfTI, truncated or
        corrupted, not 3D, or NaN/Inf voxels (unless ``allow_nonfinite``).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    if path.is_dir():
        raise InputError(f"{path} is a folder; choose a .nii or .nii.gz file.")
    if not is_nifti(path):
        raise InputError(f"{path.name} is not a NIfTI file; napari-petite reads .nii and .nii.gz.")

    img, shape, disk_dtype = open_nifti(path)
    check_nifti_header(path)
    check_affine(img.affine, path.name)
    squeeze = len(shape) == 4 and shape[3] == 1
    if squeeze:
        shape = shape[:3]
    if len(shape) != 3:
        what = f"{len(shape)}D with shape {tuple(shape)}"
        hint = (
            "extract one static frame (e.g. the summed frame) first"
            if len(shape) == 4
            else "napari-petite needs a 3D PET volume"
        )
        raise InputError(f"{path.name} is {what}; {hint}.")
    if min(shape) < 2:
        raise InputError(f"{path.name} has shape {tuple(shape)}; a 3D volume needs at least 2 "
                         "voxels along every axis.")
    raw = nifti_voxels(img, path, shape, disk_dtype)
    if squeeze:
        raw = raw[..., 0]
    data = np.ascontiguousarray(np.asarray(raw, dtype=np.float32).transpose(2, 1, 0))
    if not allow_nonfinite:
        bad = ~np.isfinite(data)
        if bad.any():
            n_nan = int(np.isnan(data).sum())
            n_inf = int(bad.sum()) - n_nan
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(
                f"{path.name} has {n_nan} NaN and {n_inf} infinite voxels (first at z,y,x = "
                f"{first}); replace them (e.g. with 0) in the reconstruction software first."
            )
    header = img.header.copy()
    try:
        unit_name = header.get_xyzt_units()[0]
    except (AttributeError, KeyError, ValueError):  # an unknown unit code: take mm
        unit_name = "mm"
    affine = np.asarray(img.affine, dtype=np.float64)
    return Volume(
        data=data,
        spacing=spacing_from_affine(affine, _UNIT_TO_MM.get(unit_name, 1.0)),
        affine=affine,
        units=_units_from(path, header),
        header=header,
        path=path,
        extra={"format": "nifti", "suv_factor": _suv_factor_from(path)},
    )


def _header_for(data_xyz: np.ndarray, affine: np.ndarray, header, units: str | None):
    import nibabel as nib

    hdr = header.copy() if header is not None else nib.Nifti1Header()
    if not isinstance(hdr, nib.Nifti1Header):
        hdr = nib.Nifti1Header.from_header(hdr)
    hdr.set_data_shape(data_xyz.shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_slope_inter(None, None)
    if units:
        hdr["descrip"] = f"units={units}"[:79].encode("latin-1", "replace")
    if header is None:
        hdr.set_xyzt_units("mm", "sec")
    return hdr


def write_volume(
    path: str | os.PathLike,
    data_zyx: np.ndarray,
    *,
    affine: np.ndarray | None = None,
    spacing: tuple[float, float, float] | None = None,
    header=None,
    units: str | None = None,
    inputs=(),
    overwrite: bool = False,
    sidecar: dict | None = None,
) -> Path:
    """Write a (z, y, x) array as float32 NIfTI, atomically, never over one of ``inputs``.

    The affine (or a diagonal one built from ``spacing``) and the original header fields are
    kept, so a volume read with :func:`read_volume` and written back round-trips exactly.
    ``units`` go into the header's ``descrip`` and, when given, a JSON sidecar beside the file.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti(path):
        raise InputError(f"{path.name}: output names must end in .nii.gz or .nii.")
    data_zyx = np.asarray(data_zyx)
    if data_zyx.ndim != 3:
        raise InputError(f"Only 3D volumes can be written as NIfTI; got shape {data_zyx.shape}.")
    if affine is None:
        if spacing is None:
            raise InputError("write_volume needs an affine or a voxel spacing.")
        affine = affine_from_spacing(spacing)
    affine = np.asarray(affine, dtype=np.float64)
    data_xyz = np.ascontiguousarray(data_zyx.astype(np.float32, copy=False).transpose(2, 1, 0))
    hdr = _header_for(data_xyz, affine, header, units)
    img = nib.Nifti1Image(data_xyz, affine, header=hdr)
    if header is not None:
        # keep the original sform/qform codes (scanner vs aligned) instead of nibabel's defaults
        img.set_sform(affine, int(header["sform_code"]) or 2)
        img.set_qform(affine, int(header["qform_code"]) or 1)
    meta = dict(sidecar or {})
    if units:
        meta.setdefault("Units", units)
    with contextlib.ExitStack() as claims:  # the volume and its sidecar: both or neither
        for dest in output_paths(path, meta):
            claims.enter_context(reserve(dest, inputs=input_paths(inputs), overwrite=overwrite,
                                         kind="file", needed=data_xyz.nbytes))
        dest = atomic_write(path, lambda tmp: nib.save(img, str(tmp)), inputs=inputs,
                            overwrite=overwrite)
        if meta:
            write_text(sidecar_path(dest), json.dumps(meta, indent=2, sort_keys=True) + "\n",
                       inputs=input_paths(inputs), overwrite=overwrite)
    return dest


def output_paths(path: str | os.PathLike, sidecar: bool | dict = True) -> list[Path]:
    """The files writing a volume to ``path`` creates: the NIfTI file and, when there is
    something to put in it (units, SUV factor), its JSON sidecar."""
    path = Path(path)
    return [path, sidecar_path(path)] if sidecar else [path]


def input_paths(inputs) -> list[Path]:
    """Input volumes and their sidecars: neither may be written over."""
    paths = [Path(p) for p in inputs if p]
    return paths + [sidecar_path(p) for p in paths if is_nifti(p)]


def write_like(path: str | os.PathLike, data_zyx: np.ndarray, like: Volume, **kwargs) -> Path:
    """Write ``data_zyx`` with the geometry, header, units and SUV factor of ``like`` (never
    over it): an adapted volume keeps what its input's SUVs are computed with."""
    inputs = list(kwargs.pop("inputs", ())) + ([like.path] if like.path else [])
    kwargs.setdefault("units", like.units)
    if like.extra.get("suv_factor"):
        kwargs["sidecar"] = {"suv_factor": like.extra["suv_factor"], **(kwargs.get("sidecar")
                                                                        or {})}
    return write_volume(path, data_zyx, affine=like.affine, header=like.header, inputs=inputs,
                        **kwargs)
