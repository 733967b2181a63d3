"""``bitfit``: train only the bias terms (Ben Zaken et al., 2022).

Used on its own as a method for a part, and as the ``bitfit`` flag of every Mix-PEFT spec,
which unfreezes the biases of the encoder *and* the decoder (never of the discriminator).
The released PETITE code forgot this flag on UNETR; here it is one function both paths call.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from napari_petite.models.base import Backbone, PartSites
from napari_petite.peft.config import MethodConfig

NAME = "bitfit"
ADDS_MODULES = False


def bias_parameters(model: Backbone, parts: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every ``bias`` tensor in ``parts``."""
    parts = set(parts)
    return [
        (name, p) for name, p in model.named_parameters()
        if name.rsplit(".", 1)[-1] == "bias" and model.group_of(name) in parts
    ]


def unfreeze_biases(model: Backbone, parts: Iterable[str]) -> None:
    for _, p in bias_parameters(model, parts):
        p.requires_grad_(True)


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    if not bias_parameters(model, [part]):
        return f"the {model.name} {part} has no bias terms"
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    unfreeze_biases(model, [part])
