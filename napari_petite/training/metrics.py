"""Image-quality metrics exactly as docs/metrics.md (UDPET-style), whole volume and in a mask.

- NRMSE = RMSE / (max - min of the reference)
- PSNR  = 20 log10(max(reference) / RMSE)
- SSIM  = 3D SSIM (Gaussian window sigma 1.5, K1 0.01, K2 0.03) on both volumes divided by the
  reference maximum, with a fixed data range of 1
- regional bias = 100 (mean(pred in region) - mean(ref in region)) / mean(ref in region)

With a mask, RMSE, the reference max/min and the SSIM average are taken over the mask only.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

_K1, _K2, _SIGMA = 0.01, 0.03, 1.5


def _pair(pred, ref, mask):
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {ref.shape}")
    if mask is None:
        return pred.ravel(), ref.ravel()
    mask = np.asarray(mask, dtype=bool)
    return pred[mask], ref[mask]


def rmse(pred, ref, mask=None) -> float:
    p, r = _pair(pred, ref, mask)
    return float(np.sqrt(np.mean((p - r) ** 2)))


def nrmse(pred, ref, mask=None) -> float:
    _, r = _pair(pred, ref, mask)
    span = float(r.max() - r.min())
    return rmse(pred, ref, mask) / span if span > 0 else math.inf


def psnr(pred, ref, mask=None) -> float:
    _, r = _pair(pred, ref, mask)
    err = rmse(pred, ref, mask)
    return math.inf if err == 0 else 20.0 * math.log10(float(r.max()) / err)


def ssim_map(pred, ref) -> np.ndarray:
    """Voxel-wise 3D SSIM of ``pred`` and ``ref`` after dividing both by ``ref.max()``."""
    ref = np.asarray(ref, dtype=np.float64)
    scale = float(ref.max()) or 1.0
    x = np.asarray(pred, dtype=np.float64) / scale
    y = ref / scale
    c1, c2 = (_K1 * 1.0) ** 2, (_K2 * 1.0) ** 2

    def blur(a):
        return ndimage.gaussian_filter(a, _SIGMA, truncate=3.5, mode="reflect")

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(pred, ref, mask=None) -> float:
    smap = ssim_map(pred, ref)
    return float(smap.mean() if mask is None else smap[np.asarray(mask, dtype=bool)].mean())


def regional_bias(pred, ref, labels, names: dict[int, str] | None = None) -> dict[str, float]:
    """Mean bias (%) of ``pred`` against ``ref`` in every non-zero label of ``labels``."""
    labels = np.asarray(labels).astype(np.int64)
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    ids = [int(i) for i in np.unique(labels) if i != 0]
    if not ids:
        return {}
    pm = ndimage.mean(pred, labels, ids)
    rm = ndimage.mean(ref, labels, ids)
    names = names or {}
    return {
        names.get(i, str(i)): (100.0 * (p - r) / r if r != 0 else math.nan)
        for i, p, r in zip(ids, pm, rm, strict=True)
    }


def compare(pred, ref, *, mask=None, labels=None, label_names=None) -> dict:
    """All metrics of ``pred`` vs ``ref``: whole volume, in ``mask`` and per region."""
    smap = ssim_map(pred, ref)
    out = {
        "psnr": psnr(pred, ref),
        "ssim": float(smap.mean()),
        "nrmse": nrmse(pred, ref),
    }
    if mask is not None and np.any(mask):
        out.update(
            psnr_mask=psnr(pred, ref, mask),
            ssim_mask=float(smap[np.asarray(mask, dtype=bool)].mean()),
            nrmse_mask=nrmse(pred, ref, mask),
        )
    if labels is not None:
        out["regional_bias_pct"] = regional_bias(pred, ref, labels, label_names)
    return out
