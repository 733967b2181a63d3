"""Evaluate a model on dataset subjects: low vs full, reconstruction vs full (and vs truth).

Shared by ``petite evaluate``, ``petite sweep`` and the napari compare dock so the numbers in
the leaderboard, the CLI and the GUI come from one definition (REFERENCE.md §4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def evaluate_subject(model, subject: Subject, *, device=None, progress=None,
                     should_stop=None, recon=None) -> dict:
    """Metrics of one subject; returns {"low": {...}, "recon": {...}, "recon_vs_truth": {...}}.

    ``recon``: an already computed reconstruction of the subject (``model`` is then unused).
    """
    from napari_petite.io.nifti import read_volume
    from napari_petite.training.inference import predict_volume

    low, full = read_volume(subject.low), read_volume(subject.full)
    labels = read_volume(subject.labels).data if subject.labels else None
    names = label_names(subject.meta)
    mask = head_mask(full.data)
    if recon is None:
        recon = predict_volume(model, low.data, device=device, progress=progress,
                               should_stop=should_stop)
    row = {
        "subject": subject.id,
        "low": compare(low.data, full.data, mask=mask, labels=labels, label_names=names),
        "recon": compare(recon, full.data, mask=mask, labels=labels, label_names=names),
    }
    if subject.truth:
        truth = read_volume(subject.truth).data
        row["recon_vs_truth"] = compare(recon, truth, mask=mask, labels=labels,
                                        label_names=names)
        row["low_vs_truth"] = compare(low.data, truth, mask=mask, labels=labels,
                                      label_names=names)
    return row


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
