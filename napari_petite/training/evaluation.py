"""Evaluate a model on dataset subjects: low vs full, reconstruction vs full (and vs truth).

Shared by ``petite evaluate``, ``petite sweep``, the benchmarks and the napari compare dock
(its metrics table and its batch export) so the numbers in the leaderboard, the CLI and the
GUI come from one definition (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from napari_petite.io.dataset import Scanner, Subject
from napari_petite.training.masks import head_mask
from napari_petite.training.metrics import compare

#: label ids written by the sample-data simulator -> region names (sidecar may override)
SUMMARY_KEYS = ("psnr_mask", "ssim_mask", "nrmse_mask", "psnr", "ssim", "nrmse")


def label_names(meta: dict | None) -> dict[int, str]:
    """Region names of a subject's label map from its meta.json (``{"labels": {id: name}}``)."""
    names = meta.get("labels") if isinstance(meta, dict) else None
    out: dict[int, str] = {}
    if isinstance(names, dict):
        for key, value in names.items():
            try:
                out[int(key)] = str(value)
            except (TypeError, ValueError):
                continue
    return out


def compare_to_full(low: np.ndarray, recons: dict[str, np.ndarray], full: np.ndarray, *,
                    labels: np.ndarray | None = None, names: dict[int, str] | None = None,
                    truth: np.ndarray | None = None) -> dict:
    """Low-count and every reconstruction against the full-count image (head mask from the
    full-count image), and against the truth when given: ``{"low": ..., name: ...,
    "low_vs_truth": ..., name + "_vs_truth": ...}``."""
    mask = head_mask(full)

    def against(image, reference):
        return compare(image, reference, mask=mask, labels=labels, label_names=names)

    out = {"low": against(low, full)}
    out.update({name: against(image, full) for name, image in recons.items()})
    if truth is not None:
        out["low_vs_truth"] = against(low, truth)
        out.update({f"{name}_vs_truth": against(image, truth) for name, image in recons.items()})
    return out


def evaluate_subject(model, subject: Subject, *, device=None, progress=None,
                     should_stop=None, recon=None) -> dict:
    """Metrics of one subject; returns {"low": {...}, "recon": {...}, "recon_vs_truth": {...}}.

    ``recon``: an already computed reconstruction of the subject (``model`` is then unused).
    """
    from napari_petite.io.nifti import read_volume
    from napari_petite.io.volumes import read_any
    from napari_petite.training.inference import predict_volume

    low, full = read_any(subject.low), read_any(subject.full)
    labels = read_volume(subject.labels).data if subject.labels else None
    truth = read_volume(subject.truth).data if subject.truth else None
    if recon is None:
        recon = predict_volume(model, low.data, device=device, progress=progress,
                               should_stop=should_stop)
    row = compare_to_full(low.data, {"recon": recon}, full.data, labels=labels,
                          names=label_names(subject.meta), truth=truth)
    return {"subject": subject.id, **row}


def export_subjects(model, scanner: Scanner, ids: Sequence[str], folder, *, description: str,
                    should_stop=None, on_subject: Callable[[int, int], None] | None = None
                    ) -> Path | None:
    """Reconstruct ``ids`` into ``folder/<scanner>/<id>_reconstructed.nii.gz`` (the input's
    geometry and units) and write ``metrics.json`` with every subject's metrics and their mean.

    Returns the folder, or None when ``should_stop`` stopped it (finished volumes are whole
    files and stay; no metrics.json is written for a partial set).
    """
    import json

    from napari_petite.io.atomic import check_not_input, write_text
    from napari_petite.io.nifti import write_like
    from napari_petite.io.volumes import read_any
    from napari_petite.training.inference import Stopped, predict_volume

    out = Path(folder).expanduser() / scanner.id
    dataset = scanner.path.parent
    check_not_input(out, [dataset])  # before any work: never into the data it reads
    rows = []
    for k, sid in enumerate(ids):
        subject = scanner.subject(sid)
        low = read_any(subject.low)
        try:
            recon = predict_volume(model, low.data, should_stop=should_stop)
        except Stopped:
            return None
        path = write_like(out / f"{sid}_reconstructed.nii.gz", recon, low,
                          inputs=[subject.low, subject.full, dataset])
        rows.append({"file": str(path), **evaluate_subject(model, subject, recon=recon)})
        if on_subject is not None:
            on_subject(k + 1, len(ids))
    doc = {"model": description, "scanner": scanner.id, "subjects": rows,
           "mean": summarise(rows)}
    write_text(out / "metrics.json", json.dumps(doc, indent=2, default=float) + "\n",
               inputs=[dataset], overwrite=True)
    return out


def evaluate_subjects(model, scanner: Scanner, ids: Sequence[str], *, device=None,
                      on_subject: Callable[[str], None] | None = None) -> dict:
    """Per-subject rows and their means (head-mask and whole-volume metrics)."""
    rows = []
    for sid in ids:
        if on_subject is not None:
            on_subject(sid)
        rows.append(evaluate_subject(model, scanner.subject(sid), device=device))
    return {"subjects": rows, "mean": summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    """Mean of every scalar metric over subjects, per comparison (low, recon, ...)."""
    out: dict[str, dict[str, float]] = {}
    for kind in ("low", "recon", "recon_vs_truth", "low_vs_truth"):
        present = [r[kind] for r in rows if kind in r]
        if present:
            out[kind] = {k: float(np.mean([p[k] for p in present if k in p]))
                         for k in SUMMARY_KEYS if any(k in p for p in present)}
            regions = sorted({name for p in present for name in p.get("regional_bias_pct", {})})
            if regions:
                out[kind]["regional_bias_pct"] = {
                    name: float(np.nanmean([p["regional_bias_pct"].get(name, np.nan)
                                            for p in present]))
                    for name in regions
                }
    return out


def subject_reference(subject: Subject):
    """The fidelity reference of a dataset subject (``training/fidelity.Reference``): its
    full-count image, labels, lesion instances and, in simulation, truth and true activities."""
    from napari_petite.io.nifti import read_volume
    from napari_petite.io.volumes import read_any
    from napari_petite.training.fidelity import Reference

    full = read_any(subject.full)
    return Reference.build(
        full.data, full.spacing, labels=read_volume(subject.labels).data if subject.labels
        else None, names=label_names(subject.meta),
        instances=read_volume(subject.lesions).data if subject.lesions else None,
        lesions=(subject.meta or {}).get("lesions"),
        truth=read_volume(subject.truth).data if subject.truth else None)


def fidelity_of_image(subject_id: str, ref, image: np.ndarray) -> dict:
    """How faithfully ``image`` (a reconstruction, or the low-count scan) keeps the numbers of
    the subject whose reference is ``ref`` (:func:`subject_reference`): PSNR / SSIM in the
    head, the compact summary, every lesion's row, regional and SUVR bias against the
    full-count image (and lesion biases against the truth where the subject has one)."""
    rows = ref.lesion_rows(image)
    m = compare(image, ref.full, mask=head_mask(ref.full), labels=ref.labels,
                label_names=ref.names)
    return {"subject": subject_id, "psnr": m["psnr_mask"], "ssim": m["ssim_mask"],
            "regions_from": ref.regions_from, "summary": ref.summary(image, rows),
            "regional_bias_pct": m["regional_bias_pct"], "suvr_bias_pct": ref.suvr_bias(image),
            "lesions": [{"subject": subject_id, **r} for r in rows]}


def fidelity_of_subject(subject: Subject, image: np.ndarray) -> dict:
    """:func:`fidelity_of_image` of ``image`` against ``subject``'s own reference."""
    return fidelity_of_image(subject.id, subject_reference(subject), image)
