"""The fidelity check a reader runs before trusting a model's numbers (Reconstruct & compare
→ *Fidelity check*; docs/metrics.md, *Fidelity check*).

On the target's validation subjects, the low-count input, the base model and the chosen model
are each measured against the full-count image (``training/fidelity.py``), and the result is
said in counts a reader can weigh: "lesion SUVmean within ±5 % of full count: 28 of 30
lesions". A model is *less faithful* than another image when its mean |regional bias|, its
mean |lesion SUVmean bias| or its mean |SUVR bias| is larger by more than :data:`WORSE_BY_PCT`
points; the check warns when a model is less faithful than the input, or an adapted model
than the base.
No Qt here: the dock runs :func:`check_models` in a worker and shows the check's heading,
key sentence, table and warnings; the report draws the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: (what, lesion row key, tolerance %): SUVmean and SUVpeak at the ±5 % a decision can bear;
#: SUVmax at ±10 %, its test-retest reproducibility (one voxel, noisy even at full count)
LESION_TOLERANCES = (("lesion SUVmean", "mean_bias_pct", 5.0),
                     ("lesion SUVmax", "max_bias_pct", 10.0),
                     ("lesion SUVpeak", "peak_bias_pct", 5.0))
#: a region's mean uptake and an SUVR within these of full count count as kept
REGION_TOLERANCE_PCT = 5.0
SUVR_TOLERANCE_PCT = 2.0
#: the table's row labels where a tally's words are too long for a narrow dock
SHORT = {"regional mean uptake": "region means"}
#: "less faithful": a mean |bias| larger than the other image's by more than this (points)
WORSE_BY_PCT = 1.0
#: roles of the images a check measures
INPUT, BASE, ADAPTED = "input", "base", "adapted"


@dataclass(frozen=True)
class Tally:
    """How many of ``total`` measurements an image keeps within ``tolerance_pct``."""

    what: str
    tolerance_pct: float
    within: int
    total: int
    unit: str

    def text(self) -> str:
        return (f"{self.what} within ±{self.tolerance_pct:g} % of full count: "
                f"{self.within} of {self.total} {self.unit}")


def _count(values: Sequence[float], tolerance: float) -> tuple[int, int]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return int(sum(abs(v) <= tolerance for v in finite)), len(finite)  # JSON-able


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def region_abs_bias(subjects: Sequence[dict]) -> float:
    """Mean over subjects of each subject's mean |regional bias| (%)."""
    return _mean([s["summary"]["region_abs_bias_pct"] for s in subjects])


def pooled_figures(subjects: Sequence[dict]) -> dict[str, Any]:
    """Figures of one image over subjects (rows of ``evaluation.fidelity_of_image``):
    lesions pooled, PSNR / SSIM and mean |regional bias| averaged over subjects."""
    from napari_petite.training.fidelity import lesion_figures

    lesions = [r for s in subjects for r in s["lesions"]]
    figures = lesion_figures(lesions)
    return {"psnr": _mean([s["psnr"] for s in subjects]),
            "ssim": _mean([s["ssim"] for s in subjects]),
            "n_subjects": len(subjects), "n_lesions": len(lesions),
            **{k: figures[k] for k in ("lesion_suvmean_bias_pct", "lesion_abs_bias_p90_pct",
                                       "lesion_suvmax_bias_pct", "lesion_suvpeak_bias_pct")},
            "region_mean_abs_bias_pct": region_abs_bias(subjects)}


