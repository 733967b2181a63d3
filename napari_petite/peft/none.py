"""``none``: leave a part exactly as pre-trained (no tensor of it trains)."""

from __future__ import annotations

from napari_petite.models.base import Backbone, PartSites
from napari_petite.peft.config import MethodConfig

NAME = "none"
#: a selection method: it adds no module, so there is nothing to merge
ADDS_MODULES = False


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    """Always applicable."""
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> None:
    """Nothing to do: :func:`napari_petite.peft.apply.apply_spec` froze everything already."""
