"""Physics checks of the simulator (docs/simulation.md) on small exams.

GM mean unchanged across dose-reduction factors, white-matter noise growing as sqrt(DRF),
point-source FWHM near the profile's NEMA figure, TOF less noisy than non-TOF at equal counts
(and matched contrast), and a clinical full-dose noise level.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_petite.simulate.acquisition import poisson, thin
from napari_petite.simulate.anatomy import make_phantom
from napari_petite.simulate.profiles import Grid, load_profile
from napari_petite.simulate.quality import noise_cov, point_fwhm, region_mean, wm_cov
from napari_petite.simulate.scan import ScannerSimulator, subject_rngs


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PETITE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def mct_exam(cache):
    """One mCT subject (no lesions), its expected data and the full-count Poisson draw."""
    sim = ScannerSimulator(load_profile("mct"), "small")
    rng_phantom, rng_noise = subject_rngs(7, "mct", 0)
    phantom = make_phantom(rng_phantom, lesions=0, hypometabolism=False)
    activity, mu, labels = sim.sample_phantom(phantom)
    expected = sim.expected(activity, mu, sim.trues_for(phantom.dose_mbq))
    full = poisson(expected.prompts, rng_noise)
    reference = sim.reconstruct(expected.prompts, expected.model)  # noise-free
    images = {}
    for drf in (1, 4, 10, 20):
        counts = thin(full, drf, rng_noise)
        assert abs(counts.sum() / full.sum() - 1 / drf) < 0.01
        images[drf] = sim.reconstruct(counts, expected.model.thinned(drf))
    return sim, labels, expected, reference, images


def test_grey_matter_mean_is_unchanged_across_drf(mct_exam):
    _, labels, _, _, images = mct_exam
    gm = {d: region_mean(img, labels, "grey matter") for d, img in images.items()}
    for drf in (4, 10, 20):
        assert abs(gm[drf] / gm[1] - 1) < 0.02, (drf, gm)


def test_white_matter_noise_grows_as_sqrt_drf(mct_exam):
    sim, labels, _, reference, images = mct_exam
    cov = {d: noise_cov(img, reference, labels, sim.grid.spacing) for d, img in images.items()}
    for drf in (4, 10, 20):
        ratio = cov[drf] / cov[1] / np.sqrt(drf)
        assert 0.8 < ratio < 1.2, (drf, cov)
    # the clinical measure (plain CoV, structure included) grows too
    plain = [wm_cov(images[d], labels, sim.grid.spacing) for d in (1, 4, 10, 20)]
    assert plain == sorted(plain)


def test_full_dose_noise_is_clinical(mct_exam):
    sim, labels, _, _, images = mct_exam
    assert 0.08 <= wm_cov(images[1], labels, sim.grid.spacing) <= 0.15


def test_truth_is_the_phantom_on_the_output_grid(mct_exam):
    sim, labels, expected, _, images = mct_exam
    assert expected.truth.shape == images[1].shape == labels.shape == sim.grid.shape
    gm, wm = (region_mean(expected.truth, labels, n) for n in ("grey matter", "white matter"))
    assert 2.0 < gm / wm < 4.5
    # reconstruction is quantitative: GM within partial-volume losses of the truth
    assert 0.8 < region_mean(images[1], labels, "grey matter") / gm < 1.05


@pytest.mark.parametrize("scanner", ["mct", "uexplorer"])
def test_point_source_reconstructs_at_the_profile_fwhm(cache, scanner):
    # NEMA-like: point 10 mm off-centre in air, no scatter/randoms, no PSF modelling or filter
    profile = dataclasses.replace(load_profile(scanner), scatter_fraction=0.0,
                                  randoms_fraction=0.0)
    sim = ScannerSimulator(profile, grid=Grid((16, 64, 64), (2.0, 1.0, 1.0)))
    activity = np.zeros(sim.sim_grid.shape, np.float32)
    activity[8, 64 + 20, 64] = 1.0
    exp = sim.expected(activity, np.zeros_like(activity), 1e7)
    image = sim.reconstruct(exp.prompts, exp.model, iterations=10, psf=False,
                            postfilter_mm=(0.0, 0.0))
    transaxial, axial = point_fwhm(image, sim.grid.spacing)
    assert abs(transaxial / profile.fwhm_mm[0] - 1) < 0.15, transaxial
    assert abs(axial / profile.fwhm_mm[1] - 1) < 0.15, axial


def test_tof_is_less_noisy_than_non_tof_at_equal_counts(cache):
    """Same subject, same trues; noise compared at matched grey-matter recovery (TOF
    converges faster, so equal iteration counts would compare different resolutions)."""
    rng_phantom, _ = subject_rngs(3, "vision", 0)
    phantom = make_phantom(rng_phantom, lesions=0, hypometabolism=False)
    results = {}
    for tof in (True, False):
        profile = load_profile("vision")
        if not tof:
            profile = dataclasses.replace(profile, tof_fwhm_ps=0.0)
        small = profile.grid("small")  # the central 16 slices of the small grid: faster
        sim = ScannerSimulator(profile, grid=Grid((16, *small.shape[1:]), small.spacing))
        activity, mu, labels = sim.sample_phantom(phantom)
        exp = sim.expected(activity, mu, sim.trues_for(phantom.dose_mbq) / 10)
        counts = poisson(exp.prompts, np.random.default_rng(11))
        truth_gm = region_mean(exp.truth, labels, "grey matter")
        tof_recovery = results[True][1] if not tof else None
        for iterations in range(profile.iterations, 8 * profile.iterations + 1,
                                profile.iterations):
            ref = sim.reconstruct(exp.prompts, exp.model, iterations=iterations)
            recovery = region_mean(ref, labels, "grey matter") / truth_gm
            if tof or recovery >= tof_recovery:
                break
        image = sim.reconstruct(counts, exp.model, iterations=iterations)
        results[tof] = (noise_cov(image, ref, labels, sim.grid.spacing), recovery, iterations)
    assert results[False][1] >= results[True][1] - 0.01, results
    assert results[True][0] < 0.85 * results[False][0], results
