"""Folding per-channel affine maps into neighbouring weights (SSF and IA³ merge).

``y = s * f(x) + t`` folds into ``f`` when ``f`` is affine in its parameters per output
channel: a Linear or convolution (rows of the weight, and the bias) or a normalisation layer
with affine parameters. ``f(s * x)`` folds into a following Linear/convolution (its input
columns). Every function checks first and returns a reason instead of changing anything when
the fold is not exact, so a merge never half-happens.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_petite.peft._sites import NORM_TYPES


def fold_output(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor | None) -> str | None:
    """Make ``module(x)`` return ``scale * module(x) + shift``; a reason when impossible."""
    has_shift = shift is not None and bool(torch.any(shift != 0))
    if isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
        transposed = getattr(module, "transposed", False)
        if transposed and module.groups > 1:
            return "grouped transposed convolution: output channels are split across groups"
        if has_shift and module.bias is None:
            return f"{type(module).__name__} has no bias to absorb the shift"
        with torch.no_grad():
            shape = [1] * module.weight.ndim
            shape[1 if transposed else 0] = -1
            module.weight.mul_(scale.view(shape))
            if module.bias is not None:
                module.bias.mul_(scale)
                if shift is not None:
                    module.bias.add_(shift)
        return None
    if isinstance(module, NORM_TYPES):
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if weight is None or bias is None:
            return (f"{type(module).__name__} has no affine parameters to absorb the scale "
                    "and shift")
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
            return "LayerNorm over several axes"
        with torch.no_grad():
            weight.mul_(scale)
            bias.mul_(scale)
            if shift is not None:
                bias.add_(shift)
        return None
    return (f"{type(module).__name__} is not a Linear, convolution or affine norm, so a "
            "per-channel map on its output cannot be folded into its weights")


def fold_input(module: nn.Module, scale: torch.Tensor) -> str | None:
    """Make ``module(x)`` compute ``module(scale * x)`` (``scale`` over input channels)."""
    if isinstance(module, nn.Linear):
        with torch.no_grad():
            module.weight.mul_(scale.view(1, -1))
        return None
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1:
        axis = 0 if getattr(module, "transposed", False) else 1
        shape = [1] * module.weight.ndim
        shape[axis] = -1
        with torch.no_grad():
            module.weight.mul_(scale.view(shape))
        return None
    return f"{type(module).__name__} cannot absorb a scale on its input channels"


def consumer_of(model: nn.Module, name: str, width: int) -> tuple[str, nn.Module] | None:
    """The unique Linear/Conv sibling of ``name`` that takes ``width`` input channels.

    An activation (e.g. the GELU inside an MLP) has no weights; its IA³ scale folds into the
    layer that consumes it. Found structurally: the one sibling whose input width matches;
    ambiguous or missing means no fold.
    """
    parent_name, _, _ = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    hits = [
        (f"{parent_name}.{n}" if parent_name else n, m) for n, m in parent.named_children()
        if (isinstance(m, nn.Linear) and m.in_features == width)
        or (isinstance(m, nn.modules.conv._ConvNd) and m.in_channels == width)
    ]
    return hits[0] if len(hits) == 1 else None
