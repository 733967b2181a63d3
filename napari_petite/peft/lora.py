"""``lora``: low-rank updates of Linear, ConvNd and ConvTransposeNd weights (Hu et al., 2022).

``W' = W + (alpha / r) * (B @ A).view(W.shape)`` with ``A`` (r, fan) Kaiming-random and ``B``
zero, so the model is unchanged at initialisation and ``B`` gets gradient on the first step.

Convolutions get the update over the *whole* kernel: ``A`` has ``in/groups * prod(kernel)``
columns (for ConvTranspose ``out/groups * prod(kernel)``), so depthwise, grouped, dilated and
strided 3D kernels work. ``loralib`` 0.1.2 sizes the product for 2D kernels only, which breaks
every Conv3d (docs/paper.md). A convolution runs once with ``W + delta`` (the delta of a
depthwise kernel is tiny); a Linear adds the cheap low-rank path ``x A^T B^T`` instead.

Wrapping is done by swapping the module's class for a LoRA subclass of its own class, as
``torch.nn.utils.parametrize`` does: the module object, its ``weight``/``bias`` parameters and
their state-dict keys stay exactly as in the base checkpoint, and only ``lora_A.i``/``lora_B.i``
are added (``loralib`` renamed the base key, and non-strict loading silently dropped it).

A fused projection (UNETR's qkv Linear) can carry several output slices (q and k); each slice
gets its own rank-r pair, and the update is zero outside them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.models.base import Backbone, PartSites, Site
from napari_petite.peft._sites import get_site_module, group_by_module, like, merged_slices
from napari_petite.peft.config import MethodConfig

NAME = "lora"
ADDS_MODULES = True
TARGETS = ("qk", "qkv", "convs", "all")
SUPPORTED = (nn.Linear, nn.modules.conv._ConvNd)


class LoRAMixin:
    """Adds ``lora_A``/``lora_B`` (one pair per output slice) to a Linear or convolution."""

    _lora_base_cls: type[nn.Module]
    lora_A: nn.ParameterList
    lora_B: nn.ParameterList
    lora_slices: tuple[tuple[int, int], ...]
    lora_scaling: float
    lora_merged: bool

    # -- geometry -------------------------------------------------------------------------
    @property
    def _out_axis(self) -> int:
        """Weight axis of the output channels (ConvTranspose stores (in, out/groups, k...))."""
        return 1 if getattr(self, "transposed", False) else 0

    def _slice_shape(self, start: int, stop: int) -> list[int]:
        shape = list(self.weight.shape)  # type: ignore[attr-defined]
        shape[self._out_axis] = stop - start
        return shape

    def lora_delta(self) -> torch.Tensor:
        """``scaling * B @ A`` shaped like the weight, zero outside the covered slices."""
        weight = self.weight  # type: ignore[attr-defined]
        axis = self._out_axis
        parts, pos = [], 0
        full = weight.shape[axis]
        for (start, stop), a, b in zip(self.lora_slices, self.lora_A, self.lora_B, strict=True):
            if start > pos:
                gap = list(weight.shape)
                gap[axis] = start - pos
                parts.append(weight.new_zeros(gap))
            parts.append((b @ a).view(self._slice_shape(start, stop)))
            pos = stop
        if pos < full:
            gap = list(weight.shape)
            gap[axis] = full - pos
            parts.append(weight.new_zeros(gap))
        delta = parts[0] if len(parts) == 1 else torch.cat(parts, dim=axis)
        return delta * self.lora_scaling

    # -- merge ----------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``weight`` (forward then skips the LoRA path)."""
        if not self.lora_merged:
            self.weight += self.lora_delta()  # type: ignore[attr-defined]
            self.lora_merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.lora_merged:
            self.weight -= self.lora_delta()  # type: ignore[attr-defined]
            self.lora_merged = False


class LoRALinear(LoRAMixin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # type: ignore[attr-defined]
        if self.lora_merged:
            return out
        pieces, pos = [], 0
        width = out.shape[-1]
        for (start, stop), a, b in zip(self.lora_slices, self.lora_A, self.lora_B, strict=True):
            if start > pos:
                pieces.append(out.new_zeros((*out.shape[:-1], start - pos)))
            pieces.append(F.linear(F.linear(x, a), b) * self.lora_scaling)
            pos = stop
        if pos < width:
            pieces.append(out.new_zeros((*out.shape[:-1], width - pos)))
        return out + (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1))


