"""Region statistics by their definitions, checked on volumes whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_petite.training.roi import roi_stats, sphere_kernel


def test_sphere_holds_about_one_millilitre():
    for spacing in ((2.0, 2.0, 2.0), (2.8, 1.2, 1.2), (1.0, 1.0, 1.0)):
        ball = sphere_kernel(spacing) > 0
        ml = ball.sum() * np.prod(spacing) / 1000.0
        assert 0.6 < ml < 1.4, (spacing, ml)
    assert sphere_kernel((2.0, 2.0, 2.0)).sum() == pytest.approx(1.0)


def test_max_mean_peak_and_volume_of_a_hot_cube():
    image = np.full((20, 20, 20), 2.0)
    image[5:15, 5:15, 5:15] = 10.0  # a 2 cm cube at 10, background 2
    image[10, 10, 10] = 40.0  # one hot voxel: decides max, hardly peak
    mask = image > 5
    stats = roi_stats(image, mask, (2.0, 2.0, 2.0))
    assert stats["max"] == 40.0 and stats["voxels"] == 1000
    assert stats["mean"] == pytest.approx((999 * 10 + 40) / 1000)
    assert stats["volume_ml"] == pytest.approx(1000 * 8 / 1000)
    ball = sphere_kernel((2.0, 2.0, 2.0))
    assert stats["peak"] == pytest.approx(10.0 + 30.0 * ball.max())  # the sphere at the hot voxel
    assert 10.0 < stats["peak"] < 40.0
    suv = roi_stats(image, mask, (2.0, 2.0, 2.0), suv_factor=0.5)
    assert suv["units"] == "SUV" and suv["max"] == 20.0 and suv["peak"] == pytest.approx(
        0.5 * stats["peak"])
    empty = roi_stats(image, np.zeros_like(mask), (2.0, 2.0, 2.0))
    assert empty["voxels"] == 0 and empty["max"] is None and not math.isnan(empty["volume_ml"])
