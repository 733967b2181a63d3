"""``full``: fine-tune every parameter of a part (the Full-FT baseline of the paper).

A fully fine-tuned part also keeps its normalisation statistics live during training (see
:func:`napari_petite.peft.apply.train_mode`), exactly as in pre-training.
"""

from __future__ import annotations

from napari_petite.models.base import Backbone, PartSites
from napari_petite.peft.config import MethodConfig

NAME = "full"
ADDS_MODULES = False


def part_parameters(model: Backbone, part: str):
    """(name, parameter) pairs of one part."""
    return [(n, p) for n, p in model.named_parameters() if model.group_of(n) == part]


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    if not part_parameters(model, part):
        return f"the {model.name} {part} has no parameters"
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    for _, p in part_parameters(model, part):
        p.requires_grad_(True)
