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


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, tuple | list):
        return "a list like " + str(list(value)).replace(" ", "")
    return type(value).__name__


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool) and (
            value > 0 if default > 0 else value >= 0)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    if isinstance(default, tuple | list):
        items = [value] * len(default) if isinstance(value, int) else value
        return isinstance(items, tuple | list) and len(items) == len(default) and all(
            _same_kind(v, d) for v, d in zip(items, default, strict=True))
    return isinstance(value, type(default))


def check_overrides(backbone: str, preset: str, overrides: dict[str, Any]) -> None:
    """Refuse overrides the preset does not have, or of another kind than its value (a word
    where a size is expected), in one sentence, before a network is built."""
    cls = backbone_class(backbone)
    if preset not in cls.PRESETS:
        raise ConfigError(
            f"Unknown preset {preset!r} for backbone {backbone!r}; choose one of "
            f"{', '.join(cls.PRESETS)}."
        )
    defaults = cls.PRESETS[preset]
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"Unknown {backbone} option(s) {', '.join(unknown)}; valid options "
                          f"are {', '.join(sorted(defaults))}.")
    for key, value in overrides.items():
        if not _same_kind(value, defaults[key]):
            raise ConfigError(f"The {backbone} option {key}={value!r} must be "
                              f"{_type_name(defaults[key])} (positive).")


def build_model(backbone: str, preset: str = "small", **overrides: Any) -> Backbone:
    """A freshly initialised ``backbone`` built from ``preset`` with ``overrides`` applied."""
    check_overrides(backbone, preset, overrides)
    return backbone_class(backbone)(preset, **overrides)
