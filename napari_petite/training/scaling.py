"""Intensity scaling that keeps quantitation (Bq/mL or SUV in, same units out).

The network sees ``input / s`` and learns to predict ``target / s`` where ``s`` is a robust
statistic of the *input* only (a high percentile of the head's voxels). The output is
multiplied by ``s`` again, so reconstructed volumes come back in the input's units.

Why not the paper's per-volume min-max: it normalises the target by the target's own range,
which does not exist at inference time; a max is set by a few noisy voxels (and the low-count
max is higher than the full-count max, so the two are scaled differently); and the result is in
arbitrary units, so SUVs and regional quantitation are lost. A percentile of the input is
stable under noise, is available at inference, and keeps the input-to-target ratio — what a
denoiser must learn — unchanged.
"""

from __future__ import annotations

import numpy as np

from napari_petite.errors import InputError

#: percentile of the voxels above the background used as the scale
PERCENTILE = 99.5
#: voxels above this fraction of the volume's 99.9th percentile count as "inside the head"
BACKGROUND_FRACTION = 0.05


def robust_scale(volume: np.ndarray) -> float:
    """A noise-robust intensity scale of ``volume`` (its 99.5th percentile above background)."""
    data = np.asarray(volume, dtype=np.float32)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise InputError("The volume has no finite voxels; it cannot be scaled.")
    top = float(np.percentile(finite, 99.9))
    if top <= 0:
        raise InputError(
            "The volume is zero or negative everywhere; a PET activity volume needs positive "
            "values. Check that the right file was chosen."
        )
    inside = finite[finite > BACKGROUND_FRACTION * top]
    return float(np.percentile(inside, PERCENTILE))


def scale_pair(low: np.ndarray, full: np.ndarray | None = None):
    """Divide ``low`` (and ``full``) by the robust scale of ``low``; return (low, full, s)."""
    s = robust_scale(low)
    low_s = (np.asarray(low, dtype=np.float32) / s).astype(np.float32)
    full_s = None if full is None else (np.asarray(full, dtype=np.float32) / s).astype(np.float32)
    return low_s, full_s, s
