"""``layernorm``: train the affine parameters of every normalisation layer of a part.

Named after the paper's "LayerNorm tuning" but covers every norm with affine parameters:
LayerNorm, GroupNorm, BatchNorm* and InstanceNorm* (``affine=True``). Running statistics stay
frozen (``train_mode`` keeps those layers in eval mode): only the scale and shift adapt.
"""

from __future__ import annotations

from torch import nn

from napari_petite.models.base import Backbone, PartSites
from napari_petite.peft._sites import NORM_TYPES
from napari_petite.peft.config import MethodConfig

NAME = "layernorm"
ADDS_MODULES = False


def norm_parameters(model: Backbone, part: str) -> list[nn.Parameter]:
    """Affine parameters (weight, bias) of the norm layers of one part."""
    found = []
    for _, module in model.modules_in(part):
        if isinstance(module, NORM_TYPES):
            found.extend(p for p in module.parameters(recurse=False))
    return found


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    if not norm_parameters(model, part):
        return (f"the {model.name} {part} has no normalisation layer with affine parameters "
                "(e.g. InstanceNorm without affine), so norm tuning would train nothing")
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    for p in norm_parameters(model, part):
        p.requires_grad_(True)
