"""Quantitative fidelity: the numbers a clinician reads off an image, and how far a
reconstruction moves them (docs/metrics.md, *Fidelity*).

Per lesion: SUVmean, SUVmax and SUVpeak (PERCIST 1 mL; ``training/roi.py``) of an image, their
bias (%) against the full-count image and against the truth, and recovery coefficients
(RCmean = mean / true activity, RCmax = max / true activity, as NEMA / EARL read phantom
spheres). Per region: the mean bias of ``training/metrics.regional_bias``. SUVR: posterior
cingulate, precuneus and the hypometabolic region over pons and over cerebellar cortex, the
prediction's ratio against the full-count image's.

:class:`Reference` holds what depends only on the reference (full-count) image, computed once,
so a validation step reads a prediction's summary in a fraction of a second. Data without
labels still gets a summary: :func:`intensity_regions` derives regions and hot spots from the
full-count image (the rule is in its docstring).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_petite.training.masks import head_mask
from napari_petite.training.metrics import regional_bias
from napari_petite.training.roi import peak_image, roi_stats

#: SUVR numerators and denominators (docs/metrics.md)
SUVR_TARGETS = ("posterior cingulate", "precuneus", "hypometabolism")
SUVR_REFERENCES = ("pons", "cerebellar cortex")
#: region names that are lesions (components become lesion instances when no lesions.nii.gz)
LESION_REGIONS = ("hot lesion", "cold lesion")
#: the compact summary validation reports, and whether each is a signed or absolute figure
SUMMARY_KEYS = ("region_abs_bias_pct", "lesion_suvmean_bias_pct", "lesion_suvmax_bias_pct",
                "lesion_suvpeak_bias_pct", "lesion_abs_bias_p90_pct", "suvr_abs_bias_pct")
#: intensity-defined regions for data without labels: head-voxel quantiles of the smoothed
#: full-count image that bound the bands, and the hot-spot threshold and count
BAND_QUANTILES = (1 / 3, 2 / 3)
HOTSPOT_QUANTILE = 0.995
MAX_HOTSPOTS = 10
STATS = ("mean", "max", "peak")


def pct(value: float | None, reference: float | None) -> float:
    """100 (value - reference) / reference; NaN when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return math.nan
    return 100.0 * (value - reference) / reference


def _ids(names: Mapping[int, str], wanted: Sequence[str]) -> dict[str, int]:
    by_name = {v: k for k, v in names.items()}
    return {n: by_name[n] for n in wanted if n in by_name}


def suvr(image: np.ndarray, labels: np.ndarray, names: Mapping[int, str]) -> dict[str, float]:
    """``{"posterior cingulate/pons": ratio, ...}`` for the regions ``labels`` holds."""
    targets, refs = _ids(names, SUVR_TARGETS), _ids(names, SUVR_REFERENCES)
    present = set(np.unique(labels).tolist())
    ids = [i for i in {**targets, **refs}.values() if i in present]
    if not ids:
        return {}
    means = dict(zip(ids, ndimage.mean(np.asarray(image, np.float64), labels, ids),
                     strict=True))
    return {f"{t}/{r}": float(means[ti] / means[ri])
            for t, ti in targets.items() if ti in means
            for r, ri in refs.items() if ri in means and means[ri] != 0}


