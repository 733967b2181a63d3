"""``ia3``: learned per-channel rescaling of keys, values and FFN hidden activations.

Liu et al., "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning" (NeurIPS 2022) — beyond the PETITE paper. One vector per site, initialised to 1
(model unchanged at init), multiplies the site's output channels; on a fused qkv projection
only the declared slices (k and v) are scaled. The module sits at ``<site>.ia3`` and runs from
a forward hook.

Merge: into the producing Linear/convolution/affine norm (its weight rows and bias), or, when
the site is an activation (the FFN hidden state), into the unique sibling layer that consumes
it (its input columns). Blocks cannot absorb it; ``merge_peft`` keeps them with the reason.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_petite.models.base import Backbone, PartSites
from napari_petite.peft._fold import consumer_of, fold_input, fold_output
from napari_petite.peft._sites import (
    channel_shape,
    expand_vector,
    hook_per_channel,
    typed_width,
    unhook_output,
)
from napari_petite.peft.config import MethodConfig

NAME = "ia3"
ADDS_MODULES = True
ATTR = "ia3"


class IA3(nn.Module):
    """``scale * x`` over the channels in ``slices``."""

    def __init__(self, width: int, slices: tuple[tuple[int, int], ...], layout: str, **kw):
        super().__init__()
        self.width, self.slices, self.layout = width, slices, layout
        self.scale = nn.Parameter(torch.ones(sum(b - a for a, b in slices), **kw))

    def full_scale(self) -> torch.Tensor:
        return expand_vector(self.scale, self.slices, self.width, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.full_scale().view(channel_shape(x.ndim, self.layout, self.width))


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    if not sites.ia3:
        return f"IA3 needs key/value/FFN outputs; the {model.name} {part} declares none"
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    hook_per_channel(model, sites.ia3, ATTR, IA3)


def merge_site(model: nn.Module, name: str) -> str | None:
    """Fold ``<name>.ia3`` into its producer or consumer; None on success, else the reason."""
    module = model.get_submodule(name)
    ia3: IA3 = module._modules[ATTR]  # type: ignore[assignment]
    scale = ia3.full_scale().detach()
    if typed_width(module) is not None:
        reason = fold_output(module, scale, None)
    elif not any(module.parameters(recurse=False)) and not [
            n for n in module._modules if n != ATTR]:  # an activation: fold into its consumer
        found = consumer_of(model, name)
        reason = (f"{name} feeds no single Linear/convolution" if found
                  is None else fold_input(found[1], scale))
    else:
        reason = fold_output(module, scale, None)
    if reason is None:
        unhook_output(module, ATTR)
    return reason
