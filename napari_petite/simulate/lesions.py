"""Spherical lesions with exactly known activity, inserted into a phantom before the scan.

A lesion-insertion subject carries N non-overlapping spheres (4-20 mm across), hot ones at
1.5-8x the subject's grey-matter level and cold ones at 0.1-0.4x the tissue around them,
centred in grey or in white matter, inside the brain, apart from each other, from the brain's
edge and from the regions SUVR is read in. They are inserted on the simulation grid (finer
than the output grid, with each voxel's fraction of sphere computed by sub-sampling) before
projection, so the low- and full-count scans see them through the same physics and the truth
image's partial-volume edge is exact. Why here and not in the phantom: the phantom lives on a
2 mm template grid, on which a 4 mm sphere is one voxel; the scanner grid holds it to the
sub-voxel.

Each lesion is uniform inside its sphere (``activity_bq_ml``), so a recovery coefficient
(measured / true mean) is defined exactly, as with the NEMA / IEC phantom spheres.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_petite.errors import ConfigError
from napari_petite.simulate.anatomy import LABEL_ID

#: lesion diameters (mm)
DIAMETER_MM = (4.0, 20.0)
#: hot lesions: multiples of the subject's grey-matter level
HOT_CONTRAST = (1.5, 8.0)
#: cold lesions: multiples of the tissue level around them (well below it)
COLD_CONTRAST = (0.1, 0.4)
#: share of hot lesions (the oncology question: does the hot spot survive denoising)
HOT_SHARE = 0.7
#: clearance between two spheres' surfaces, and from a sphere to the brain's edge (mm)
GAP_MM = 4.0
EDGE_MM = 3.0
#: tissues a lesion may be centred in
TISSUES = ("grey matter", "white matter")
#: regions lesions keep clear of, so regional SUVR (target and reference regions) is read on
#: the anatomy alone
AVOID = ("pons", "cerebellar cortex", "posterior cingulate", "precuneus", "hypometabolism")
#: labels that count as brain (everything inside the skull)
BRAIN = tuple(range(1, 14))
#: sub-samples per axis when computing a voxel's fraction of sphere
SUBSAMPLES = 4
#: the most lesions one subject can hold (a small brain runs out of room beyond this)
MAX_LESIONS = 40


@dataclass(frozen=True)
class Lesion:
    """One inserted sphere: where (scanner mm, x y z), how big, how hot, its true activity."""

    id: int
    centre_mm: tuple[float, float, float]
    diameter_mm: float
    kind: str  # hot | cold
    tissue: str  # grey matter | white matter
    contrast: float  # hot: x grey-matter level; cold: x the surrounding tissue's level
    activity_bq_ml: float

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["centre_mm"] = [round(c, 3) for c in self.centre_mm]
        out["diameter_mm"] = round(self.diameter_mm, 3)
        out["contrast"] = round(self.contrast, 4)
        out["activity_bq_ml"] = round(self.activity_bq_ml, 3)
        out["contrast_reference"] = ("grey matter" if self.kind == "hot" else self.tissue)
        return out


def parse_count(value: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"12"`` -> (12, 12); ``"8:16"`` -> (8, 16); None or 0 -> None (no lesions)."""
    if value is None:
        return None
    if isinstance(value, tuple):
        lo, hi = value
    elif isinstance(value, int):
        lo = hi = value
    else:
        text = str(value).strip()
        first, sep, second = text.partition(":")
        try:
            lo = int(first)
            hi = int(second) if sep else lo
        except ValueError:
            raise ConfigError(f"--lesions must be a count N or a range MIN:MAX, not {text!r}."
                              ) from None
    if lo < 0 or hi < lo or hi > MAX_LESIONS:
        raise ConfigError(f"--lesions must be between 0 and {MAX_LESIONS} with MIN <= MAX, "
                          f"not {lo}:{hi}.")
    return None if hi == 0 else (lo, hi)


def voxel_centres_mm(shape_zyx, spacing_zyx) -> list[np.ndarray]:
    """Scanner mm (x, y, z) of voxel centres along each axis of a grid centred on the axis
    (the convention of ``scan.grid_affine``), returned in (z, y, x) axis order."""
    return [(np.arange(n) - (n - 1) / 2.0) * d
            for n, d in zip(shape_zyx, spacing_zyx, strict=True)]


