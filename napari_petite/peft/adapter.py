"""``adapter``: Houlsby bottleneck after a site's output, ``x + up(act(down(x)))``.

Houlsby et al. (2019). ``down`` keeps PyTorch's default random init and only ``up`` starts at
zero (weight and bias), so the model is unchanged at initialisation *and* learns: on the first
step ``up`` receives the gradient ``act(down(x))^T g`` (non-zero because ``down`` is random);
from the second step on, with ``up`` non-zero, gradient also reaches ``down``. The released
PETITE code zeroed both projections, so ``act(down(x)) = act(0) = 0`` and no weight ever
received gradient — only the up-projection bias learned (docs/paper.md).

Token sites (``(..., C)``) use Linear projections; channel sites (``(B, C, D, H, W)``) use 1x1x1
Conv3d. The adapter sits at ``<site>.adapter`` (``.down``, ``.up``) and runs from a forward
hook, so base state-dict keys are untouched. Adapters add a layer: they cannot be merged.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_petite.models.base import Backbone, PartSites
from napari_petite.peft._sites import get_site_module, hook_output, like, output_widths
from napari_petite.peft.config import MethodConfig

NAME = "adapter"
ADDS_MODULES = True
ATTR = "adapter"


class Adapter(nn.Module):
    """Residual bottleneck ``x + up(act(down(x)))`` over the channel axis of ``layout``."""

    def __init__(self, width: int, reduction: int, layout: str, **kw):
        super().__init__()
        hidden = max(1, width // reduction)
        self.layout = layout
        if layout == "tokens":
            self.down: nn.Module = nn.Linear(width, hidden, **kw)
            self.up: nn.Module = nn.Linear(hidden, width, **kw)
        else:
            self.down = nn.Conv3d(width, hidden, 1, **kw)
            self.up = nn.Conv3d(hidden, width, 1, **kw)
        self.act = nn.GELU()
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    if not sites.ffn:
        return f"adapters need feed-forward or block outputs; the {model.name} {part} has none"
    if any(s.out_slice is not None for s in sites.ffn):
        return "adapters act on a whole output, not on a slice of a fused projection"
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    reduction = config.reduction
    widths = output_widths(model, sites.ffn)
    kw = like(model)
    for site in sites.ffn:
        module = get_site_module(model, site.name)
        hook_output(module, ATTR, Adapter(widths[site.name], reduction, site.layout, **kw))
