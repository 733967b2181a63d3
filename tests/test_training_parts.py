"""Scaling, masks, metrics, patch sampling and sliding-window inference on small real arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_petite.errors import ConfigError, InputError
from napari_petite.training import metrics
from napari_petite.training.device import resolve_device
from napari_petite.training.inference import Stopped, predict_volume
from napari_petite.training.masks import head_mask
from napari_petite.training.sampling import PatchSampler, prepare_pair
from napari_petite.training.scaling import robust_scale, scale_pair
from napari_petite.training.windows import check_fits, n_windows, pad_to_window


def phantom(shape=(24, 28, 28), seed=0, level=5000.0):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    head = (z**2 + y**2 + x**2) < 0.6
    return (head * level * (1 + 0.2 * rng.standard_normal(shape))).clip(0).astype(np.float32)


# -- metrics: hand-computed values ---------------------------------------------------------
def test_metrics_match_hand_computation():
    ref = np.array([[[0.0, 2.0], [4.0, 10.0]]] * 2)
    pred = ref + np.array([[[1.0, -1.0], [1.0, -1.0]]] * 2)
    assert metrics.rmse(pred, ref) == pytest.approx(1.0)
    assert metrics.psnr(pred, ref) == pytest.approx(20 * math.log10(10.0 / 1.0))
    assert metrics.nrmse(pred, ref) == pytest.approx(1.0 / 10.0)
    mask = ref > 3
    assert metrics.rmse(pred, ref, mask) == pytest.approx(1.0)
    assert metrics.nrmse(pred, ref, mask) == pytest.approx(1.0 / 6.0)  # range 4..10 in mask


def test_ssim_identity_and_known_value():
    rng = np.random.default_rng(1)
    ref = rng.random((12, 12, 12))
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)
    # constant images: luminance term only, (2ab + c1) / (a^2 + b^2 + c1) on ref-max-scaled values
    a, b = np.full((9, 9, 9), 1.0), np.full((9, 9, 9), 0.5)
    c1 = 0.01**2
    assert metrics.ssim(b, a) == pytest.approx((2 * 0.5 + c1) / (1.25 + c1), rel=1e-9)
    noisy = ref + 0.3 * rng.standard_normal(ref.shape)
    assert 0 < metrics.ssim(noisy, ref) < 0.9


def test_regional_bias_and_compare():
    ref = np.ones((4, 4, 4)) * 10
    pred = ref.copy()
    labels = np.zeros((4, 4, 4), int)
    labels[:2] = 1
    labels[2:] = 2
    pred[:2] *= 1.1
    bias = metrics.regional_bias(pred, ref, labels, {1: "gm", 2: "wm"})
    assert bias == {"gm": pytest.approx(10.0), "wm": pytest.approx(0.0)}
    out = metrics.compare(pred, ref, mask=labels == 1, labels=labels)
    assert {"psnr", "ssim", "nrmse", "psnr_mask", "ssim_mask", "nrmse_mask"} <= set(out)
    assert out["regional_bias_pct"]["1"] == pytest.approx(10.0)


# -- scaling and masks -----------------------------------------------------------------
def test_scaling_uses_input_only_and_keeps_units():
    low, full = phantom(seed=1), phantom(seed=2) * 1.5
    low_s, full_s, s = scale_pair(low, full)
    assert s == robust_scale(low)
    np.testing.assert_allclose(low_s * s, low, rtol=1e-6)
    np.testing.assert_allclose(full_s * s, full, rtol=1e-6)
    assert robust_scale(low * 7.0) == pytest.approx(7.0 * s, rel=1e-5)  # unit-independent


@pytest.mark.parametrize("volume", [np.zeros((8, 8, 8)), -np.ones((8, 8, 8))])
def test_scaling_refuses_empty_or_negative(volume):
    with pytest.raises(InputError, match="zero or negative everywhere"):
        robust_scale(volume)


def test_head_mask_covers_the_head_only():
    vol = phantom()
    mask = head_mask(vol)
    from scipy import ndimage

    inside = vol > 0
    far = ndimage.distance_transform_edt(~inside) > 3  # beyond a 3-voxel smoothing margin
    assert mask[inside].mean() > 0.95
    assert not mask[far].any()


# -- windows and sampling ---------------------------------------------------------------
def test_window_fitting():
    padded, crop = pad_to_window(np.ones((40, 70, 70)), (64, 64, 64))
    assert padded.shape == (64, 70, 70)
    assert padded[crop].shape == (40, 70, 70) and padded.sum() == 40 * 70 * 70
    with pytest.raises(InputError, match=r"along z .*less than half"):
        check_fits((20, 70, 70), (64, 64, 64))
    assert n_windows((64, 64, 64), (64, 64, 64), 0.5) == 1
    assert n_windows((96, 64, 64), (64, 64, 64), 0.5) == 2


def test_sampler_is_seeded_and_aligned():
    low = phantom(seed=3)
    full = low * 2.0
    pair = prepare_pair("sub", low, full, (16, 16, 16))
    a = PatchSampler([pair], (16, 16, 16), np.random.default_rng(7)).batch(3)
    b = PatchSampler([pair], (16, 16, 16), np.random.default_rng(7)).batch(3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (3, 1, 16, 16, 16)
    np.testing.assert_allclose(a[1], 2.0 * a[0], rtol=1e-6)  # targets aligned with inputs
    head = PatchSampler([pair], (16, 16, 16), np.random.default_rng(0), head_fraction=1.0)
    assert all(head.batch(1)[0].max() > 0 for _ in range(10))


def test_sampler_needs_subjects():
    with pytest.raises(Exception, match="training set is empty"):
        PatchSampler([], (16, 16, 16), np.random.default_rng(0))


# -- inference --------------------------------------------------------------------------
class Doubler(torch.nn.Module):
    patch_size = (16, 16, 16)

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return x * self.w


def test_sliding_window_keeps_shape_and_units():
    vol = phantom(shape=(20, 37, 30))
    calls = []
    out = predict_volume(Doubler(), vol, progress=lambda d, t: calls.append((d, t)))
    assert out.shape == vol.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, 2 * vol, rtol=1e-4, atol=1e-2)
    assert calls[-1][0] == calls[-1][1] == len(calls)


def test_sliding_window_stops_between_windows():
    seen = []
    with pytest.raises(Stopped):
        predict_volume(Doubler(), phantom(shape=(32, 48, 48)), batch_size=1,
                       progress=lambda d, t: seen.append(d), should_stop=lambda: len(seen) >= 2)
    assert len(seen) == 2


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_lr_scale_multiplies_every_per_method_rate():
    """A learning-rate search over one factor keeps the methods' rates in proportion; an
    explicit rate is left alone, and a scale of 0 is refused with a sentence."""
    from test_peft_toys import build

    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.spec import MixPEFTSpec
    from napari_petite.training.engine import _lr_groups

    model = build("toy")
    spec = MixPEFTSpec("toy", "small", "lora", "ssf", True)
    apply_spec(model, spec)
    plain = [g["lr"] for g in _lr_groups(model, spec, None)]
    scaled = [g["lr"] for g in _lr_groups(model, spec, None, scale=3.0)]
    assert len(plain) >= 2 and scaled == pytest.approx([3.0 * lr for lr in plain])
    assert [g["lr"] for g in _lr_groups(model, spec, 1e-4, scale=3.0)] == [1e-4]
    with pytest.raises(ConfigError, match="above 0"):
        _lr_groups(model, spec, None, scale=0.0)
