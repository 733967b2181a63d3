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
#: one precision per quantity, so a column never mixes 0.806 and 0.9158
METRIC_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "nrmse": "{:.4f}"}


def format_metric(key: str, value: float) -> str:
    """A metric at its quantity's precision (PSNR 24.87, SSIM 0.806, NRMSE 0.0312)."""
    return METRIC_FORMATS.get(key.removesuffix("_mask"), "{:.4g}").format(value)


def metric_columns(columns: dict[str, dict | None]) -> list[tuple[str, list[str]]]:
    """Rows (name, one cell per column) of the metrics and the regional bias in %; a column
    is one image against the full-count one (low-count, the base model, each adapted one)."""

    def fmt(d, key):
        return "-" if not d or key not in d else format_metric(key, d[key])

    values = [c or {} for c in columns.values()]
    rows = [(name, [fmt(d, key) for d in values]) for name, key in METRIC_ROWS
            if any(key in d for d in values)]
    regions = sorted({r for d in values for r in d.get("regional_bias_pct", {})})
    for region in regions:
        cells = [d.get("regional_bias_pct", {}).get(region) for d in values]
        rows.append((f"bias {region} (%)", ["-" if c is None else f"{c:+.1f}" for c in cells]))
    return rows


#: printed on every report: these are research tools, not diagnostic devices
DISCLAIMER = "Research use only: not for diagnosis or treatment decisions."


def write_report(path, *, inputs=(), overwrite: bool = False, **content) -> Path:
    """Draw the report (:func:`report_figure` with ``content``) and write it as PNG, or PDF
    when ``path`` ends in .pdf, atomically, never over an input."""
    from napari_petite.io.atomic import atomic_write

    fig = report_figure(**content)
    fmt = "pdf" if str(path).lower().endswith(".pdf") else "png"
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format=fmt), inputs=inputs,
                        overwrite=overwrite)


