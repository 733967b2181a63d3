"""Backbones by name: the one place the CLI, the GUI and checkpoints turn a name into a model.

Each backbone module is imported only when asked for, so listing names (for a CLI choice or
a combo box) does not build or import any network code.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from napari_petite.errors import ConfigError
from napari_petite.models.base import Backbone

#: backbone name -> (module, class); the class's ``name`` attribute must equal the key
_BACKBONES: dict[str, tuple[str, str]] = {
    "unetr": ("napari_petite.models.unetr", "UNETRBackbone"),
    "cvtgan": ("napari_petite.models.cvtgan", "CvTGAN"),
}

#: the smallest configs that still run every code path (32³ windows, a few channels):
#: for tests and smoke runs of the whole pipeline, far too small to learn anything
_SMOKE_OVERRIDES: dict[str, dict[str, Any]] = {
    "unetr": dict(hidden_size=48, num_heads=4, mlp_dim=96, feature_size=8,
                  patch_size=(32, 32, 32)),
    "cvtgan": dict(stem_channels=8, channels=(8, 16, 32), disc_channels=(8, 16, 16),
                   patch_size=(32, 32, 32)),
}


def backbone_names() -> list[str]:
    """Names of the backbones whose module is installed, in registry order."""
    return [name for name, (module, _) in _BACKBONES.items()
            if importlib.util.find_spec(module) is not None]


def backbone_class(name: str) -> type[Backbone]:
    """The :class:`Backbone` subclass registered as ``name`` (imports its module)."""
    if name not in backbone_names():
        raise ConfigError(
            f"Unknown backbone {name!r}; choose one of {', '.join(backbone_names())}."
        )
    module_name, class_name = _BACKBONES[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Backbone)) or cls.name != name:
        raise TypeError(f"{module_name}.{class_name} is not the Backbone named {name!r}")
    return cls


def preset_names(backbone: str) -> list[str]:
    """Preset names of a backbone (``paper``, ``small``, ...)."""
    return list(backbone_class(backbone).PRESETS)


def smoke_overrides(backbone: str) -> dict[str, Any]:
    """Overrides (on the ``small`` preset) giving a tiny, fast network of ``backbone``."""
    backbone_class(backbone)
    return dict(_SMOKE_OVERRIDES.get(backbone, {}))


def build_model(backbone: str, preset: str = "small", **overrides: Any) -> Backbone:
    """A freshly initialised ``backbone`` built from ``preset`` with ``overrides`` applied."""
    cls = backbone_class(backbone)
    if preset not in cls.PRESETS:
        raise ConfigError(
            f"Unknown preset {preset!r} for backbone {backbone!r}; choose one of "
            f"{', '.join(cls.PRESETS)}."
        )
    return cls(preset, **overrides)
