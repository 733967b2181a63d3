"""``ssf``: scale and shift features (Lian et al., NeurIPS 2022).

Per-channel ``y = scale * x + shift`` on a site's output (tokens: last axis; channel maps:
axis 1), ``scale`` initialised to 1 and ``shift`` to 0, so the model is unchanged at init
and both receive gradient on the first step. The module sits at ``<site>.ssf`` and runs from a
forward hook.

Merge (zero inference overhead) is exact when the site module is a Linear, a convolution
(bias needed for a non-zero shift; not grouped-transposed) or a normalisation layer with
affine parameters: the scale multiplies its weight rows and bias, the shift adds to the bias.
A site that is a block (attention, MLP, a conv block) or a norm without affine parameters
(UNETR's InstanceNorm) cannot absorb it: ``merge_peft`` keeps such SSF modules and names
them with that reason, or raises ConfigError when asked to merge strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_petite.models.base import Backbone, PartSites
from napari_petite.peft._fold import fold_output
from napari_petite.peft._sites import (
    channel_shape,
    expand_vector,
    hook_per_channel,
    unhook_output,
)
from napari_petite.peft.config import MethodConfig

NAME = "ssf"
ADDS_MODULES = True
ATTR = "ssf"


class SSF(nn.Module):
    """``scale * x + shift`` over the channels in ``slices`` (others pass unchanged)."""

    def __init__(self, width: int, slices: tuple[tuple[int, int], ...], layout: str, **kw):
        super().__init__()
        n = sum(b - a for a, b in slices)
        self.width, self.slices, self.layout = width, slices, layout
        self.scale = nn.Parameter(torch.ones(n, **kw))
        self.shift = nn.Parameter(torch.zeros(n, **kw))

    def full_scale(self) -> torch.Tensor:
        return expand_vector(self.scale, self.slices, self.width, 1.0)

    def full_shift(self) -> torch.Tensor:
        return expand_vector(self.shift, self.slices, self.width, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = channel_shape(x.ndim, self.layout, self.width)
        return x * self.full_scale().view(shape) + self.full_shift().view(shape)


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    if not sites.ssf:
        return f"SSF needs declared feature outputs; the {model.name} {part} has none"
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    hook_per_channel(model, sites.ssf, ATTR, SSF)


def merge_site(model: nn.Module, name: str) -> str | None:
    """Fold ``<name>.ssf`` into the site module; None on success, else the reason it stays."""
    module = model.get_submodule(name)
    ssf: SSF = module._modules[ATTR]  # type: ignore[assignment]
    reason = fold_output(module, ssf.full_scale().detach(), ssf.full_shift().detach())
    if reason is None:
        unhook_output(module, ATTR)
    return reason
