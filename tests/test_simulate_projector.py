"""The sparse ray-driven projector: exact adjoint, TOF consistency, geometry, disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from napari_petite.simulate.projector import (
    Projector,
    build_matrix,
    load_or_build,
    make_geometry,
    views_for,
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PETITE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("tof_fwhm_mm", [0.0, 40.0])
def test_adjoint_is_exact(tof_fwhm_mm):
    geo = make_geometry(48, 4.0, n_bins=48, bin_mm=4.0, n_views=36, tof_fwhm_mm=tof_fwhm_mm)
    proj = Projector(geo, use_cache=False)
    rng = np.random.default_rng(0)
    x = rng.random((geo.n * geo.n, 5)).astype(np.float32)
    y = rng.random((geo.n_rows, 5)).astype(np.float32)
    lhs = float(np.sum(proj.forward(x).astype(np.float64) * y))
    rhs = float(np.sum(x.astype(np.float64) * proj.back(y)))
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    # and the subsets partition the rows: their back-projections add up to the whole
    parts = sum(proj.subset(s, 4).back(y[proj.subset_rows(s, 4)]) for s in range(4))
    np.testing.assert_allclose(parts, proj.back(y), rtol=1e-4, atol=1e-3)


def test_tof_bins_sum_to_the_non_tof_line_integral():
    plain = make_geometry(40, 5.0, n_bins=40, bin_mm=5.0, n_views=30)
    tof = make_geometry(40, 5.0, n_bins=40, bin_mm=5.0, n_views=30, tof_fwhm_mm=60.0)
    assert tof.n_tof > 1 and tof.n_tof % 2 == 1
    x = np.random.default_rng(1).random((40 * 40, 3)).astype(np.float32)
    p_plain, p_tof = Projector(plain, use_cache=False), Projector(tof, use_cache=False)
    np.testing.assert_allclose(p_tof.lor_sum(p_tof.forward(x)), p_plain.forward(x),
                               rtol=1e-4, atol=1e-3)


def test_line_integrals_are_path_lengths_in_mm():
    # a uniform disc of radius r: the central ray of every view measures its diameter 2 r
    n, d = 64, 2.0
    geo = make_geometry(n, d, n_bins=n, bin_mm=d, n_views=24)
    yy, xx = (np.mgrid[:n, :n] - (n - 1) / 2.0) * d
    disc = (np.hypot(yy, xx) <= 40.0).astype(np.float32).reshape(-1, 1)
    sino = Projector(geo, use_cache=False).forward(disc).reshape(24, n)
    centre = sino[:, n // 2 - 1: n // 2 + 1].mean(axis=1)
    np.testing.assert_allclose(centre, 80.0, rtol=0.04)


def test_matrix_is_cached_on_disk(tmp_path):
    geo = make_geometry(24, 4.0, n_bins=24, bin_mm=4.0, n_views=12, tof_fwhm_mm=30.0)
    first = load_or_build(geo)
    files = list((tmp_path / "cache" / "projectors").glob("*.npz"))
    assert len(files) == 1 and geo.key() in files[0].name
    again = load_or_build(geo)
    assert (first != again).nnz == 0
    assert (build_matrix(geo) != again).nnz == 0
    files[0].write_bytes(b"damaged")  # a broken cache entry is rebuilt, not trusted
    assert (load_or_build(geo) != first).nnz == 0


def test_views_are_a_multiple_of_subsets():
    for n, s in [(64, 21), (80, 5), (96, 16), (150, 20)]:
        v = views_for(n, s)
        assert v % s == 0 and v >= n * np.pi / 4
