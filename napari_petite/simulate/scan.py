"""One simulated PET exam: a phantom scanned and reconstructed the way one scanner would.

The phantom is sampled on a simulation grid twice as fine as the output grid in-plane (so
the data are not made with the reconstruction's own model, the "inverse crime"; native grids
finer than 128 pixels are simulated at their own pixel size to bound memory), projected
with the profile's PSF, TOF and count level, thinned to the low-count scan, reconstructed by
OSEM with the profile's protocol directly on the output grid (as vendors reconstruct into
their output matrix, so no resampling step blurs the result), post-filtered, and returned in Bq/mL
with the truth (phantom averaged over each output voxel) and labels on the same grid.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from napari_petite.simulate.acquisition import (
    ScanModel,
    attenuation_factors,
    detector_efficiencies,
    gaussian_blur,
    poisson,
    simulate_acquisition,
    thin,
    to_columns,
)
from napari_petite.simulate.anatomy import REFERENCE_INJECTED_MBQ, Phantom, make_phantom
from napari_petite.simulate.osem import osem
from napari_petite.simulate.profiles import Grid, ScannerProfile
from napari_petite.simulate.projector import Projector, cached_projector, make_geometry, views_for

#: bumped whenever simulated images change for the same seed (keys cached samples)
SIMULATOR_VERSION = "2"  # 2: per-site acquisition protocols (dose, scan lengths, DRF)
#: largest in-plane matrix of the simulation grid (native grids above 128 are not oversampled)
MAX_SIM_MATRIX = 256
#: effective-count calibration of the 2D-slice model: scales the profile's trues so that a
#: full-dose exam has a clinical deep-WM CoV (~10-13 % at the small size, docs/simulation.md
#: section 3); a 3D scanner's oblique data and 3D reconstruction are not modelled, so raw
#: trues do not map one-to-one onto image noise. The same scan has the same counts at every
#: output size (measured: at equal counts small and native grids give similar WM CoV).
NOISE_CALIBRATION = 0.3
#: the reference (source-site) protocol's dose-reduction factor: 5 of 30 minutes
DEFAULT_DRF = 6.0


def grid_affine(grid: Grid) -> np.ndarray:
    """NIfTI affine (RAS mm) of a grid centred on the scanner axis; voxel (i,j,k)=(x,y,z)."""
    dz, dy, dx = grid.spacing
    nz, ny, nx = grid.shape
    affine = np.diag([dx, dy, dz, 1.0])
    affine[:3, 3] = [-(nx - 1) / 2.0 * dx, -(ny - 1) / 2.0 * dy, -(nz - 1) / 2.0 * dz]
    return affine


def block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` in-plane blocks (fine simulation grid -> output grid)."""
    if factor == 1:
        return volume
    nz, ny, nx = volume.shape
    return volume.reshape(nz, ny // factor, factor, nx // factor, factor).mean(axis=(2, 4))


@dataclass
class SimulatedScan:
    """Low/full/truth in Bq/mL and labels on one grid, with everything meta.json records."""

    low: np.ndarray
    full: np.ndarray
    truth: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    meta: dict = field(default_factory=dict)
    #: per-lesion instance labels (0 none, k lesion k) of a lesion-insertion subject
    lesions: np.ndarray | None = None


@dataclass
class Expected:
    """Noise-free data of one exam on a scanner and what is needed to reconstruct it."""

    prompts: np.ndarray
    model: ScanModel
    truth: np.ndarray
    totals: dict


class ScannerSimulator:
    """Simulates exams on one scanner profile at one output size (``small`` or ``native``)."""

    def __init__(self, profile: ScannerProfile, size: str = "small", *,
                 oversample: int | None = None, grid: Grid | None = None):
        self.profile = profile
        self.size = size
        self.grid = grid or profile.grid(size)
        nz, ny, nx = self.grid.shape
        if ny != nx or abs(self.grid.spacing[1] - self.grid.spacing[2]) > 1e-9:
            raise ValueError("the simulator needs square in-plane grids")
        if oversample is None:  # 2x finer data grid, up to 256 pixels (memory, time)
            oversample = 2 if 2 * nx <= MAX_SIM_MATRIX else 1
        self.oversample = int(oversample)
        d = self.grid.spacing[2]
        n_views = views_for(nx, profile.subsets)
        tof_mm = profile.tof_fwhm_mm if profile.tof else 0.0
        self.rec_geo = make_geometry(nx, d, n_bins=nx, bin_mm=d, n_views=n_views,
                                     tof_fwhm_mm=tof_mm)
        self.sim_geo = make_geometry(nx * self.oversample, d / self.oversample, n_bins=nx,
                                     bin_mm=d, n_views=n_views, tof_fwhm_mm=tof_mm)
        self.sim_grid = Grid((nz, ny * self.oversample, nx * self.oversample),
                             (self.grid.spacing[0], d / self.oversample, d / self.oversample))

    @property
    def rec_projector(self) -> Projector:
        return cached_projector(self.rec_geo)

    @property
    def sim_projector(self) -> Projector:
        return cached_projector(self.sim_geo)

    def trues_for(self, dose_mbq: float) -> float:
        """Expected full-count trues: the profile's level x dose x calibration."""
        return self.profile.full_trues * dose_mbq / REFERENCE_INJECTED_MBQ * NOISE_CALIBRATION

    def expected(self, activity_sim: np.ndarray, mu_sim: np.ndarray, trues: float) -> Expected:
        """Noise-free prompts of volumes on :attr:`sim_grid` and their model on :attr:`grid`."""
        p = self.profile
        prompts, parts = simulate_acquisition(
            activity_sim, mu_sim, self.sim_grid.spacing, self.sim_projector,
            scanner_id=p.id, fwhm_mm=p.fwhm_mm, axial_fov_mm=p.axial_fov_mm,
            scatter_fraction=p.scatter_fraction, randoms_fraction=p.randoms_fraction,
            trues=trues,
        )
        mu_rec = block_mean(mu_sim, self.oversample)
        att = attenuation_factors(self.rec_projector, to_columns(mu_rec))
        eff = detector_efficiencies(p.id, self.rec_geo.n_views, self.rec_geo.n_bins,
                                    self.grid.shape[0])
        mult = (parts["calibration"] * parts["sensitivity"] * eff * att).astype(np.float32)
        model = ScanModel(mult, parts["add"])
        truth = block_mean(activity_sim, self.oversample)
        totals = {k: parts[k] for k in ("trues", "scatter", "randoms")}
        return Expected(prompts, model, truth.astype(np.float32), totals)

    def reconstruct(self, counts: np.ndarray, model: ScanModel, *,
                    iterations: int | None = None, subsets: int | None = None,
                    psf: bool | None = None,
                    postfilter_mm: tuple[float, float] | None = None) -> np.ndarray:
        """OSEM with the profile's protocol (overridable), then the post-filter."""
        p = self.profile
        use_psf = p.psf_modelling if psf is None else psf
        image = osem(counts, model, self.rec_projector, shape_zyx=self.grid.shape,
                     spacing_zyx=self.grid.spacing,
                     iterations=iterations or p.iterations, subsets=subsets or p.subsets,
                     psf_fwhm_mm=p.fwhm_mm if use_psf else None)
        tr, ax = p.postfilter_mm if postfilter_mm is None else postfilter_mm
        if tr > 0 or ax > 0:
            image = gaussian_blur(image, (ax, tr), self.grid.spacing)
        return image.astype(np.float32)

    def sample_phantom(self, phantom: Phantom) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Activity and mu on the simulation grid, labels on the output grid."""
        oz = max(1, math.ceil(self.grid.spacing[0] / 2.0))
        sg = self.sim_grid
        activity = phantom.sample(sg.shape, sg.spacing, oversample_z=oz)
        mu = phantom.sample(sg.shape, sg.spacing, oversample_z=oz, what="mu")
        labels = phantom.sample(self.grid.shape, self.grid.spacing, what="labels")
        return activity, mu, labels

    def simulate(self, phantom: Phantom, rng: np.random.Generator,
                 drf: float | None = None, *,
                 lesions: tuple[np.random.Generator, int] | None = None) -> SimulatedScan:
        """Scan ``phantom`` at full count and thinned by ``drf`` (default: the site's
        protocol); reconstruct both. ``lesions`` = (generator, count) inserts that many
        spheres of known activity first (``simulate/lesions.py``)."""
        from napari_petite.simulate import lesions as lesion_sim

        t0 = time.perf_counter()
        p = self.profile
        drf = p.drf if drf is None else float(drf)
        activity, mu, labels = self.sample_phantom(phantom)
        placed, instances = [], None
        if lesions is not None and lesions[1] > 0:
            gm = phantom.params["gm_suv"] / phantom.suv_factor
            placed = lesion_sim.draw_lesions(lesions[0], labels, self.grid.spacing, lesions[1],
                                             gm_level=gm,
                                             wm_level=gm / phantom.params["gm_wm_ratio"])
            activity = lesion_sim.insert(activity, self.sim_grid.spacing, placed)
            instances = lesion_sim.label_volume(self.grid.shape, self.grid.spacing, placed)
            labels = lesion_sim.mark_labels(labels, instances, placed)
        exp = self.expected(activity, mu, self.trues_for(phantom.dose_mbq))
        full_counts = poisson(exp.prompts, rng)
        low_counts = thin(full_counts, drf, rng)
        full = self.reconstruct(full_counts, exp.model)
        low = self.reconstruct(low_counts, exp.model.thinned(drf))
        meta = {
            "scanner": self.profile.id,
            "size": self.size,
            "drf": float(drf),
            "protocol": {"injected_activity_mbq": p.injected_mbq,
                         "full_scan_min": p.full_scan_min,
                         "short_scan_min": round(p.full_scan_min / drf, 4),
                         "drf_source": "site protocol" if drf == p.drf else "override"},
            "units": "Bq/mL",
            "suv_factor": phantom.suv_factor,
            "suv_factor_note": "SUV = value x suv_factor (body weight g / injected Bq)",
            "injected_mbq": round(phantom.dose_mbq, 3),
            "weight_kg": round(phantom.weight_kg, 3),
            "counts_full": {"prompts": int(full_counts.sum(dtype=np.int64)),
                            "trues_expected": round(exp.totals["trues"], 1),
                            "scatter_expected": round(exp.totals["scatter"], 1),
                            "randoms_expected": round(exp.totals["randoms"], 1)},
            "counts_low": {"prompts": int(low_counts.sum(dtype=np.int64))},
            "grid": {"shape_zyx": list(self.grid.shape),
                     "spacing_zyx_mm": [round(s, 6) for s in self.grid.spacing]},
            "phantom": phantom.params,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        spacing = tuple(float(s) for s in self.grid.spacing)
        if instances is not None:
            meta["lesions"] = lesion_sim.describe(placed, instances, exp.truth, spacing)
        return SimulatedScan(low=low, full=full, truth=exp.truth, labels=labels,
                             affine=grid_affine(self.grid), spacing=spacing,  # type: ignore
                             meta=meta, lesions=instances)


def subject_rngs(seed: int, scanner_id: str, index: int,
                 count: int = 2) -> tuple[np.random.Generator, ...]:
    """Independent generators (phantom, noise) for subject ``index`` of ``scanner_id``.

    Keyed by the scanner too, so every site gets different people (a multi-centre study).
    ``count=3`` adds a third generator (lesions); the first two are the same either way, so
    asking for lesions changes nothing else that the seed decides.
    """
    ss = np.random.SeedSequence(entropy=int(seed),
                                spawn_key=(zlib.crc32(scanner_id.encode()), int(index)))
    return tuple(np.random.default_rng(child) for child in ss.spawn(count))


def simulate_subject(profile: ScannerProfile, *, seed: int, index: int,
                     size: str = "small", drf: float | None = None,
                     lesions: tuple[int, int] | None = None) -> SimulatedScan:
    """Subject ``index`` of ``profile`` for ``seed``: deterministic, independent of the others.

    ``drf`` overrides the site protocol's dose-reduction factor (``None`` keeps it).
    ``lesions`` = (min, max) makes a lesion-insertion subject: the phantom's own random
    lesions are left out, a hypometabolic region is always present (the SUVR test needs it),
    and between min and max spheres of known activity are inserted (``simulate/lesions.py``).
    Without it the subject is exactly the default one.
    """
    if lesions is None:
        rng_phantom, rng_noise = subject_rngs(seed, profile.id, index)
        phantom = make_phantom(rng_phantom, injected_mbq=profile.injected_mbq)
        scan = ScannerSimulator(profile, size).simulate(phantom, rng_noise, drf)
    else:
        rng_phantom, rng_noise, rng_lesions = subject_rngs(seed, profile.id, index, count=3)
        phantom = make_phantom(rng_phantom, injected_mbq=profile.injected_mbq, lesions=0,
                               hypometabolism=True)
        count = int(rng_lesions.integers(lesions[0], lesions[1] + 1))
        scan = ScannerSimulator(profile, size).simulate(phantom, rng_noise, drf,
                                                        lesions=(rng_lesions, count))
    scan.meta.update({"seed": int(seed), "subject_index": int(index)})
    return scan
