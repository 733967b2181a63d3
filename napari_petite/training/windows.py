"""Fitting whole volumes to the network's fixed window (patch) size.

Training crops windows from volumes and inference tiles them; both must agree on what a
volume too small for the window means. A volume a little smaller than the window (e.g. 48
slices for a 64-slice window) is padded with zeros (PET background); one smaller than half the
window would be mostly padding, so it is refused with a sentence saying which axis and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_petite.errors import InputError

AXES = ("z (slices)", "y", "x")


def check_fits(shape: Sequence[int], window: Sequence[int], what: str = "The volume") -> None:
    """Refuse volumes smaller than half the window along any axis."""
    for axis, size, win in zip(AXES, shape, window, strict=True):
        if size * 2 < win:
            raise InputError(
                f"{what} has {size} voxels along {axis}, less than half the network's window "
                f"of {win}; use a larger volume or a model preset with a smaller window "
                f"(window is {tuple(window)})."
            )


def pad_to_window(volume: np.ndarray, window: Sequence[int]) -> tuple[np.ndarray, tuple]:
    """Zero-pad ``volume`` symmetrically to at least ``window``; return it and the crop slices."""
    pads, crop = [], []
    for size, win in zip(volume.shape, window, strict=True):
        extra = max(0, win - size)
        before = extra // 2
        pads.append((before, extra - before))
        crop.append(slice(before, before + size))
    if not any(p != (0, 0) for p in pads):
        return volume, tuple(crop)
    return np.pad(volume, pads, mode="constant"), tuple(crop)


def n_windows(shape: Sequence[int], window: Sequence[int], overlap: float) -> int:
    """Number of windows MONAI's sliding-window inference visits for this shape."""
    total = 1
    for size, win in zip(shape, window, strict=True):
        size = max(size, win)
        interval = win if size == win else max(int(win * (1 - overlap)), 1)
        total *= 1 if size <= win else math.ceil((size - win) / interval) + 1
    return total