def instances_from_labels(labels: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """Lesion instances (0 none, k lesion k) as connected components of the lesion regions."""
    ids = list(_ids(names, LESION_REGIONS).values())
    mask = np.isin(labels, ids) if ids else np.zeros(labels.shape, bool)
    instances, _ = ndimage.label(mask)
    return instances.astype(np.int32)


def intensity_regions(full: np.ndarray) -> tuple[np.ndarray, dict[int, str], np.ndarray]:
    """Regions and hot spots of an unlabelled scan, from its full-count image alone.

    The rule (docs/metrics.md): smooth the full-count image with a Gaussian of one voxel; in
    the head mask (``training/masks.py``), the head's voxels split at the 1/3 and 2/3
    quantiles into *low*, *middle* and *high uptake* regions; voxels above the 99.5th
    percentile form hot spots, each connected component one (the ten largest), read as
    lesions. It measures whether a model keeps the image's own levels and its hottest
    structures, which is what a clinician's own data allows without a segmentation.
    """
    smooth = ndimage.gaussian_filter(np.asarray(full, np.float32), 1.0)
    head = head_mask(full)
    labels = np.zeros(full.shape, np.uint8)
    names = {1: "low uptake", 2: "middle uptake", 3: "high uptake"}
    if not head.any():
        return labels, names, np.zeros(full.shape, np.int32)
    inside = smooth[head]
    lo, hi = np.quantile(inside, BAND_QUANTILES)
    labels[head] = np.where(inside < lo, 1, np.where(inside < hi, 2, 3))
    spots, n = ndimage.label(head & (smooth > np.quantile(inside, HOTSPOT_QUANTILE)))
    if n > MAX_HOTSPOTS:
        sizes = ndimage.sum(spots > 0, spots, np.arange(1, n + 1))
        keep = np.argsort(-sizes, kind="stable")[:MAX_HOTSPOTS] + 1
        spots = np.where(np.isin(spots, keep), spots, 0)
        spots, _ = ndimage.label(spots > 0)
    return labels, names, spots.astype(np.int32)


def lesion_stats(image: np.ndarray, instances: np.ndarray, ids: Sequence[int],
                 spacing: Sequence[float]) -> dict[int, dict[str, float]]:
    """SUVmean / SUVmax / SUVpeak (image units) of each lesion instance."""
    peak = peak_image(image, spacing)
    out = {}
    for i in ids:
        s = roi_stats(image, instances == i, spacing, peak=peak)
        out[int(i)] = {k: s[k] for k in STATS}
    return out


@dataclass
class Reference:
    """What a fidelity summary compares against, computed once from the full-count image
    (and the truth, in simulation). Images compared must share its grid and scale."""

    full: np.ndarray
    spacing: tuple[float, float, float]
    labels: np.ndarray
    names: dict[int, str]
    instances: np.ndarray
    regions_from: str  # labels | intensity
    truth: np.ndarray | None = None
    #: true uniform activity of lesion k (image units), when the simulator says it
    activity: dict[int, float] = field(default_factory=dict)
    diameter: dict[int, float] = field(default_factory=dict)
    kind: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = [int(i) for i in np.unique(self.instances) if i != 0]
        self.full_lesions = lesion_stats(self.full, self.instances, self.ids, self.spacing)
        self.truth_lesions = lesion_stats(self.truth, self.instances, self.ids, self.spacing) \
            if self.truth is not None else {}
        self.full_suvr = suvr(self.full, self.labels, self.names)

    @classmethod
    def build(cls, full: np.ndarray, spacing: Sequence[float], *,
              labels: np.ndarray | None = None, names: Mapping[int, str] | None = None,
              instances: np.ndarray | None = None, lesions: Sequence[dict] | None = None,
              truth: np.ndarray | None = None, scale: float = 1.0) -> Reference:
        """From a subject's volumes; no labels: :func:`intensity_regions`. ``lesions``: the
        simulator's list (meta.json) for true activities, divided by ``scale`` like the
        images."""
        spacing = tuple(float(s) for s in spacing)
        if labels is None:
            labels, names, found = intensity_regions(full)
            instances = found if instances is None else instances
            regions_from = "intensity"
        else:
            names = dict(names or {})
            labels = np.asarray(labels).astype(np.int32)
            if instances is None:
                instances = instances_from_labels(labels, names)
            regions_from = "labels"
        ref = cls(np.asarray(full, np.float32), spacing, labels, dict(names),
                  np.asarray(instances).astype(np.int32), regions_from,
                  None if truth is None else np.asarray(truth, np.float32))
        for doc in lesions or ():
            k = int(doc["id"])
            if doc.get("activity_bq_ml") is not None:
                ref.activity[k] = float(doc["activity_bq_ml"]) / scale
            if doc.get("diameter_mm") is not None:
                ref.diameter[k] = float(doc["diameter_mm"])
            ref.kind[k] = str(doc.get("kind", ""))
        return ref

    # -- per lesion ------------------------------------------------------------------------
    def lesion_rows(self, image: np.ndarray) -> list[dict]:
        """One row per lesion: the image's SUVmean / max / peak, the full-count and truth
        values, bias (%) against each, and RCmean / RCmax against the true activity."""
        mine = lesion_stats(image, self.instances, self.ids, self.spacing)
        rows = []
        for k in self.ids:
            row: dict = {"id": k, "kind": self.kind.get(k), "diameter_mm": self.diameter.get(k),
                         "voxels": int((self.instances == k).sum())}
            for stat in STATS:
                row[stat] = mine[k][stat]
                row[f"full_{stat}"] = self.full_lesions[k][stat]
                row[f"{stat}_bias_pct"] = pct(mine[k][stat], self.full_lesions[k][stat])
                if self.truth_lesions:
                    row[f"truth_{stat}"] = self.truth_lesions[k][stat]
                    row[f"{stat}_bias_truth_pct"] = pct(mine[k][stat],
                                                        self.truth_lesions[k][stat])
            true = self.activity.get(k)
            if true:
                row["true_activity"] = true
                row["rc_mean"] = mine[k]["mean"] / true
                row["rc_max"] = mine[k]["max"] / true
            rows.append(row)
        return rows

    # -- the compact summary ---------------------------------------------------------------
    def summary(self, image: np.ndarray, rows: list[dict] | None = None) -> dict[str, float]:
        """The figures validation reports (:data:`SUMMARY_KEYS`; NaN when not measurable):
        mean |regional bias|, mean signed lesion SUVmean / SUVmax / SUVpeak bias, the 90th
        percentile of |lesion SUVmean bias|, mean |SUVR bias|, all in % against full count."""
        regional = regional_bias(image, self.full, self.labels, self.names)
        values = [abs(v) for v in regional.values() if v == v]
        mine = suvr(image, self.labels, self.names)
        suvr_bias = [abs(pct(mine[k], v)) for k, v in self.full_suvr.items() if k in mine]
        return {"region_abs_bias_pct": float(np.mean(values)) if values else math.nan,
                **lesion_figures(self.lesion_rows(image) if rows is None else rows),
                "suvr_abs_bias_pct": float(np.mean(suvr_bias)) if suvr_bias else math.nan}

    def suvr_bias(self, image: np.ndarray) -> dict[str, float]:
        """SUVR bias (%) of ``image`` against the full-count image, per ratio."""
        mine = suvr(image, self.labels, self.names)
        return {k: pct(mine.get(k), v) for k, v in self.full_suvr.items()}


def lesion_figures(rows: Sequence[dict], against: str = "") -> dict[str, float]:
    """Mean signed SUVmean / SUVmax / SUVpeak bias and the 90th percentile of |SUVmean bias|
    over lesion rows (pooled over subjects by the caller); ``against="_truth"`` reads the
    biases against the truth instead of the full-count image. NaN without lesions."""
    def values(stat: str) -> list[float]:
        key = f"{stat}_bias{against}_pct"
        return [r[key] for r in rows if r.get(key) is not None and r[key] == r[key]]

    def mean(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs else math.nan

    means = values("mean")
    return {"lesion_suvmean_bias_pct": mean(means), "lesion_suvmax_bias_pct": mean(values("max")),
            "lesion_suvpeak_bias_pct": mean(values("peak")),
            "lesion_abs_bias_p90_pct": float(np.percentile(np.abs(means), 90)) if means
            else math.nan}


def recovery_by_diameter(rows: Sequence[dict], edges: Sequence[float] = (4, 8, 12, 16, 20.01)
                         ) -> list[dict]:
    """Mean RCmean / RCmax of hot lesions in diameter bins (NEMA / EARL-style curve)."""
    out = []
    for lo, hi in itertools.pairwise(edges):
        sel = [r for r in rows if r.get("kind") == "hot" and r.get("rc_mean") is not None
               and r.get("diameter_mm") is not None and lo <= r["diameter_mm"] < hi]
        out.append({"diameter_lo_mm": lo, "diameter_hi_mm": round(hi), "n": len(sel),
                    "rc_mean": float(np.mean([r["rc_mean"] for r in sel])) if sel else None,
                    "rc_max": float(np.mean([r["rc_max"] for r in sel])) if sel else None})
    return out
