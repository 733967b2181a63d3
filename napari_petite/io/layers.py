"""Conversion between :class:`Volume` and napari layer data, without importing napari.

A layer carries ``scale`` = voxel spacing (mm, z/y/x) so that anisotropic volumes look right
and measurements are in mm; the NIfTI affine, header, units and source path ride along in
``metadata`` so that anything derived from the layer can be written back with the same
geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_petite.io.nifti import Volume, affine_from_spacing

#: napari colormap used for PET activity layers (perceptually uniform, dark background)
PET_COLORMAP = "inferno"
#: diverging colormap for difference images
DIFF_COLORMAP = "RdBu_r"

_LABEL_HINTS = ("label", "seg", "mask", "aseg", "parc")


def robust_limits(data: np.ndarray, upper_percentile: float = 99.9) -> tuple[float, float]:
    """Contrast limits (0 .. high percentile) that ignore a few hot voxels."""
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    sample = finite if finite.size <= 2_000_000 else finite[:: finite.size // 2_000_000 + 1]
    lo = float(min(0.0, sample.min()))
    hi = float(np.percentile(sample, upper_percentile))
    if hi <= lo:
        hi = float(sample.max()) if sample.max() > lo else lo + 1.0
    return (lo, hi)


def looks_like_labels(volume: Volume) -> bool:
    """Integer-valued files named like a label map open as a napari Labels layer."""
    name = volume.path.name.lower() if volume.path else ""
    if not any(h in name for h in _LABEL_HINTS):
        return False
    header_kind = np.dtype(volume.header.get_data_dtype()).kind if volume.header else "f"
    return header_kind in "iub" and bool(np.all(volume.data == np.round(volume.data)))


#: layer metadata key: the factor a layer's data were multiplied by for display (SUV); the
#: volume in the file's ``units`` is data / factor
DISPLAY_SCALE = "display_scale"
#: layer metadata key: the automatic display window (:func:`robust_limits`) in the file's
#: units, computed once where the volume is read (off the GUI thread)
AUTO_LIMITS = "auto_limits"


def layer_metadata(volume: Volume) -> dict:
    """The metadata dict that lets a layer be written back with its original geometry."""
    return {
        "affine": np.asarray(volume.affine, dtype=np.float64),
        "nifti_header": volume.header,
        "units": volume.units,
        "suv_factor": volume.extra.get("suv_factor"),
        "suv_reason": volume.extra.get("suv_reason"),
        "dicom": volume.extra.get("dicom"),  # what a derived DICOM series needs
        "source_path": str(volume.path) if volume.path else None,
        "spacing": tuple(volume.spacing),
    }


#: file names that say what a scan is but not whose: the folder names the subject
_GENERIC_STEMS = {"low", "full", "truth", "labels", "recon", "reconstructed"}


def scan_name(volume: Volume) -> str:
    """A layer name that says which scan it is: the file's name without its suffix, after
    its folder's when the file is only called "full" or "low" (``sub-02 full``); a DICOM
    series adds its description."""
    if volume.path is None:
        return "volume"
    name = volume.path.name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    if name.lower() in _GENERIC_STEMS and volume.path.parent.name:
        name = f"{volume.path.parent.name} {name}"
    description = (volume.extra.get("dicom") or {}).get("SeriesDescription")
    if description:
        name = f"{name} ({description})"
    return name


def volume_to_layer_data(volume: Volume, name: str | None = None) -> tuple:
    """A napari ``LayerDataTuple`` for ``volume`` (image, or labels for label maps)."""
    if name is None:
        name = scan_name(volume)
    kwargs = {
        "name": name,
        "scale": tuple(volume.spacing),
        "units": ("mm", "mm", "mm"),  # napari's spatial units (the scale bar reads them)
        "metadata": layer_metadata(volume),
    }
    if looks_like_labels(volume):
        return (volume.data.astype(np.int32), kwargs, "labels")
    limits = robust_limits(volume.data)
    kwargs["metadata"][AUTO_LIMITS] = limits
    kwargs.update(colormap=PET_COLORMAP, contrast_limits=limits, blending="translucent")
    return (volume.data, kwargs, "image")


def volume_from_layer(data, meta: dict) -> Volume:
    """Rebuild a :class:`Volume` from a layer's data and attributes (as napari's writer gets them).

    Layers without NIfTI metadata (drawn or computed in napari) get a diagonal affine from
    their ``scale``.
    """
    data = np.asarray(data)
    metadata = meta.get("metadata") or {}
    shown = metadata.get(DISPLAY_SCALE)
    if shown:  # shown in SUV: back to the file's units (writers and exports keep those)
        data = data / float(shown)
    scale = tuple(float(s) for s in (meta.get("scale") or (1.0,) * data.ndim))[-3:]
    affine = metadata.get("affine")
    if affine is None:
        affine = affine_from_spacing(scale)
    source = metadata.get("source_path")
    extra = {k: metadata[k] for k in ("suv_factor", "suv_reason", "dicom")
             if metadata.get(k) is not None}
    if extra.get("dicom"):
        extra["format"] = "dicom"
    return Volume(
        data=data,
        spacing=scale,  # type: ignore[arg-type]
        affine=np.asarray(affine, dtype=np.float64),
        units=metadata.get("units"),
        header=metadata.get("nifti_header"),
        path=Path(source) if source else None,
        extra=extra,
    )
