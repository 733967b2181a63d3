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


def consumer_of(model: nn.Module, name: str) -> tuple[str, nn.Module] | None:
    """The one Linear/convolution whose input *is* the output of module ``name``.

    An activation (e.g. the GELU inside an MLP) has no weights; its IA³ scale folds into the
    layer that consumes it. Found by tracing one probe forward: the output tensor is held (so
    its memory cannot be reused) and every Linear/conv whose input shares its storage and
    shape is a consumer (an eval-mode Dropout passes the same storage on). None unless
    exactly one consumer exists.
    """
    from napari_petite.peft._sites import run_probe

    site = model.get_submodule(name)
    held: list[torch.Tensor] = []
    hits: list[tuple[str, nn.Module]] = []

    def record(_mod, _args, out):
        if isinstance(out, torch.Tensor):
            held.append(out)

    def check(mod_name, mod):
        def pre(_mod, args):
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and any(
                x.data_ptr() == h.data_ptr() and x.shape == h.shape and x.stride() == h.stride()
                for h in held
            ):
                hits.append((mod_name, mod))
        return pre

    handles = [site.register_forward_hook(record)]
    handles += [m.register_forward_pre_hook(check(n, m)) for n, m in model.named_modules()
                if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)]
    try:
        run_probe(model)  # type: ignore[arg-type]
    finally:
        for h in handles:
            h.remove()
    unique = {id(m): (n, m) for n, m in hits}
    return next(iter(unique.values())) if len(unique) == 1 else None