@dataclass
class ImageFidelity:
    """One image's fidelity over the checked subjects (the input, or a model's
    reconstruction): its per-subject rows and what they add up to."""

    name: str
    role: str  # input | base | adapted
    subjects: list[dict] = field(default_factory=list)

    @property
    def lesions(self) -> list[dict]:
        return [r for s in self.subjects for r in s["lesions"]]

    def tallies(self) -> list[Tally]:
        """Lesions, regions and SUVRs kept within their tolerances (none when unmeasured)."""
        out = []
        for what, key, tol in LESION_TOLERANCES:
            within, total = _count([r.get(key) for r in self.lesions], tol)
            if total:
                out.append(Tally(what, tol, within, total, "lesions"))
        regions = [v for s in self.subjects for v in s["regional_bias_pct"].values()]
        within, total = _count(regions, REGION_TOLERANCE_PCT)
        if total:
            out.append(Tally("regional mean uptake", REGION_TOLERANCE_PCT, within, total,
                             "regions"))
        ratios = [v for s in self.subjects for v in s["suvr_bias_pct"].values()]
        within, total = _count(ratios, SUVR_TOLERANCE_PCT)
        if total:
            out.append(Tally("SUVR", SUVR_TOLERANCE_PCT, within, total, "ratios"))
        return out

    @property
    def region_abs_bias(self) -> float:
        return region_abs_bias(self.subjects)

    @property
    def lesion_abs_bias(self) -> float:
        """Mean |lesion SUVmean bias| (%) over the pooled lesions."""
        return _mean([abs(r["mean_bias_pct"]) for r in self.lesions
                      if r.get("mean_bias_pct") is not None])

    @property
    def suvr_abs_bias(self) -> float:
        """Mean |SUVR bias| (%) over every ratio of every subject."""
        return _mean([abs(v) for s in self.subjects for v in s["suvr_bias_pct"].values()
                      if v is not None])

    def figures(self) -> dict[str, Any]:
        return {**pooled_figures(self.subjects), "lesion_abs_bias_pct": self.lesion_abs_bias,
                "suvr_abs_bias_pct": self.suvr_abs_bias}


def less_faithful(image: ImageFidelity, other: ImageFidelity) -> list[str]:
    """The ways ``image`` is less faithful than ``other`` (empty: it is not): each says the
    two figures, e.g. "mean |regional bias| 5.8 % against 2.0 %"."""
    out = []
    for what, mine, theirs in (("mean |regional bias|", image.region_abs_bias,
                                other.region_abs_bias),
                               ("mean |lesion SUVmean bias|", image.lesion_abs_bias,
                                other.lesion_abs_bias),
                               ("mean |SUVR bias|", image.suvr_abs_bias, other.suvr_abs_bias)):
        if math.isfinite(mine) and math.isfinite(theirs) and mine > theirs + WORSE_BY_PCT:
            out.append(f"{what} {mine:.1f} % against {theirs:.1f} %")
    return out


