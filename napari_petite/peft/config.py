"""Typed hyper-parameters: one small config dataclass per PEFT method, in one registry.

A Mix-PEFT spec stores only the values a user chose (JSON, in adapter cards); everything else
comes from here. :func:`method_config` turns a method's stored values into its dataclass,
filling the paper's per-backbone defaults and refusing unknown keys, wrong types and values
out of range with a sentence, before any model is touched. Each field carries its range,
choices and a help text in its metadata, which is what the Fine-tune dock builds its form from
(:func:`options`), so the form can never offer a value the library would refuse.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from napari_petite.errors import ConfigError


def option(default: Any, *, kind: type, label: str, help: str, low: float | None = None,
           high: float | None = None, choices: tuple | None = None) -> Any:
    """A config field with the metadata the validation and the GUI form read (``kind``: the
    value's type; ``None`` is allowed where the default is ``None``)."""
    return field(default=default, metadata={"kind": kind, "label": label, "help": help,
                                            "low": low, "high": high, "choices": choices})


@dataclass(frozen=True)
class MethodConfig:
    """A method without hyper-parameters (none, full, layernorm, bitfit, SSF, IA³)."""

    method: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Raise ConfigError naming the first value of the wrong type or out of range."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            what = f"{self.method} option {f.name!r}"
            if meta.get("choices") is not None:
                if value not in meta["choices"]:
                    shown = ", ".join(repr(c) for c in meta["choices"])
                    raise ConfigError(f"The {what} must be one of {shown}, not {value!r}.")
                continue
            if value is None and f.default is None:
                continue
            kind = meta["kind"]
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is float:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok:
                raise ConfigError(f"The {what} must be {kind.__name__}, not {value!r}.")
            low, high = meta.get("low"), meta.get("high")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ConfigError(f"The {what} must lie in [{low:g}, {high:g}], not {value!r}."
                                  if high is not None else
                                  f"The {what} must be at least {low:g}, not {value!r}.")


@dataclass(frozen=True)
class NoneConfig(MethodConfig):
    method: ClassVar[str] = "none"


@dataclass(frozen=True)
class FullConfig(MethodConfig):
    method: ClassVar[str] = "full"


@dataclass(frozen=True)
class LayerNormConfig(MethodConfig):
    method: ClassVar[str] = "layernorm"


@dataclass(frozen=True)
class BitFitConfig(MethodConfig):
    method: ClassVar[str] = "bitfit"


@dataclass(frozen=True)
class SSFConfig(MethodConfig):
    method: ClassVar[str] = "ssf"


@dataclass(frozen=True)
class IA3Config(MethodConfig):
    method: ClassVar[str] = "ia3"


@dataclass(frozen=True)
class LoRAConfig(MethodConfig):
    """Low-rank update ``B A`` (scaled by alpha / rank) beside the frozen weight."""

    method: ClassVar[str] = "lora"
    rank: int = option(4, kind=int, low=1, high=256, label="LoRA rank",
                       help="rank r of the low-rank update; trainable tensors grow with r")
    alpha: float | None = option(None, kind=float, low=0.0, high=4096.0, label="LoRA alpha",
                                 help="the update is scaled by alpha / rank (empty: 2 x rank, "
                                 "as in the paper)")
    targets: str = option("qk", kind=str, choices=("qk", "qkv", "convs", "all"),
                          label="LoRA targets",
                          help="qk: query and key projections (paper); qkv adds value; a CNN "
                          "part uses its convolutions; all = attention and convolutions")

    @property
    def scale_alpha(self) -> float:
        return 2.0 * self.rank if self.alpha is None else float(self.alpha)


@dataclass(frozen=True)
class AdapterConfig(MethodConfig):
    """Houlsby bottleneck after the feed-forward block (only the up-projection starts at 0)."""

    method: ClassVar[str] = "adapter"
    reduction: int = option(4, kind=int, low=1, high=64, label="adapter reduction",
                            help="bottleneck width = channels / reduction; larger is smaller")


@dataclass(frozen=True)
class VPTConfig(MethodConfig):
    """Learned prompt tokens (UNETR) or prompt channels (CVT-GAN stages)."""

    method: ClassVar[str] = "vpt"
    tokens: int | None = option(None, kind=int, low=0, high=512, label="VPT tokens",
                                help="prompt tokens per host (empty: each host's default, "
                                "UNETR 50, CVT-GAN 0/8/32 and 32/8)")
    deep: bool = option(False, kind=bool, label="deep prompts",
                        help="a new set of prompts in every block instead of one at the input")
    gate: str | bool = option("auto", kind=str, choices=("auto", True, False), label="VPT gate",
                              help="a zero-initialised gate keeps the output unchanged at the "
                              "start (auto: wherever the host supports one)")


#: every method's config class, by method name
REGISTRY: dict[str, type[MethodConfig]] = {c.method: c for c in (
    NoneConfig, FullConfig, LayerNormConfig, BitFitConfig, LoRAConfig, AdapterConfig,
    SSFConfig, VPTConfig, IA3Config)}
#: the paper's per-backbone choices: LoRA rank 4 on UNETR, 8 on CVT-GAN (alpha 2 x rank,
#: i.e. 8 and 16); adapter reduction 4 on UNETR, 8 on CVT-GAN
BACKBONE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "unetr": {"lora": {"rank": 4}, "adapter": {"reduction": 4}},
    "cvtgan": {"lora": {"rank": 8}, "adapter": {"reduction": 8}},
}


def config_class(method: str) -> type[MethodConfig]:
    try:
        return REGISTRY[method]
    except KeyError:
        raise ConfigError(f"Unknown PEFT method {method!r}; choose one of "
                          f"{', '.join(REGISTRY)}.") from None


def method_config(backbone: str, method: str, values: dict[str, Any] | None = None
                  ) -> MethodConfig:
    """The validated config of ``method`` on ``backbone``: its defaults, then ``values``."""
    cls = config_class(method)
    names = {f.name for f in dataclasses.fields(cls)}
    values = dict(values or {})
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{method} has no option(s) {unknown}; its options are "
                          f"{', '.join(sorted(names)) or 'none'}.")
    merged = {**BACKBONE_DEFAULTS.get(backbone, {}).get(method, {}), **values}
    config = cls(**merged)
    config.check()
    return config


def options(method: str) -> list[dataclasses.Field]:
    """The fields of a method's config (name, default, metadata), for forms and help."""
    return list(dataclasses.fields(config_class(method)))