def draw_lesions(rng: np.random.Generator, labels: np.ndarray, spacing_zyx, count: int, *,
                 gm_level: float, wm_level: float) -> list[Lesion]:
    """Place ``count`` lesions on the output grid's ``labels`` (uint8, z y x).

    Sizes are drawn first and placed largest first (a big sphere needs the deep room), the
    tissue alternates from a random start (so grey and white matter are both used), and each
    centre is drawn among the voxels of that tissue far enough from the brain's edge, the
    avoided regions and the lesions already placed. Raises ConfigError when they do not fit.
    """
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    brain = np.isin(labels, BRAIN)
    to_edge = ndi.distance_transform_edt(brain, sampling=spacing)
    avoid = np.isin(labels, [LABEL_ID[n] for n in AVOID])
    to_avoid = ndi.distance_transform_edt(~avoid, sampling=spacing) if avoid.any() \
        else np.full(labels.shape, np.inf)
    axes = voxel_centres_mm(labels.shape, spacing)
    diameters = sorted((float(rng.uniform(*DIAMETER_MM)) for _ in range(count)), reverse=True)
    first = int(rng.integers(2))
    placed: list[Lesion] = []
    for k, diameter in enumerate(diameters):
        tissue = TISSUES[(first + k) % 2]
        radius = diameter / 2.0
        ok = (labels == LABEL_ID[tissue]) & (to_edge >= radius + EDGE_MM) \
            & (to_avoid >= radius + GAP_MM)
        idx = np.argwhere(ok)
        if len(idx):
            pos = np.stack([axes[2][idx[:, 2]], axes[1][idx[:, 1]], axes[0][idx[:, 0]]], 1)
            for other in placed:
                gap = np.linalg.norm(pos - np.asarray(other.centre_mm), axis=1) \
                    - other.radius_mm - radius
                keep = gap >= GAP_MM
                pos = pos[keep]
        else:
            pos = np.zeros((0, 3))
        if not len(pos):
            raise ConfigError(f"Only {len(placed)} of {count} lesions fit in this subject's "
                              "brain apart from each other; ask for fewer with --lesions.")
        centre = pos[int(rng.integers(len(pos)))]
        centre = centre + rng.uniform(-0.5, 0.5, size=3) * spacing[::-1]  # off the voxel grid
        hot = bool(rng.random() < HOT_SHARE)
        if hot:
            contrast = float(rng.uniform(*HOT_CONTRAST))
            activity = contrast * gm_level
        else:
            contrast = float(rng.uniform(*COLD_CONTRAST))
            activity = contrast * (gm_level if tissue == "grey matter" else wm_level)
        placed.append(Lesion(len(placed) + 1, tuple(float(c) for c in centre), diameter,
                             "hot" if hot else "cold", tissue, contrast, activity))
    return placed


def _box(lesion: Lesion, axes_zyx: list[np.ndarray], margin_mm: float) -> tuple[slice, ...]:
    """Index ranges of the voxels that can touch ``lesion`` (z, y, x)."""
    out = []
    for axis, c in zip(axes_zyx, lesion.centre_mm[::-1], strict=True):
        inside = np.nonzero(np.abs(axis - c) <= lesion.radius_mm + margin_mm)[0]
        out.append(slice(int(inside[0]), int(inside[-1]) + 1) if len(inside) else slice(0, 0))
    return tuple(out)


def sphere_fraction(lesion: Lesion, shape_zyx, spacing_zyx,
                    subsamples: int = SUBSAMPLES) -> tuple[tuple[slice, ...], np.ndarray]:
    """Each voxel's fraction inside the sphere, within the sphere's bounding box."""
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    axes = voxel_centres_mm(shape_zyx, spacing)
    box = _box(lesion, axes, float(spacing.max()))
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    sub = [(axis[b][:, None] + offsets[None, :] * d).ravel()
           for axis, b, d in zip(axes, box, spacing, strict=True)]
    cz, cy, cx = lesion.centre_mm[::-1]
    inside = ((sub[0][:, None, None] - cz) ** 2 + (sub[1][None, :, None] - cy) ** 2
              + (sub[2][None, None, :] - cx) ** 2) <= lesion.radius_mm ** 2
    n = [len(axis[b]) for axis, b in zip(axes, box, strict=True)]
    frac = inside.reshape(n[0], subsamples, n[1], subsamples, n[2], subsamples).mean(
        axis=(1, 3, 5))
    return box, frac.astype(np.float32)


def insert(activity: np.ndarray, spacing_zyx, lesions: list[Lesion]) -> np.ndarray:
    """``activity`` with each sphere set to its uniform activity (partial voxels mixed)."""
    out = np.array(activity, dtype=np.float32, copy=True)
    for lesion in lesions:
        box, frac = sphere_fraction(lesion, out.shape, spacing_zyx)
        out[box] = (1.0 - frac) * out[box] + frac * np.float32(lesion.activity_bq_ml)
    return out


def label_volume(shape_zyx, spacing_zyx, lesions: list[Lesion]) -> np.ndarray:
    """Instance labels on a grid: voxel = k where its centre lies in lesion k (the voxel
    nearest the centre when a small sphere holds no voxel centre)."""
    out = np.zeros(tuple(shape_zyx), dtype=np.uint8)
    axes = voxel_centres_mm(shape_zyx, spacing_zyx)
    for lesion in lesions:
        box, frac = sphere_fraction(lesion, shape_zyx, spacing_zyx, subsamples=1)
        mask = frac > 0.5
        if not mask.any():
            nearest = tuple(int(np.argmin(np.abs(axis - c)))
                            for axis, c in zip(axes, lesion.centre_mm[::-1], strict=True))
            out[nearest] = lesion.id
            continue
        out[box][mask] = lesion.id
    return out


def mark_labels(labels: np.ndarray, instances: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """The region label map with each lesion's voxels set to *hot lesion* / *cold lesion*."""
    out = labels.copy()
    for lesion in lesions:
        out[instances == lesion.id] = LABEL_ID[f"{lesion.kind} lesion"]
    return out


def describe(lesions: list[Lesion], instances: np.ndarray, truth: np.ndarray,
             spacing_zyx) -> list[dict]:
    """meta.json's lesion list: each lesion with its voxels and its true mean on the grid."""
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    out = []
    for lesion in lesions:
        mask = instances == lesion.id
        doc = lesion.to_dict()
        doc["voxels"] = int(mask.sum())
        doc["volume_ml"] = round(4.0 / 3.0 * math.pi * lesion.radius_mm ** 3 / 1000.0, 5)
        doc["label_volume_ml"] = round(doc["voxels"] * voxel_ml, 5)
        doc["truth_mean_bq_ml"] = round(float(truth[mask].mean()), 3) if mask.any() else None
        out.append(doc)
    return out