class LoRAConv(LoRAMixin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.lora_merged else self.weight + self.lora_delta()  # type: ignore[attr-defined]
        return self._conv_forward(x, weight, self.bias)  # type: ignore[attr-defined]


class LoRAConvTranspose(LoRAMixin):
    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        weight = self.weight if self.lora_merged else self.weight + self.lora_delta()  # type: ignore[attr-defined]
        n = len(self.kernel_size)  # type: ignore[attr-defined]
        output_padding = self._output_padding(  # type: ignore[attr-defined]
            x, output_size, self.stride, self.padding, self.kernel_size, n, self.dilation  # type: ignore[attr-defined]
        )
        conv = getattr(F, f"conv_transpose{n}d")
        return conv(x, weight, self.bias, self.stride, self.padding,  # type: ignore[attr-defined]
                    output_padding, self.groups, self.dilation)  # type: ignore[attr-defined]


_CLASSES: dict[type, type] = {}


def _lora_class(base_cls: type[nn.Module]) -> type[nn.Module]:
    """The LoRA subclass of ``base_cls`` (cached, so isinstance checks stay cheap)."""
    if base_cls not in _CLASSES:
        if issubclass(base_cls, nn.Linear):
            mixin: type = LoRALinear
        elif issubclass(base_cls, nn.modules.conv._ConvTransposeNd):
            mixin = LoRAConvTranspose
        elif issubclass(base_cls, nn.modules.conv._ConvNd):
            mixin = LoRAConv
        else:
            raise ValueError(f"LoRA supports Linear and convolutions, not {base_cls.__name__}")
        _CLASSES[base_cls] = type(f"LoRA{base_cls.__name__}", (mixin, base_cls),
                                  {"_lora_base_cls": base_cls})
    return _CLASSES[base_cls]


def add_lora(module: nn.Module, rank: int, alpha: float,
             slices: tuple[tuple[int, int], ...] | None = None) -> nn.Module:
    """Turn ``module`` (in place) into its LoRA subclass and return it.

    ``slices``: output-channel ranges that get an update (default: all outputs).
    """
    if isinstance(module, LoRAMixin):
        raise ValueError("module already carries LoRA")
    if rank < 1:
        raise ConfigError(f"LoRA rank must be a positive integer, got {rank}.")
    weight = module.weight
    transposed = getattr(module, "transposed", False)
    axis = 1 if transposed else 0
    width = weight.shape[axis]
    if transposed:
        groups = module.groups
        width *= groups  # (in, out/groups, k...): out channels = shape[1] * groups
    slices = slices or ((0, width),)
    if transposed and module.groups > 1 and slices != ((0, width),):
        raise ValueError("LoRA output slices on grouped ConvTranspose are not supported")
    if transposed and module.groups > 1:
        slices = ((0, weight.shape[1]),)  # rows of the stored kernel
    module.__class__ = _lora_class(type(module))
    module.lora_slices = tuple(slices)
    module.lora_scaling = float(alpha) / rank
    module.lora_merged = False
    kw = like(module)
    a_list, b_list = [], []
    for start, stop in slices:
        shape = module._slice_shape(start, stop)
        rows, cols = shape[0], math.prod(shape[1:])
        a = torch.empty(rank, cols, **kw)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        a_list.append(nn.Parameter(a))
        b_list.append(nn.Parameter(torch.zeros(rows, rank, **kw)))
    module.lora_A = nn.ParameterList(a_list)
    module.lora_B = nn.ParameterList(b_list)
    return module


def remove_lora(module: nn.Module, *, merge: bool) -> nn.Module:
    """Back to the plain base class; with ``merge`` the update is folded in first."""
    if not isinstance(module, LoRAMixin):
        return module
    if merge:
        module.merge()
    else:
        module.unmerge()
    base_cls = module._lora_base_cls
    del module.lora_A, module.lora_B
    for attr in ("lora_slices", "lora_scaling", "lora_merged"):
        module.__dict__.pop(attr, None)
    module.__class__ = base_cls
    return module


def target_sites(sites: PartSites, targets: str) -> tuple[Site, ...]:
    """Where LoRA goes: q/k (paper) or q/k/v of attention; a CNN part's convolutions."""
    if targets not in TARGETS:
        raise ConfigError(f"LoRA targets must be one of {', '.join(TARGETS)}, got {targets!r}.")
    attention = sites.attention_qk + (sites.attention_v if targets in ("qkv", "all") else ())
    if targets == "convs":
        return sites.convs
    if targets == "all":
        return attention + sites.convs
    return attention if sites.attention_qk else sites.convs


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    targets = target_sites(sites, config.targets)
    if not targets:
        return (f"LoRA needs attention projections or convolutions; the {model.name} {part} "
                "declares none")
    for site in targets:
        if not isinstance(get_site_module(model, site.name), SUPPORTED):
            return f"LoRA cannot wrap {site.name} ({type(get_site_module(model, site.name))})"
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    rank, alpha = config.rank, config.scale_alpha
    for name, group in group_by_module(target_sites(sites, config.targets)).items():
        module = get_site_module(model, name)
        width = module.out_channels if hasattr(module, "out_channels") else module.out_features
        slices = merged_slices(group, width)
        add_lora(module, rank, alpha, slices)
