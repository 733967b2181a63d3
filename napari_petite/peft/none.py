"""``none``: leave a part exactly as pre-trained (no tensor of it trains)."""

from __future__ import annotations

from napari_petite.models.base import Backbone, PartSites

NAME = "none"
#: a selection method: it adds no module, so there is nothing to merge
ADDS_MODULES = False


def fits(model: Backbone, part: str, sites: PartSites, params: dict) -> str | None:
    """Always applicable."""
    return None


def attach(model: Backbone, part: str, sites: PartSites, params: dict) -> None:
    """Nothing to do: :func:`napari_petite.peft.apply.apply_spec` froze everything already."""
