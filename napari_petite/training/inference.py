"""Whole-volume inference by sliding window with Gaussian blending (MONAI).

Volumes of any size are tiled with the network's window (overlap 0.5, as the paper); windows
are blended with Gaussian weights so tile seams do not show. Intensities are scaled by the
input's robust statistic on the way in and multiplied back on the way out, so the result is
in the input's units. A progress callback reports windows done and may stop the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from napari_petite.training.scaling import robust_scale
from napari_petite.training.windows import check_fits, n_windows, pad_to_window


class Stopped(Exception):
    """Raised inside inference when the caller asked it to stop."""


def predict_volume(
    model,
    volume: np.ndarray,
    *,
    window: Sequence[int] | None = None,
    overlap: float = 0.5,
    device=None,
    batch_size: int = 2,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    autocast_bf16: bool = False,
) -> np.ndarray:
    """Run ``model`` over a (z, y, x) volume; return the estimate in the input's units.

    Raises
    ------
    Stopped
        when ``should_stop()`` became true between windows.
    """
    import torch
    from monai.inferers import sliding_window_inference

    window = tuple(int(w) for w in (window or model.patch_size))
    check_fits(volume.shape, window)
    scale = robust_scale(volume)
    padded, crop = pad_to_window(np.asarray(volume, dtype=np.float32) / scale, window)
    if device is None:
        device = next(model.parameters()).device
    total = math.ceil(n_windows(padded.shape, window, overlap) / batch_size)
    done = 0

    def predictor(batch):
        nonlocal done
        if should_stop is not None and should_stop():
            raise Stopped
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                            enabled=autocast_bf16):
            out = model(batch.to(device)).float()
        done += 1
        if progress is not None:
            progress(done, total)
        return out

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(padded))[None, None]
            y = sliding_window_inference(x, window, batch_size, predictor, overlap=overlap,
                                         mode="gaussian", sw_device=device, device="cpu")
    finally:
        model.train(was_training)
    out = y[0, 0].numpy()[crop] * scale
    return out.astype(np.float32)
