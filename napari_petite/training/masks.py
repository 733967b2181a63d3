"""Head mask: where the activity is, so metrics and patch sampling ignore empty background.

Zeros outside the head inflate PSNR and SSIM (docs/metrics.md) and waste training patches;
both use this one definition.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_petite.training.scaling import BACKGROUND_FRACTION


def head_mask(volume: np.ndarray, fraction: float = BACKGROUND_FRACTION) -> np.ndarray:
    """Boolean mask of the largest connected body above ``fraction`` of the robust maximum.

    The volume is smoothed first so noise does not punch holes; holes are then filled.
    """
    data = np.nan_to_num(np.asarray(volume, dtype=np.float32))
    smooth = ndimage.gaussian_filter(data, sigma=1.5)
    top = float(np.percentile(smooth, 99.9))
    if top <= 0:
        return np.zeros(data.shape, dtype=bool)
    mask = smooth > fraction * top
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)
