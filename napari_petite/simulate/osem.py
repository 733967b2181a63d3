"""Ordered-subsets expectation maximisation (OSEM) with optional resolution (PSF) modelling.

The same update every vendor's OSEM uses: ``x <- x / A_s^T m_s * A_s^T (m_s * y_s /
(m_s * A_s P x + a_s))`` over interleaved view subsets, where ``m`` holds attenuation,
efficiencies, sensitivity and calibration, ``a`` the expected scatter + randoms, and ``P`` the
(self-adjoint) Gaussian PSF when the protocol models it. Images are in Bq/mL because the
calibration sits in ``m``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_petite.simulate.acquisition import ScanModel, gaussian_blur, to_columns, to_volume
from napari_petite.simulate.projector import Projector


def osem(
    prompts: np.ndarray,
    model: ScanModel,
    projector: Projector,
    *,
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    iterations: int,
    subsets: int,
    psf_fwhm_mm: tuple[float, float] | None = None,
    callback: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Reconstruct ``prompts`` (rows, slices) into a (z, y, x) image.

    ``psf_fwhm_mm`` = (transaxial, axial) enables resolution modelling; ``None`` disables it.
    """
    geo = projector.geo
    if geo.n_views % subsets:
        raise ValueError(f"{geo.n_views} views cannot be split into {subsets} equal subsets")

    def blur(cols: np.ndarray) -> np.ndarray:
        if not psf_fwhm_mm:
            return cols
        vol = to_volume(cols, shape_zyx)
        return to_columns(gaussian_blur(vol, (psf_fwhm_mm[1], psf_fwhm_mm[0]), spacing_zyx))

    parts = []
    for s in range(subsets):
        sub = projector.subset(s, subsets)
        rows = projector.subset_rows(s, subsets)
        lors = rows // geo.n_tof
        mult = model.mult[lors]
        sens = blur(sub.back(mult))
        parts.append((sub, rows, mult, sens))
    # support: the field-of-view disc less a 1.5-pixel rim, whose pixels are grazed by only a
    # few lines of some subsets and would amplify noise without bound
    centre = (geo.n - 1) / 2.0
    yy, xx = np.mgrid[: geo.n, : geo.n]
    radius = np.hypot(yy - centre, xx - centre).ravel() * geo.pixel_mm
    seen = np.repeat((radius <= geo.radius_mm - 1.5 * geo.pixel_mm)[:, None], shape_zyx[0], 1)
    for _, _, _, sens in parts:
        seen &= sens > 0
    y = prompts.astype(np.float32, copy=False)
    total_sens = sum(p[3] for p in parts)
    # start from a uniform image with the right total activity
    x = np.zeros((geo.n * geo.n, shape_zyx[0]), dtype=np.float32)
    net = np.maximum(y.sum(axis=0, dtype=np.float64) - model.add.sum(axis=0, dtype=np.float64), 0)
    per_slice_sens = total_sens.sum(axis=0, dtype=np.float64)
    level = np.divide(net, per_slice_sens, out=np.zeros_like(net), where=per_slice_sens > 0)
    start = np.maximum(level, 1e-6 * max(level.max(), 1e-12)).astype(np.float32)
    x[:] = start[None, :]
    x[~seen] = 0
    for it in range(iterations):
        for sub, rows, mult, sens in parts:
            fp = mult * sub.forward(blur(x)) + model.add[rows]
            ratio = np.divide(y[rows], fp, out=np.zeros_like(fp), where=fp > 0)
            update = blur(sub.back(mult * ratio))
            np.divide(x * update, sens, out=x, where=sens > 0)
            x[~seen] = 0
        if callback is not None:
            callback(it)
    return to_volume(x, shape_zyx)
