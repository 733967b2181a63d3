"""Random 3D training patches, drawn mostly from inside the head.

PET volumes are largely empty background; patches centred on the head (``head_fraction`` of
them) make every step count, while a few uniform patches keep the network from inventing
activity in the background.

Two options aim at quantitative fidelity (docs/training.md), both off by default and both
drawing only from the sampler's generator, so a resumed run repeats the straight run:

- ``hot_fraction``: that share of patches is centred on the hottest structures of the
  full-count target (voxels of the smoothed image above the head's 99th percentile), found
  from the image, so it works without labels. Lesions are rare and small; an MSE-trained
  network that seldom sees one learns to smooth it away.
- ``augment``: that share of patches gets 1-3 synthetic spheres (4-20 mm, hot 1.5-4x or cold
  0.2-0.6x the local level), blurred to a PET resolution, multiplied into the input and the
  target alike, so the pair's relationship (the same acquisition, fewer counts) is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

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
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: what validation's fidelity summary compares against (training/fidelity.Reference)
    reference: object | None = None
    _hot: np.ndarray | None = field(default=None, repr=False)

    @property
    def hot_voxels(self) -> np.ndarray:
        """Head voxels of the smoothed full-count image above the head's 99th percentile."""
        if self._hot is None:
            smooth = ndimage.gaussian_filter(self.full, 1.0)
            values = smooth[tuple(self.head_voxels.T)]
            hot = self.head_voxels[values > np.quantile(values, HOT_QUANTILE)]
            self._hot = hot if len(hot) else self.head_voxels
        return self._hot


#: the hot-spot threshold of lesion-aware sampling (quantile of the head's voxels)
HOT_QUANTILE = 0.99
#: synthetic spheres: diameters (mm), contrasts, share of hot ones, blur (FWHM, mm)
AUGMENT_DIAMETER_MM = (4.0, 20.0)
AUGMENT_HOT = (1.5, 4.0)
AUGMENT_COLD = (0.2, 0.6)
AUGMENT_HOT_SHARE = 0.7
AUGMENT_FWHM_MM = 5.0


def prepare_pair(name: str, low: np.ndarray, full: np.ndarray,
                 window: Sequence[int], spacing: Sequence[float] = (1.0, 1.0, 1.0)
                 ) -> TrainingPair:
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
    return TrainingPair(name, low_s, full_s, s, voxels.astype(np.int32),
                        tuple(float(v) for v in spacing))  # type: ignore[arg-type]


class PatchSampler:
    """Draws batches of aligned (low, full) windows from a list of :class:`TrainingPair`."""

    def __init__(self, pairs: Sequence[TrainingPair], window: Sequence[int],
                 rng: np.random.Generator, head_fraction: float = 0.9, *,
                 hot_fraction: float = 0.0, augment: float = 0.0):
        if not pairs:
            raise DatasetError("The training set is empty; choose at least one training subject.")
        self.pairs = list(pairs)
        self.window = tuple(int(w) for w in window)
        self.rng = rng
        self.head_fraction = head_fraction
        self.hot_fraction = hot_fraction
        self.augment = augment

    def _start(self, pair: TrainingPair) -> tuple[int, ...]:
        shape = pair.low.shape
        if self.hot_fraction and self.rng.random() < self.hot_fraction:
            centre = pair.hot_voxels[self.rng.integers(len(pair.hot_voxels))]
        elif self.rng.random() < self.head_fraction:
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
            low, full = pair.low[sl], pair.full[sl]
            if self.augment and self.rng.random() < self.augment:
                factor = self._spheres(pair.spacing)
                low, full = low * factor, full * factor
            lows.append(low)
            fulls.append(full)
        return np.stack(lows)[:, None], np.stack(fulls)[:, None]

    def _spheres(self, spacing: Sequence[float]) -> np.ndarray:
        """A multiplicative field of 1-3 blurred spheres on the window (1 elsewhere)."""
        spacing = np.asarray(spacing, dtype=np.float64)
        axes = [(np.arange(w) + 0.5) * d for w, d in zip(self.window, spacing, strict=True)]
        factor = np.ones(self.window, dtype=np.float32)
        sigma = AUGMENT_FWHM_MM / (2.0 * np.sqrt(2.0 * np.log(2.0))) / spacing
        for _ in range(int(self.rng.integers(1, 4))):
            centre = [self.rng.uniform(0.0, a[-1] + d / 2) for a, d in zip(axes, spacing,
                                                                          strict=True)]
            radius = self.rng.uniform(*AUGMENT_DIAMETER_MM) / 2.0
            hot = self.rng.random() < AUGMENT_HOT_SHARE
            contrast = self.rng.uniform(*(AUGMENT_HOT if hot else AUGMENT_COLD))
            inside = ((axes[0][:, None, None] - centre[0]) ** 2
                      + (axes[1][None, :, None] - centre[1]) ** 2
                      + (axes[2][None, None, :] - centre[2]) ** 2) <= radius ** 2
            blurred = ndimage.gaussian_filter(inside.astype(np.float32), sigma)
            factor *= (1.0 + (contrast - 1.0) * blurred).astype(np.float32)
        return factor
