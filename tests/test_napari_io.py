"""The npe2 reader and writer in a real napari viewer (needs a display: Xvfb in CI)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ANISO_AFFINE, write_nifti

from napari_petite.io.nifti import read_volume

pytestmark = pytest.mark.gui


def test_manifest_is_registered():
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-petite")
    assert manifest.name == "napari-petite"
    assert manifest.contributions.readers and manifest.contributions.writers


def test_open_gives_scale_equal_to_spacing(make_napari_viewer, aniso_nifti):
    viewer = make_napari_viewer()
    layers = viewer.open(str(aniso_nifti), plugin="napari-petite")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "scan"
    np.testing.assert_allclose(layer.scale, (2.0, 1.65, 1.65), rtol=1e-6)
    np.testing.assert_allclose(layer.metadata["affine"], ANISO_AFFINE, atol=1e-5)
    assert layer.data.shape == (12, 20, 24)
    assert layer.colormap.name == "inferno"
    assert layer.contrast_limits[1] > layer.contrast_limits[0]


def test_write_round_trips_data_and_affine(make_napari_viewer, aniso_nifti, tmp_path):
    viewer = make_napari_viewer()
    (_layer,) = viewer.open(str(aniso_nifti), plugin="napari-petite")
    out = tmp_path / "saved.nii.gz"
    written = viewer.layers.save(str(out), selected=False, plugin="napari-petite")
    assert written == [str(out)]
    original, back = read_volume(aniso_nifti), read_volume(out)
    np.testing.assert_array_equal(back.data, original.data)
    np.testing.assert_array_equal(back.affine, original.affine)
    assert back.spacing == original.spacing


def test_layer_made_in_napari_is_written_with_its_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    viewer.add_image(data, scale=(3.0, 1.5, 1.25), name="computed")
    out = tmp_path / "computed.nii.gz"
    viewer.layers.save(str(out), plugin="napari-petite")
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing == (3.0, 1.5, 1.25)


def test_writer_refuses_to_overwrite_the_source(make_napari_viewer, aniso_nifti):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(aniso_nifti), plugin="napari-petite")
    before = aniso_nifti.read_bytes()
    layer.data = layer.data * 0
    with pytest.raises(Exception, match="is an input of this command"):
        viewer.layers.save(str(aniso_nifti), plugin="napari-petite")
    assert aniso_nifti.read_bytes() == before


def test_label_map_opens_as_labels(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    labels = np.zeros((10, 10, 10), np.int16)
    labels[2:5, 2:5, 2:5] = 3
    path = write_nifti(tmp_path / "labels.nii.gz", labels)
    (layer,) = viewer.open(str(path), plugin="napari-petite")
    assert layer.__class__.__name__ == "Labels"
    assert set(np.unique(layer.data)) == {0, 3}
