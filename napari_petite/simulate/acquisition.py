"""Acquisition physics: from an activity image to full- and low-count prompt sinograms.

Chain (docs/simulation.md): activity -> 3D Gaussian PSF -> line integrals (TOF-binned)
-> attenuation exp(-integral of mu) -> axial sensitivity and detector efficiencies -> trues
scaled to the profile's count level -> + smooth scatter + flat randoms -> Poisson = full
count. The low-count scan is a **binomial thinning** of the full-count prompts with
p = 1/DRF, which has exactly the statistics of keeping a 1/DRF share of the list-mode events
and stays perfectly aligned with the full scan. Image-domain noise is never used.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_petite.simulate.projector import Projector

#: half-width (mm) over which a 3D scanner's oblique acceptance ramps sensitivity up axially
AXIAL_ACCEPTANCE_MM = 400.0
#: spread of the smooth scatter distribution (mm, Gaussian sigma) in the sinogram
SCATTER_SIGMA_MM = 40.0
#: spread of detector efficiencies (log-normal sigma)
EFFICIENCY_SIGMA = 0.08

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def gaussian_blur(volume_zyx: np.ndarray, fwhm_mm, spacing_zyx) -> np.ndarray:
    """3D Gaussian blur with FWHM (axial, transaxial) in mm; zero outside (self-adjoint)."""
    fwhm_ax, fwhm_tr = fwhm_mm
    sigma = (fwhm_ax * FWHM_TO_SIGMA / spacing_zyx[0], fwhm_tr * FWHM_TO_SIGMA / spacing_zyx[1],
             fwhm_tr * FWHM_TO_SIGMA / spacing_zyx[2])
    if max(sigma) <= 0:
        return volume_zyx
    return ndi.gaussian_filter(volume_zyx, sigma, mode="constant", truncate=3.0)


def to_columns(volume_zyx: np.ndarray) -> np.ndarray:
    """(z, y, x) volume -> (pixels, slices) projector layout."""
    nz = volume_zyx.shape[0]
    return np.ascontiguousarray(volume_zyx.reshape(nz, -1).T, dtype=np.float32)


def to_volume(columns: np.ndarray, shape_zyx) -> np.ndarray:
    """(pixels, slices) -> (z, y, x)."""
    return np.ascontiguousarray(columns.T.reshape(shape_zyx))


def axial_sensitivity(nz: int, dz: float, axial_fov_mm: float) -> np.ndarray:
    """Relative 3D-mode sensitivity of each slice (triangle over short axial FOVs, flat centre
    on long ones), evaluated at slice centres on a grid centred in the axial FOV."""
    z = (np.arange(nz) - (nz - 1) / 2.0) * dz
    half = axial_fov_mm / 2.0
    ramp = min(half, AXIAL_ACCEPTANCE_MM)
    return np.clip((half - np.abs(z)) / ramp, 0.0, 1.0).astype(np.float32)


def detector_efficiencies(scanner_id: str, n_views: int, n_bins: int, nz: int) -> np.ndarray:
    """Fixed per-scanner LOR efficiencies (log-normal crystal pairs x radial arc effect)."""
    rng = np.random.default_rng(zlib.crc32(scanner_id.encode()))
    crystal = rng.normal(0.0, EFFICIENCY_SIGMA, size=(n_views, n_bins, nz))
    s = (np.arange(n_bins) - (n_bins - 1) / 2.0) / (n_bins / 2.0)
    radial = 1.0 - 0.1 * s**2
    eff = np.exp(crystal) * radial[None, :, None]
    return eff.reshape(n_views * n_bins, nz).astype(np.float32)


@dataclass
class ScanModel:
    """What reconstruction needs besides the data: ``expected = mult * (A x) + add``.

    ``mult`` is per LOR and slice (calibration x sensitivity x efficiency x attenuation);
    ``add`` (scatter + randoms) is per sinogram row and slice. Both refer to the full-count
    scan; :meth:`thinned` gives the model of a scan with 1/DRF of the counts.
    """

    mult: np.ndarray
    add: np.ndarray
    count_fraction: float = 1.0

    def thinned(self, drf: float) -> ScanModel:
        return ScanModel(self.mult / drf, self.add / drf, self.count_fraction / drf)


def attenuation_factors(projector: Projector, mu_columns: np.ndarray) -> np.ndarray:
    """exp(-line integral of mu) per LOR and slice (TOF rows summed: weights sum to 1)."""
    return np.exp(-projector.lor_sum(projector.forward(mu_columns))).astype(np.float32)


def simulate_acquisition(
    activity_zyx: np.ndarray,
    mu_zyx: np.ndarray,
    spacing_zyx,
    projector: Projector,
    *,
    scanner_id: str,
    fwhm_mm: tuple[float, float],
    axial_fov_mm: float,
    scatter_fraction: float,
    randoms_fraction: float,
    trues: float,
) -> tuple[np.ndarray, dict]:
    """Expected prompts of one scan of ``activity_zyx`` (Bq/mL) on ``projector``'s grid.

    Returns the expected prompts (rows, slices) and the pieces the reconstruction model is
    made of (calibration, sensitivity, efficiency, scatter + randoms), so the caller can
    build a :class:`ScanModel` on its own (coarser) reconstruction grid. Noise is drawn
    separately (:func:`poisson`, :func:`thin`) so the expected data can be reused.
    """
    geo = projector.geo
    nz = activity_zyx.shape[0]
    fwhm_tr, fwhm_ax = fwhm_mm
    blurred = gaussian_blur(activity_zyx, (fwhm_ax, fwhm_tr), spacing_zyx)
    line = projector.forward(to_columns(blurred))  # rows x slices, Bq/mL * mm
    att = attenuation_factors(projector, to_columns(mu_zyx))
    sens = axial_sensitivity(nz, spacing_zyx[0], axial_fov_mm)[None, :]
    eff = detector_efficiencies(scanner_id, geo.n_views, geo.n_bins, nz)
    geometric = eff * sens * att  # per LOR
    unscaled = projector.lor_expand(geometric) * line
    total = float(unscaled.sum(dtype=np.float64))
    calibration = trues / total if total > 0 else 0.0
    true_rows = unscaled * calibration
    # scatter: a smooth, attenuated copy of the emission sinogram, scaled to the fraction
    true_lor = projector.lor_sum(true_rows) / eff
    sino = true_lor.reshape(geo.n_views, geo.n_bins, nz)
    sig_bins = SCATTER_SIGMA_MM / geo.bin_mm
    sig_views = geo.n_views * SCATTER_SIGMA_MM / (math.pi * geo.radius_mm)
    sig_z = SCATTER_SIGMA_MM / spacing_zyx[0]
    smooth = ndi.gaussian_filter(sino, (sig_views, sig_bins, sig_z), mode=("wrap", "constant",
                                                                         "nearest"))
    smooth = smooth.reshape(geo.n_lors, nz) * eff
    trues_total = float(true_rows.sum(dtype=np.float64))
    scatter_total = trues_total * scatter_fraction / (1.0 - scatter_fraction)
    smooth *= scatter_total / max(float(smooth.sum(dtype=np.float64)), 1e-30)
    randoms_total = (trues_total + scatter_total) * randoms_fraction / (1.0 - randoms_fraction)
    randoms = eff * (randoms_total / float(eff.sum(dtype=np.float64)))
    add_lor = smooth + randoms
    add_rows = projector.lor_expand(add_lor / geo.n_tof)
    expected = true_rows + add_rows
    parts = {
        "calibration": calibration,
        "sensitivity": sens,
        "efficiency": eff,
        "add": add_rows.astype(np.float32),
        "trues": trues_total,
        "scatter": scatter_total,
        "randoms": randoms_total,
    }
    return expected.astype(np.float32), parts


def poisson(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts of the expected prompts (int32)."""
    return rng.poisson(expected).astype(np.int32)


def thin(counts: np.ndarray, drf: float, rng: np.random.Generator) -> np.ndarray:
    """Binomial thinning with p = 1/DRF: keeps each recorded event with probability 1/DRF."""
    if drf < 1:
        raise ValueError("DRF must be >= 1")
    if drf == 1:
        return counts.copy()
    return rng.binomial(counts, 1.0 / drf).astype(np.int32)
