"""Region statistics a PET reader asks for: SUVmax, SUVmean, SUVpeak and the region's volume.

Definitions (docs/metrics.md): SUVmax is the hottest voxel of the region; SUVmean its mean;
SUVpeak the highest mean of a 1 mL sphere (12.4 mm across) whose centre lies in the region,
as PERCIST defines it, so one noisy voxel does not decide it; the volume counts the region's
voxels times the voxel volume. With an SUV factor the values are SUVbw, otherwise they are
in the image's own units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: the SUVpeak sphere's volume (PERCIST: 1 cm^3)
PEAK_ML = 1.0


def sphere_kernel(spacing_zyx: Sequence[float], volume_ml: float = PEAK_ML) -> np.ndarray:
    """A normalised ball of ``volume_ml`` on the voxel grid (at least the centre voxel)."""
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # mm
    half = [max(0, int(radius // s)) for s in spacing_zyx]
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing_zyx, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    ball = (z**2 + y**2 + x**2 <= radius**2).astype(np.float64)
    return ball / ball.sum()


def peak_image(image: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Each voxel's mean over the 1 mL sphere centred on it (SUVpeak = its max in a region);
    computed once per image when many regions are read off it."""
    return ndimage.convolve(np.asarray(image, dtype=np.float64), sphere_kernel(spacing_zyx),
                            mode="nearest")


def roi_stats(image: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float], *,
              suv_factor: float | None = None,
              peak: np.ndarray | None = None) -> dict[str, float | int | None]:
    """Statistics of ``image`` inside boolean ``mask`` (same shape); SUV when a factor is
    given. An empty region gives None values and 0 voxels. ``peak``: the image's
    :func:`peak_image`, when the caller already has it."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and region {mask.shape} differ in shape")
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    n = int(mask.sum())
    if n == 0:
        return {"max": None, "mean": None, "peak": None, "volume_ml": 0.0, "voxels": 0,
                "units": "SUV" if suv_factor else None}
    scale = float(suv_factor) if suv_factor else 1.0
    values = image[mask] * scale
    smooth = peak_image(image, spacing_zyx) if peak is None else peak
    return {"max": float(values.max()), "mean": float(values.mean()),
            "peak": float(smooth[mask].max() * scale), "volume_ml": n * voxel_ml,
            "voxels": n, "units": "SUV" if suv_factor else None}
