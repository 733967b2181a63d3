"""A one-page report of a reconstruction for the chart: slices, colour bars, metrics, details.

Drawn with matplotlib's Agg backend (no window, safe in a worker thread) and written
atomically, never over an input. Aspect ratios use the voxel spacing, so anisotropic
volumes look as they do in napari.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: (row label, metric key) shown in the report and the dock's table
METRIC_ROWS = (("PSNR head (dB)", "psnr_mask"), ("SSIM head", "ssim_mask"),
               ("NRMSE head", "nrmse_mask"), ("PSNR volume (dB)", "psnr"),
               ("SSIM volume", "ssim"), ("NRMSE volume", "nrmse"))


def metric_columns(columns: dict[str, dict | None]) -> list[tuple[str, list[str]]]:
    """Rows (name, one cell per column) of the metrics and the regional bias in %; a column
    is one image against the full-count one (low-count, the base model, each adapted one)."""

    def fmt(d, key):
        return "-" if not d or key not in d else f"{d[key]:.4g}"

    values = [c or {} for c in columns.values()]
    rows = [(name, [fmt(d, key) for d in values]) for name, key in METRIC_ROWS
            if any(key in d for d in values)]
    regions = sorted({r for d in values for r in d.get("regional_bias_pct", {})})
    for region in regions:
        cells = [d.get("regional_bias_pct", {}).get(region) for d in values]
        rows.append((f"bias {region} (%)", ["-" if c is None else f"{c:+.2f}" for c in cells]))
    return rows


def metric_rows(low: dict | None, recon: dict | None) -> list[tuple[str, str, str]]:
    """Rows (name, low vs full, reconstructed vs full) including regional bias in %."""
    return [(name, *cells) for name, cells in metric_columns({"low": low, "recon": recon})]


#: printed on every report: these are research tools, not diagnostic devices
DISCLAIMER = "Research use only: not for diagnosis or treatment decisions."


def write_report(path, *, low: np.ndarray, recons: dict[str, np.ndarray],
                 full: np.ndarray | None, spacing, metrics: dict[str, dict | None],
                 title: str, details: dict[str, str] | None = None, units: str | None = None,
                 inputs=(), overwrite: bool = False) -> Path:
    """A one-page report (PNG, or PDF when ``path`` ends in .pdf), atomically, never over an
    input: axial and coronal slices of the low-count scan, each reconstruction (``recons``:
    name -> volume, e.g. the base model and an adapted one) and the full-count scan with
    colour bars in ``units``, the difference to full count, the slice positions, the metrics
    table (``metrics``: column name -> metrics against full count, as
    :func:`metric_columns`), ``details`` (subject, scan, base, adapter...) and the
    research-use line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from napari_petite.io.atomic import atomic_write
    from napari_petite.io.layers import robust_limits

    panels = [("low count", low), *recons.items()]
    if full is not None:
        panels.append(("full count", full))
        last = list(recons)[-1] if recons else None
        if last is not None:
            panels.append((f"{last} − full", recons[last] - full))
    sz, sy, sx = (float(s) for s in spacing)
    vmin, vmax = robust_limits(full if full is not None else low)
    z, y = low.shape[0] // 2, low.shape[1] // 2
    fig = Figure(figsize=(3.1 * len(panels), 9.0), dpi=110, facecolor="white")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, len(panels), height_ratios=[1, 1, 0.9, 0.35])
    for col, (name, vol) in enumerate(panels):
        diff = "−" in name
        lim = (float(np.percentile(np.abs(vol), 99.5)) or 1.0) if diff else None
        kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim) if diff else \
            dict(cmap="inferno", vmin=vmin, vmax=vmax)
        for row, (img, aspect) in enumerate(((vol[z], sy / sx), (vol[:, y], sz / sx))):
            ax = fig.add_subplot(grid[row, col])
            shown = ax.imshow(img, origin="lower" if row else "upper", aspect=aspect,
                              interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"axial z={z} ({z * sz:.0f} mm)" if row == 0 else
                              f"coronal y={y} ({y * sy:.0f} mm)", fontsize=7)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).set_label(units or "a.u.",
                                                                      fontsize=7)
    _table(fig.add_subplot(grid[2, :]), metrics)
    text = fig.add_subplot(grid[3, :])
    text.axis("off")
    lines = [f"{k}: {v}" for k, v in (details or {}).items()] + [DISCLAIMER]
    text.text(0.0, 1.0, "\n".join(lines), va="top", fontsize=7, family="monospace")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fmt = "pdf" if str(path).lower().endswith(".pdf") else "png"
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format=fmt), inputs=inputs,
                        overwrite=overwrite)


def _table(ax, metrics: dict[str, dict | None]) -> None:
    ax.axis("off")
    rows = metric_columns(metrics)
    if not rows:
        return
    table = ax.table(cellText=[cells for _, cells in rows], rowLabels=[r for r, _ in rows],
                     colLabels=[f"{c} vs full" for c in metrics], loc="center",
                     cellLoc="center", colWidths=[min(0.8 / len(metrics), 0.25)] * len(metrics))
    table.auto_set_font_size(False)
    table.set_fontsize(7)
