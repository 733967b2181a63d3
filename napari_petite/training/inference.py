"""Whole-volume inference by sliding window with Gaussian blending (MONAI).

Volumes of any size are tiled with the network's window (overlap 0.5, as the paper); windows
are blended with Gaussian weights so tile seams do not show. Intensities are scaled by the
input's robust statistic on the way in and multiplied back on the way out, so the result is
in the input's units. A progress callback reports windows done and may stop the run.

The result is clamped to >= 0 here, once: activity concentration cannot be negative, and
doing it in the one function every front end calls means the NIfTI and DICOM exports, the
napari layers and the metrics all see the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from napari_petite.training.scaling import robust_scale
from napari_petite.training.windows import check_fits, n_windows, pad_to_window

#: bytes of activations per window voxel in inference mode (peak RSS growth of one batch:
#: about 300 for the shipped UNETR and 270 for CVT-GAN small; rounded up for margin)
ACTIVATION_BYTES_PER_VOXEL = 512


def inference_bytes(shape: Sequence[int], window: Sequence[int], batch_size: int = 2) -> int:
    """Peak bytes :func:`predict_volume` allocates beyond the input array itself.

    The scaled and padded copies, MONAI's output and weight-count volumes, the rescaled
    result and its float32 copy (4 bytes a voxel each), plus one batch of window activations.
    """
    padded = math.prod(max(int(s), int(w)) for s, w in zip(shape, window, strict=True))
    n = math.prod(int(s) for s in shape)
    return 16 * padded + 8 * n + ACTIVATION_BYTES_PER_VOXEL * batch_size * math.prod(window)


def check_inference_memory(shape: Sequence[int], window: Sequence[int], batch_size: int = 2,
                           what: str = "Reconstructing the volume") -> None:
    """Refuse, before allocating anything, a volume whose inference would not fit in memory."""
    from napari_petite.io.memory import check_fits_in_memory

    check_fits_in_memory(
        inference_bytes(shape, window, batch_size),
        f"{what} (shape {tuple(int(s) for s in shape)})",
        "crop it to the head or resample it to a coarser grid first, or use a machine with "
        "more memory.",
    )


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
    """Run ``model`` over a (z, y, x) volume; return the non-negative estimate in the input's
    units.

    Raises
    ------
    Stopped
        when ``should_stop()`` became true between windows.
    InputError
        when the volume is too small for the window, or when its inference would need more
        memory than is available (checked before anything is allocated).
    """
    import torch
    from monai.inferers import sliding_window_inference

    window = tuple(int(w) for w in (window or model.patch_size))
    check_fits(volume.shape, window)
    check_inference_memory(volume.shape, window, batch_size)
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
    check_finite_output(out)
    return np.maximum(out, 0.0).astype(np.float32)  # no negative activity (module docstring)


def check_finite_output(out: np.ndarray) -> None:
    """Refuse a model output with NaN or infinite voxels: such weights (a diverged run, a
    damaged adapter) must not reach a file, a layer or a metric as if they were an image."""
    from napari_petite.errors import CheckpointError

    bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    if bad:
        raise CheckpointError(f"The model produced {bad} NaN or infinite voxels on this scan, "
                              "so nothing was written; its weights are damaged or its training "
                              "diverged. Use another adapter or base, or train it again.")
