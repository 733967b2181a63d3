"""The report a clinician attaches to a chart: slices in the radiological convention with
their orientation letters, a colour bar with units on every image, the metrics at one
precision per quantity, region statistics, date and software version, and no local path."""

from __future__ import annotations

import numpy as np
from test_orientation import AFFINES, marked

from napari_petite.training.report import metric_columns, report_figure, write_report


def _texts(fig) -> list[str]:
    from matplotlib.text import Text

    cells = [c.get_text() for ax in fig.axes for table in ax.tables
             for c in table.get_celld().values()]
    return [t.get_text() for t in [*fig.findobj(Text), *cells] if t.get_text()]


def _content(tmp_path):
    low = marked(AFFINES["LPS"]) * 10
    recon = low * 0.9 + 1
    full = low * 1.05
    metrics = {"low-count": {"psnr_mask": 21.23456, "ssim_mask": 0.80612, "nrmse_mask":
                             0.031234, "regional_bias_pct": {"grey matter": -1.234}},
               "base model": {"psnr_mask": 24.8, "ssim_mask": 0.9158, "nrmse_mask": 0.02}}
    regions = {"low count": {"max": 12.345, "mean": 6.5, "peak": 10.0, "volume_ml": 3.25,
                             "units": "SUV", "region": "lesion"},
               "base model": {"max": 11.0, "mean": 6.0, "peak": 9.5, "volume_ml": 3.25,
                              "units": "SUV", "region": "lesion"}}
    details = {"scan": "tgt/sub-02", "base model": "unetr small pre-trained on src "
               "(checkpoint sha256 0123456789ab…)"}
    return dict(low=low, recons={"base model": recon}, full=full, spacing=(2.0, 1.5, 1.0),
                affine=AFFINES["LPS"], metrics=metrics, regions=regions, units="SUV",
                details=details, title="tgt/sub-02")


def test_report_reads_like_a_pet_page(tmp_path):
    content = _content(tmp_path)
    fig = report_figure(**content)
    texts = _texts(fig)
    images = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    # low, base, full, base − full: axial and coronal rows, each with its own colour bar
    assert len(images) >= 8 and len(bars) == 8
    assert sum(ax.get_ylabel() in ("SUV", "Δ SUV") for ax in bars) == 8
    # orientation letters and slice positions in the scanner's coordinates
    assert {"A", "P", "R", "L", "S", "I"} <= set(texts)
    assert any(t.startswith("axial ") and t.endswith(" mm") for t in
               [ax.get_ylabel() for ax in fig.axes])
    # one precision per quantity; region statistics; date and version; research-use line
    assert "21.23" in texts and "0.806" in texts and "0.9158" not in texts
    assert "0.916" in texts and "-1.2" in texts
    assert "SUVmax" in texts and "12.35" in texts and "region statistics: lesion" in texts
    made = next(t for t in texts if "napari-petite" in t)
    assert "made 20" in made and "Research use only" in made
    assert not any(str(tmp_path) in t for t in texts)


def test_report_radiological_slice_puts_the_marker_top_left(tmp_path):
    """The axial image on the page: the right-anterior marker at its top left."""
    content = _content(tmp_path)
    fig = report_figure(**content)
    axial_low = next(ax for ax in fig.axes if ax.images and ax.get_title() == "low count")
    image = np.asarray(axial_low.images[0].get_array())
    rows, cols = np.nonzero(image > 0.5 * image.max())
    assert rows.mean() < image.shape[0] / 2 and cols.mean() < image.shape[1] / 2
    out = write_report(tmp_path / "r.pdf", **content)
    assert out.read_bytes()[:5] == b"%PDF-"


def test_metric_columns_keep_one_precision_per_quantity():
    rows = dict(metric_columns({"a": {"psnr_mask": 24.8, "ssim_mask": 0.8, "nrmse": 0.1},
                                "b": {"psnr_mask": 25.123, "ssim_mask": 0.91584}}))
    assert rows["PSNR head (dB)"] == ["24.80", "25.12"]
    assert rows["SSIM head"] == ["0.800", "0.916"]
