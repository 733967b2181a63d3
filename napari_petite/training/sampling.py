"""Random 3D training patches, drawn mostly from inside the head.

PET volumes are largely empty background; patches centred on the head (``head_fraction`` of
them) make every step count, while a few uniform patches keep the network from inventing
activity in the background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_petite.errors import DatasetError, InputError
from napari_petite.training.masks import head_mask
from napari_petite.training.scaling import scale_pair
from napari_petite.training.windows import check_fits, pad_to_window


@dataclass
class TrainingPair:
    """A scaled (low, full) pair ready for patch sampling, with its head voxels."""

    name: str
    low: np.ndarray
    full: np.ndarray
    scale: float
    head_voxels: np.ndarray  # (N, 3) int coordinates inside the head


def prepare_pair(name: str, low: np.ndarray, full: np.ndarray,
                 window: Sequence[int]) -> TrainingPair:
    """Scale by the input's robust statistic, pad to the window, and index the head voxels."""
    if low.shape != full.shape:
        raise DatasetError(f"{name}: low-count {low.shape} and full-count {full.shape} volumes "
                           "differ in shape; they must be on the same voxel grid.")
    check_fits(low.shape, window, what=f"{name}")
    try:
        low_s, full_s, s = scale_pair(low, full)
    except InputError as err:  # say which subject: a dataset has many
        raise InputError(f"{name}: {err}") from None
    low_s, _ = pad_to_window(low_s, window)
    full_s, _ = pad_to_window(full_s, window)
    voxels = np.argwhere(head_mask(low_s))
    if len(voxels) == 0:
        voxels = np.argwhere(np.ones(low_s.shape, dtype=bool))
    return TrainingPair(name, low_s, full_s, s, voxels.astype(np.int32))


class PatchSampler:
    """Draws batches of aligned (low, full) windows from a list of :class:`TrainingPair`."""

    def __init__(self, pairs: Sequence[TrainingPair], window: Sequence[int],
                 rng: np.random.Generator, head_fraction: float = 0.9):
        if not pairs:
            raise DatasetError("The training set is empty; choose at least one training subject.")
        self.pairs = list(pairs)
        self.window = tuple(int(w) for w in window)
        self.rng = rng
        self.head_fraction = head_fraction

    def _start(self, pair: TrainingPair) -> tuple[int, ...]:
        shape = pair.low.shape
        if self.rng.random() < self.head_fraction:
            centre = pair.head_voxels[self.rng.integers(len(pair.head_voxels))]
        else:
            centre = [self.rng.integers(n) for n in shape]
        return tuple(
            int(np.clip(c - w // 2, 0, n - w))
            for c, w, n in zip(centre, self.window, shape, strict=True)
        )

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Two float32 arrays of shape (B, 1, D, H, W): inputs and targets."""
        lows, fulls = [], []
        for _ in range(batch_size):
            pair = self.pairs[self.rng.integers(len(self.pairs))]
            start = self._start(pair)
            sl = tuple(slice(s, s + w) for s, w in zip(start, self.window, strict=True))
            lows.append(pair.low[sl])
            fulls.append(pair.full[sl])
        return np.stack(lows)[:, None], np.stack(fulls)[:, None]
