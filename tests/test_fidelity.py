"""Fidelity metrics on hand-built volumes whose answers are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_petite.training import fidelity as F

NAMES = {1: "grey matter", 2: "white matter", 7: "precuneus", 8: "posterior cingulate",
         10: "pons", 4: "cerebellar cortex", 11: "hot lesion"}
SPACING = (2.0, 2.0, 2.0)


def phantom():
    """A 40^3 box: GM 10, WM 4, precuneus 15, PCC 14, pons 10, cerebellum 11.5, and two
    uniform cubic 'lesions' of 30 and 24 (labelled hot lesion)."""
    labels = np.zeros((40, 40, 40), np.int32)
    full = np.zeros(labels.shape, np.float32)
    for lab, value, box in ((1, 10.0, np.s_[2:38, 2:38, 2:20]),
                            (2, 4.0, np.s_[2:38, 2:38, 20:38]),
                            (7, 15.0, np.s_[4:10, 4:10, 4:10]), (8, 14.0, np.s_[4:10, 25:31, 4:10]),
                            (10, 10.0, np.s_[28:34, 4:10, 24:30]),
                            (4, 11.5, np.s_[28:34, 25:31, 24:30]),
                            (11, 30.0, np.s_[15:21, 15:21, 5:11]),
                            (11, 24.0, np.s_[15:21, 15:21, 26:32])):
        labels[box] = lab
        full[box] = value
    return full, labels


def test_a_uniform_scale_biases_everything_by_it_and_leaves_suvr_alone():
    full, labels = phantom()
    ref = F.Reference.build(full, SPACING, labels=labels, names=NAMES)
    assert ref.ids == [1, 2]  # two lesion components found from the labels
    s = ref.summary(0.9 * full)
    for key in ("region_abs_bias_pct", "lesion_abs_bias_p90_pct"):
        assert s[key] == pytest.approx(10.0)
    for key in ("lesion_suvmean_bias_pct", "lesion_suvmax_bias_pct", "lesion_suvpeak_bias_pct"):
        assert s[key] == pytest.approx(-10.0)
    assert s["suvr_abs_bias_pct"] == pytest.approx(0.0, abs=1e-4)  # float32 rounding
    assert ref.summary(full)["region_abs_bias_pct"] == 0.0


def test_suvr_and_its_bias_are_the_ratios_of_region_means():
    full, labels = phantom()
    ref = F.Reference.build(full, SPACING, labels=labels, names=NAMES)
    assert ref.full_suvr["posterior cingulate/pons"] == pytest.approx(1.4)
    assert ref.full_suvr["precuneus/cerebellar cortex"] == pytest.approx(15 / 11.5)
    assert "hypometabolism/pons" not in ref.full_suvr  # not in these labels
    pred = full.copy()
    pred[labels == 8] = 13.0
    bias = ref.suvr_bias(pred)
    assert bias["posterior cingulate/pons"] == pytest.approx(100 * (1.3 - 1.4) / 1.4)
    assert bias["precuneus/pons"] == pytest.approx(0.0)


def test_lesion_rows_read_mean_max_peak_and_recovery_against_the_true_activity():
    full, labels = phantom()
    meta = [{"id": 1, "activity_bq_ml": 40.0, "diameter_mm": 12.0, "kind": "hot"},
            {"id": 2, "activity_bq_ml": 30.0, "diameter_mm": 6.0, "kind": "hot"}]
    ref = F.Reference.build(full, SPACING, labels=labels, names=NAMES, lesions=meta,
                            truth=full)
    pred = full.copy()
    pred[labels == 11] *= 0.5
    pred[17, 17, 7] = 30.0  # one hot voxel in lesion 1: its max, not its mean much
    rows = {r["id"]: r for r in ref.lesion_rows(pred)}
    one = rows[1]
    assert one["full_mean"] == pytest.approx(30.0) and one["full_max"] == 30.0
    assert one["mean"] == pytest.approx((215 * 15 + 30) / 216)
    assert one["max"] == 30.0 and one["max_bias_pct"] == pytest.approx(0.0)
    assert one["rc_mean"] == pytest.approx(one["mean"] / 40.0)
    assert one["rc_max"] == pytest.approx(30.0 / 40.0)
    assert one["mean_bias_truth_pct"] == pytest.approx(one["mean_bias_pct"])
    assert rows[2]["mean_bias_pct"] == pytest.approx(-50.0)
    # SUVpeak is the 1 mL-sphere mean: the lesion's 6 mm cube is smaller than the sphere, so
    # its peak mixes in the unchanged grey matter around it and drops by less than the mean
    assert rows[2]["peak"] <= rows[2]["max"]
    assert -50.0 < rows[2]["peak_bias_pct"] < 0
    curve = F.recovery_by_diameter(list(rows.values()), edges=(4, 8, 16))
    assert [c["n"] for c in curve] == [1, 1]
    assert curve[0]["rc_mean"] == pytest.approx(12.0 / 30.0)


def test_scaled_images_use_scaled_true_activity():
    full, labels = phantom()
    meta = [{"id": 1, "activity_bq_ml": 40.0, "kind": "hot"}]
    ref = F.Reference.build(full / 4, SPACING, labels=labels, names=NAMES, lesions=meta,
                            scale=4.0)
    assert ref.activity[1] == 10.0


def test_unlabelled_data_gets_intensity_bands_and_hot_spots():
    rng = np.random.default_rng(0)
    full = np.zeros((48, 48, 48), np.float32)
    z, y, x = np.ogrid[:48, :48, :48]
    head = (z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 < 18 ** 2
    full[head] = 5.0 + (x * np.ones_like(full))[head] / 10.0
    spot = (z - 24) ** 2 + (y - 20) ** 2 + (x - 24) ** 2 < 3 ** 2
    full[spot] = 40.0
    full += rng.normal(0, 0.05, full.shape).astype(np.float32) * head
    labels, names, spots = F.intensity_regions(full)
    assert set(np.unique(labels)) == {0, 1, 2, 3} and names[3] == "high uptake"
    assert spots.max() == 1 and spots[24, 20, 24] == 1
    ref = F.Reference.build(full, SPACING)
    assert ref.regions_from == "intensity" and ref.ids == [1]
    s = ref.summary(full * 1.05)
    assert s["region_abs_bias_pct"] == pytest.approx(5.0, rel=1e-6)
    assert s["lesion_suvmean_bias_pct"] == pytest.approx(5.0, rel=1e-6)
    assert math.isnan(s["suvr_abs_bias_pct"])  # no SUVR regions without labels


def test_no_lesions_gives_nan_not_a_crash():
    full, labels = phantom()
    labels[labels == 11] = 1
    ref = F.Reference.build(full, SPACING, labels=labels, names=NAMES)
    s = ref.summary(full)
    assert math.isnan(s["lesion_suvmean_bias_pct"]) and math.isnan(s["lesion_abs_bias_p90_pct"])
