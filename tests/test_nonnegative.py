"""A reconstruction is clamped to >= 0 in ``predict_volume``, so its NIfTI and DICOM exports
(and the layers and metrics) hold the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_fixtures import write_pet_series

#: README "Clinical data": a DICOM export reads back within this fraction of the maximum of
#: the NIfTI export of the same reconstruction (half a 16-bit step of each slice's maximum)
ROUND_TRIP_FRACTION = 1e-5


@pytest.fixture
def biased_model():
    """The smoke UNETR with a negative output bias: a real network whose raw output goes
    below zero in the background, as denoisers' do."""
    import torch

    from napari_petite.models.registry import build_model, smoke_overrides

    torch.manual_seed(0)
    model = build_model("unetr", "small", **smoke_overrides("unetr"))
    with torch.no_grad():
        model.out.conv.conv.bias.fill_(-0.3)
    return model.eval()


def test_nifti_and_dicom_exports_of_one_reconstruction_agree(tmp_path, biased_model):
    from napari_petite.io.dicom import read_series
    from napari_petite.io.dicom_export import write_derived_series
    from napari_petite.io.nifti import read_volume, write_like
    from napari_petite.training.inference import predict_volume

    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in (32, 32, 34)], indexing="ij")
    low = rng.poisson(np.exp(-(x**2 + y**2 + z**2) * 2.5) * 20000.0 + 30.0)
    like = read_series(write_pet_series(tmp_path / "src", low, spacing=(2.0, 2.0, 2.0)))
    recon = predict_volume(biased_model, like.data, device="cpu")
    assert recon.dtype == np.float32 and float(recon.min()) == 0.0
    assert np.mean(recon == 0) > 0.05  # the clamp had negatives to remove

    nifti = read_volume(write_like(tmp_path / "recon.nii.gz", recon, like))
    dicom = read_series(write_derived_series(recon, like, tmp_path / "recon", description="d"))
    np.testing.assert_array_equal(nifti.data, recon)  # float32 NIfTI: exact
    peak = float(nifti.data.max())
    diff = float(np.abs(dicom.data - nifti.data).max())
    assert diff <= ROUND_TRIP_FRACTION * peak, diff / peak
    assert float(dicom.data.min()) == 0.0