@dataclass
class FidelityCheck:
    """The check of one model (and the base, and the input) on some subjects of a scanner."""

    scanner: str
    subject_ids: list[str]
    images: list[ImageFidelity]
    regions_from: str = "labels"  # labels | intensity (data without labels)

    def image(self, role: str) -> ImageFidelity | None:
        return next((i for i in self.images if i.role == role), None)

    def warnings(self) -> list[str]:
        """One sentence per model less faithful than the input, or (adapted) than the base."""
        out = []
        reference = [r for r in (self.image(INPUT), self.image(BASE)) if r is not None]
        for image in self.images:
            if image.role == INPUT:
                continue
            for other in reference:
                if other is image or (image.role == BASE and other.role == BASE):
                    continue
                ways = less_faithful(image, other)
                if ways:
                    what = "the low-count input" if other.role == INPUT else f"the {other.name}"
                    out.append(f"⚠ {image.name} is less faithful than {what}: "
                               f"{'; '.join(ways)}. Read uptake values on the full-count "
                               "scan, not on this reconstruction.")
        return out

    def heading(self) -> str:
        n = len(self.subject_ids)
        where = "" if self.regions_from == "labels" else \
            " (no labels: regions and hot spots from the full-count image's uptake)"
        return (f"Fidelity on {n} validation subject{'s' * (n != 1)} of {self.scanner} "
                f"({', '.join(self.subject_ids)}), against full count{where}:")

    def table(self) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """Column heads (one per image) and rows (label, one cell per image): each tally as
        "28 of 30" within the tolerance of full count, and the mean |bias| figures (|lesion
        bias|: SUVmean), for the dock and the report alike."""
        heads = [i.name for i in self.images]
        tallies = [{(t.what, t.tolerance_pct): t for t in i.tallies()} for i in self.images]
        keys = list(dict.fromkeys(k for t in tallies for k in t))
        rows = []
        for what, tol in keys:
            cells = [f"{t[(what, tol)].within} of {t[(what, tol)].total}"
                     if (what, tol) in t else "-" for t in tallies]
            rows.append((f"{SHORT.get(what, what)} ±{tol:g} %", cells))
        for label, attr in (("mean |region bias| %", "region_abs_bias"),
                            ("mean |lesion bias| %", "lesion_abs_bias"),
                            ("mean |SUVR bias| %", "suvr_abs_bias")):
            values = [getattr(i, attr) for i in self.images]
            if any(math.isfinite(v) for v in values):
                rows.append((label, [f"{v:.1f}" if math.isfinite(v) else "-" for v in values]))
        return heads, rows

    def key_sentence(self) -> str:
        """The chosen model's lesion SUVmean tally (else its first), as a reader says it."""
        image = self.images[-1]
        tallies = image.tallies()
        return f"{image.name}: {tallies[0].text()}" if tallies else \
            f"{image.name}: nothing measurable on these subjects"

    def to_dict(self) -> dict[str, Any]:
        return {"scanner": self.scanner, "subjects": self.subject_ids,
                "regions_from": self.regions_from,
                "images": [{"name": i.name, "role": i.role, **i.figures(),
                            "tallies": [t.__dict__ for t in i.tallies()]} for i in self.images],
                "warnings": self.warnings()}


class CheckStopped(Exception):
    """The check was stopped between two reconstructions."""


def check_models(models: Mapping[str, tuple[str, Any]], scanner, ids: Sequence[str], *,
                 device=None, should_stop: Callable[[], bool] | None = None,
                 on_subject: Callable[[int, int], None] | None = None) -> FidelityCheck:
    """Measure the low-count input and each model (``name -> (role, model)``, role
    :data:`BASE` or :data:`ADAPTED`) on subjects ``ids`` of ``scanner`` (a dataset
    ``Scanner``); raises :class:`CheckStopped` when ``should_stop`` says so."""
    from napari_petite.errors import ConfigError
    from napari_petite.io.volumes import read_any
    from napari_petite.training.evaluation import fidelity_of_image, subject_reference
    from napari_petite.training.inference import Stopped, predict_volume

    if not ids:
        raise ConfigError(f"{scanner.id} has no validation subject to check on; give the "
                          "split at least one in 'Scanner data'.")
    images = [ImageFidelity("low-count", INPUT)] + \
        [ImageFidelity(name, role) for name, (role, _) in models.items()]
    regions_from = "labels"
    for k, sid in enumerate(ids):
        subject = scanner.subject(sid)
        ref = subject_reference(subject)
        regions_from = ref.regions_from
        low = read_any(subject.low).data
        if low.shape != ref.full.shape:
            raise ConfigError(f"{scanner.id}/{sid}: the low-count scan has shape {low.shape} "
                              f"but the full-count one {ref.full.shape}; fix the dataset.")
        images[0].subjects.append(fidelity_of_image(sid, ref, low))
        for image, (_role, model) in zip(images[1:], models.values(), strict=True):
            try:
                recon = predict_volume(model, low, device=device, should_stop=should_stop)
            except Stopped:
                raise CheckStopped from None
            image.subjects.append(fidelity_of_image(sid, ref, recon))
        if on_subject is not None:
            on_subject(k + 1, len(ids))
    return FidelityCheck(scanner.id, list(ids), images, regions_from)
