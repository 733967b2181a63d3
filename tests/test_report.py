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


def test_report_carries_the_fidelity_check_and_its_warning(tmp_path):
    """The check of the reported model goes on the page: counts per image and, in red, the
    warning that the adapted model moves the numbers more than the input."""
    from napari_petite.training.fidelity_check import (
        ADAPTED,
        BASE,
        INPUT,
        FidelityCheck,
        ImageFidelity,
    )

    def image(name, role, lesion_bias, region_bias):
        subject = {"subject": "sub-01", "psnr": 25.0, "ssim": 0.9,
                   "summary": {"region_abs_bias_pct": abs(region_bias)},
                   "regional_bias_pct": {"grey matter": region_bias},
                   "suvr_bias_pct": {"precuneus/pons": region_bias / 4},
                   "lesions": [{"mean_bias_pct": b, "max_bias_pct": b, "peak_bias_pct": b}
                               for b in lesion_bias]}
        return ImageFidelity(name, role, [subject])

    check = FidelityCheck("vision", ["sub-01"], [
        image("low-count input", INPUT, [-1.0, 2.0, 8.0], -1.0),
        image("base unetr/small", BASE, [-3.0, -4.0, -6.0], -3.0),
        image("run 1", ADAPTED, [-12.0, -9.0, -3.0], -6.5)])
    content = _content(tmp_path)
    texts = [line for t in _texts(report_figure(**content, fidelity=check))
             for line in t.splitlines()]
    assert any("Fidelity on 1 validation subject of vision" in t for t in texts)
    assert any("run 1: lesion SUVmean within ±5 % of full count: 1 of 3 lesions" in t
               for t in texts)
    assert {"lesion SUVmean ±5 %", "2 of 3", "1 of 3", "SUVR ±2 %"} <= set(texts)
    warning = next(t for t in texts if t.startswith("⚠ run 1 is less faithful"))
    assert "mean |regional bias| 6.5 % against 1.0 %" in warning
    assert "less faithful than the base unetr/small" in " ".join(texts)
    assert any(t.startswith("⚠ base unetr/small is less faithful than the low-count input")
               for t in texts)  # 3.0 % against 1.0 %
    out = write_report(tmp_path / "fid.png", **content, fidelity=check)
    assert out.stat().st_size > 10_000