def report_figure(*, low: np.ndarray, recons: dict[str, np.ndarray],
                  full: np.ndarray | None, spacing, metrics: dict[str, dict | None],
                  title: str, details: dict[str, str] | None = None, units: str | None = None,
                  affine=None, regions: dict[str, dict] | None = None, fidelity=None):
    """The one-page report as a matplotlib figure (Agg, safe in a worker thread): axial and
    coronal slices (radiological convention from ``affine``, with their
    orientation letters and positions) of the low-count scan, each reconstruction
    (``recons``: name -> volume) and the full-count scan, each with a colour bar in
    ``units``, the difference to full count, the metrics table (``metrics``: column name ->
    metrics against full count, as :func:`metric_columns`), the region statistics
    (``regions``: image name -> :func:`napari_petite.training.roi.roi_stats`), ``details``
    (scan, models and their versions), the fidelity check (``fidelity``: a
    :class:`~napari_petite.training.fidelity_check.FidelityCheck`, with its warnings), the
    date, the software version and the research-use line. No file path is printed: the page
    may leave the site."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from napari_petite.io.layers import robust_limits
    from napari_petite.io.nifti import affine_from_spacing
    from napari_petite.io.orientation import plan, position_text

    panels = [("low count", low), *recons.items()]
    if full is not None:
        panels.append(("full count", full))
        last = list(recons)[-1] if recons else None
        if last is not None:
            panels.append((f"{last} − full", recons[last] - full))
    spacing = tuple(float(s) for s in spacing)
    affine = affine_from_spacing(spacing) if affine is None else np.asarray(affine)
    vmin, vmax = robust_limits(full if full is not None else low)
    n_rows = 4 + bool(regions) + bool(fidelity)
    fig = Figure(figsize=(max(3.1 * len(panels), 9.0),
                          9.0 + 1.2 * bool(regions) + 2.2 * bool(fidelity)), dpi=110,
                 facecolor="white")
    FigureCanvasAgg(fig)
    ratios = [1, 1, 0.9] + ([0.6] if regions else []) + ([1.1] if fidelity else []) + [0.4]
    grid = fig.add_gridspec(n_rows, len(panels), height_ratios=ratios)
    rows = [(p, low.shape[p.sliced] // 2) for p in (plan(affine, "axial"),
                                                    plan(affine, "coronal"))]
    for col, (name, vol) in enumerate(panels):
        diff = "−" in name
        lim = (float(np.percentile(np.abs(vol), 99.5)) or 1.0) if diff else None
        kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim) if diff else \
            dict(cmap="inferno", vmin=vmin, vmax=vmax)
        for row, (p, index) in enumerate(rows):
            ax = fig.add_subplot(grid[row, col])
            _slice(ax, vol, p, index, spacing, kw)
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{p.view} {position_text(affine, low.shape, p, index)}",
                              fontsize=7)
            bar = fig.colorbar(ax.images[0], ax=ax, fraction=0.046, pad=0.02)
            bar.set_label(f"Δ {units or 'a.u.'}" if diff else units or "a.u.", fontsize=7)
            bar.ax.tick_params(labelsize=6)
    _table(fig.add_subplot(grid[2, :]), metrics)
    if regions:
        _regions(fig.add_subplot(grid[3, :]), regions)
    if fidelity:
        _fidelity(fig.add_subplot(grid[n_rows - 2, :]), fidelity)
    text = fig.add_subplot(grid[n_rows - 1, :])
    text.axis("off")
    lines = [f"{k}: {v}" for k, v in (details or {}).items()] + [_made_by(), DISCLAIMER]
    text.text(0.0, 1.0, "\n".join(lines), va="top", fontsize=7, family="monospace")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _slice(ax, vol: np.ndarray, p, index: int, spacing, kw: dict) -> None:
    """One slice as a PET reader sees it, with its orientation letters."""
    from napari_petite.io.orientation import oriented_slice

    image = oriented_slice(vol, p, index)
    ax.imshow(image, origin="upper", aspect=spacing[p.rows] / spacing[p.cols],
              interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    style = dict(color="white", fontsize=7, fontweight="bold", transform=ax.transAxes)
    ax.text(0.5, 0.97, p.markers["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.03, p.markers["bottom"], ha="center", va="bottom", **style)
    ax.text(0.03, 0.5, p.markers["left"], ha="left", va="center", **style)
    ax.text(0.97, 0.5, p.markers["right"], ha="right", va="center", **style)


def _made_by() -> str:
    import datetime

    from napari_petite import __version__

    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"made {when} with napari-petite {__version__}"


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


def region_rows(regions: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """(column heads, one row per image) of region statistics at SUV or activity
    precision."""
    units = sorted({r.get("units") or "a.u." for r in regions.values()})
    suv = units == ["SUV"]
    heads = ["SUVmax", "SUVmean", "SUVpeak"] if suv else [f"max ({units[0]})",
                                                            f"mean ({units[0]})",
                                                            f"peak ({units[0]})"]
    fmt = "{:.2f}" if suv else "{:,.0f}" if units[0].lower() == "bq/ml" else "{:.4g}"
    cells = [[("-" if r.get(k) is None else fmt.format(r[k])) for k in ("max", "mean", "peak")]
             + ["-" if r.get("volume_ml") is None else f"{r['volume_ml']:.1f}"]
             for r in regions.values()]
    return [*heads, "volume (mL)"], cells


def _regions(ax, regions: dict[str, dict]) -> None:
    ax.axis("off")
    heads, cells = region_rows(regions)
    region = next(iter(regions.values())).get("region") or "region"
    ax.set_title(f"region statistics: {region}", fontsize=8)
    table = ax.table(cellText=cells, rowLabels=list(regions), colLabels=heads, loc="center",
                     cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)


def _fidelity(ax, check) -> None:
    """The fidelity check: heading and key sentence above its table, warnings in red below."""
    ax.axis("off")
    heads, rows = check.table()
    ax.set_title(f"{check.heading()}\n{check.key_sentence()}", fontsize=8)
    warnings = check.warnings()
    if rows:
        table = ax.table(cellText=[cells for _, cells in rows], rowLabels=[r for r, _ in rows],
                         colLabels=heads, cellLoc="center",
                         bbox=[0.3, 0.3 if warnings else 0.0, 0.7, 0.7 if warnings else 1.0])
        table.auto_set_font_size(False)
        table.set_fontsize(7)
    if warnings:
        ax.text(0.0, 0.22, "\n".join(warnings), va="top", fontsize=7, color="#b00000",
                wrap=True)
