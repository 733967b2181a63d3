"""Training losses: the voxel-wise term and the optional low-frequency consistency term.

The voxel term is MSE (the paper's UNETR loss), L1, or the Poisson negative log-likelihood
(PET counts are Poisson; its gradient is the relative error (pred - target) / pred, so a hot
lesion's under-estimate weighs as much as the background's, where MSE lets the many cool
voxels outvote a few hot ones).

The low-frequency term compares the prediction's and a reference's means over blocks about
a centimetre wide (a regional-mean consistency term): against the *input*, whose block means
are unbiased (noisy) estimates of the full-count ones, since a short scan of the same
acquisition differs from the long one by noise only; or against the target. It pins regional
means and lesion totals without asking the network to reproduce noise. Block means rather
than a Gaussian blur: the same low-pass idea at a tenth of the cost (a separable Gaussian on a
64^3 patch cost more than the network's own step on a CPU).
"""

from __future__ import annotations

from napari_petite.errors import ConfigError

PIXEL_LOSSES = ("auto", "mse", "l1", "poisson")
LOWFREQ_REFERENCES = ("input", "target")
#: the Poisson term's floor on the prediction (scaled units; the head's 99.5th pct is 1)
POISSON_EPS = 1e-3


def pixel_loss(kind: str, pred, target):
    """The voxel-wise term (``auto`` = MSE)."""
    import torch.nn.functional as F

    if kind in ("auto", "mse"):
        return F.mse_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "poisson":
        return F.poisson_nll_loss(pred.clamp_min(POISSON_EPS), target, log_input=False,
                                  full=False, eps=POISSON_EPS)
    raise ConfigError(f"Unknown loss {kind!r}; choose one of {', '.join(PIXEL_LOSSES[1:])}.")


def block_means(x, block: int):
    """Means of non-overlapping ``block``^3 cubes of a (B, C, D, H, W) tensor (edges partial)."""
    import torch.nn.functional as F

    return F.avg_pool3d(x, block, stride=block, ceil_mode=True)


def lowfreq_loss(pred, reference, block: int):
    """MSE between the block means of the prediction and of the reference."""
    import torch.nn.functional as F

    return F.mse_loss(block_means(pred, block), block_means(reference, block))
