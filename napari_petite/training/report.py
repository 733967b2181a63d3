"""A one-page PNG report of a reconstruction: central slices and the metrics table.

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


def write_report(path, *, low: np.ndarray, recon: np.ndarray, full: np.ndarray | None,
                 spacing, metrics_low: dict | None, metrics_recon: dict | None,
                 title: str, inputs=(), overwrite: bool = False) -> Path:
    """Write the PNG report to ``path`` (atomically; refuses to replace an input)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from napari_petite.io.atomic import atomic_write
    from napari_petite.io.layers import robust_limits

    panels = [("low count", low), ("reconstructed", recon)]
    if full is not None:
        panels += [("full count", full), ("reconstructed − full", recon - full)]
    sz, sy, sx = (float(s) for s in spacing)
    ref = full if full is not None else low
    vmin, vmax = robust_limits(ref)
    fig = Figure(figsize=(3.0 * len(panels), 7.2), dpi=110, facecolor="white")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, len(panels), height_ratios=[1, 1, 0.9])
    for col, (name, vol) in enumerate(panels):
        diff = name.startswith("reconstructed −")
        lim = float(np.percentile(np.abs(vol), 99.5)) or 1.0 if diff else None
        kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim) if diff else \
            dict(cmap="inferno", vmin=vmin, vmax=vmax)
        z, y = vol.shape[0] // 2, vol.shape[1] // 2
        for row, (img, aspect) in enumerate(((vol[z], sy / sx), (vol[:, y], sz / sx))):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(img, origin="lower" if row else "upper", aspect=aspect,
                      interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=10)
    ax = fig.add_subplot(grid[2, :])
    ax.axis("off")
    rows = metric_rows(metrics_low, metrics_recon)
    if rows:
        table = ax.table(cellText=[list(r[1:]) for r in rows], rowLabels=[r[0] for r in rows],
                         colLabels=["low vs full", "reconstructed vs full"], loc="center",
                         cellLoc="center", colWidths=[0.25, 0.25])
        table.auto_set_font_size(False)
        table.set_fontsize(8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"), inputs=inputs,
                        overwrite=overwrite)
