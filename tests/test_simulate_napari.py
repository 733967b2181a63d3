"""napari File > Open Sample: one simulated exam per scanner, in a real viewer."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_open_sample_adds_low_full_truth_with_spacing(make_napari_viewer, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("PETITE_CACHE_DIR", str(tmp_path / "cache"))
    from napari_petite.simulate.profiles import load_profile

    viewer = make_napari_viewer()
    viewer.open_sample("napari-petite", "vereos")
    names = [layer.name for layer in viewer.layers]
    assert names == ["vereos low-count", "vereos full-count", "vereos truth"]
    spacing = load_profile("vereos").grid("small").spacing
    for layer in viewer.layers:
        np.testing.assert_allclose(layer.scale, spacing)
        assert layer.colormap.name == "inferno"
        assert layer.metadata["units"] == "Bq/mL"
        assert layer.metadata["affine"].shape == (4, 4)
        assert layer.data.shape == load_profile("vereos").grid("small").shape
        lo, hi = layer.contrast_limits
        assert lo == 0 and 0 < hi < float(layer.data.max()) * 1.01
    low, full, truth = (np.asarray(layer.data) for layer in viewer.layers)
    assert low.std() > 0 and not np.array_equal(low, full)
    assert truth.std() < full.std() * 1.5 and truth.max() > 0
    # cached: the second time reads files instead of simulating
    start = time.perf_counter()
    viewer.open_sample("napari-petite", "vereos")
    cached_seconds = time.perf_counter() - start
    assert len(viewer.layers) == 6
    assert list((tmp_path / "cache" / "samples").glob("vereos-*/full.nii.gz"))
    print(f"cached sample opened in {cached_seconds:.2f} s")


def test_every_scanner_has_a_sample_entry():
    import npe2

    from napari_petite.simulate.profiles import available_ids

    manifest = npe2.PluginManager.instance().get_manifest("napari-petite")
    keys = sorted(s.key for s in manifest.contributions.sample_data)
    assert keys == available_ids()
    for sample in manifest.contributions.sample_data:
        assert sample.command == f"napari-petite.sample_{sample.key}"
