"""The Mix-PEFT spec: which method tunes the encoder, which the decoder, plus BitFit.

``MixPEFTSpec(backbone, preset, encoder, decoder, bitfit, params)`` is what a run, an adapter
bundle and the GUI agree on (docs/architecture.md). ``params`` holds the per-method values a
user chose, keyed by method name (``{"lora": {"rank": 8}}``), checked against each method's
typed config (:mod:`napari_petite.peft.config`) when the spec is made; anything not given takes
the paper's default for the backbone:

- LoRA: q/k projections (``targets="qk"``; ``"qkv"`` adds v; CNN parts use their convs), rank 4
  on UNETR and rank 8 / alpha 16 on CVT-GAN (alpha = 2 x rank throughout);
- adapter: bottleneck reduction 4 on UNETR, 8 on CVT-GAN;
- VPT: each host's own default token count (UNETR 50 shallow; CVT-GAN 0/8/32 + 32/8), shallow
  (``deep=True`` for deep prompts), zero-initialised gate where the host supports it;
- SSF and IA³ have no hyper-parameters.

Feasibility is decided from the backbone's declared sites, never from its name: a method fits
a part when the part has the sites it needs, so the Mix-PEFT grid size (12 on CVT-GAN, 9 on
UNETR) follows from structure.
"""

from __future__ import annotations

import copy
import importlib
import json
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

from napari_petite.errors import ConfigError
from napari_petite.peft.config import MethodConfig, method_config

#: every method, in the order the CLI and GUI list them
METHODS: tuple[str, ...] = (
    "none", "full", "layernorm", "bitfit", "lora", "adapter", "ssf", "vpt", "ia3",
)
#: the additive methods the paper's Mix-PEFT grid pairs up (encoder != decoder, + BitFit)
MIX_METHODS: tuple[str, ...] = ("lora", "adapter", "ssf", "vpt")
LABELS = {"none": "no tuning", "full": "full fine-tuning", "layernorm": "norm tuning",
          "bitfit": "BitFit", "lora": "LoRA", "adapter": "adapters", "ssf": "SSF",
          "vpt": "VPT", "ia3": "IA3"}

#: the paper's best Mix-PEFT per backbone ("PETITE"), always with BitFit
PETITE: dict[str, tuple[str, str]] = {"unetr": ("lora", "ssf"), "cvtgan": ("vpt", "lora")}

def method_module(method: str) -> ModuleType:
    """The module implementing ``method`` (``fits`` / ``attach``)."""
    if method not in METHODS:
        raise ConfigError(f"Unknown PEFT method {method!r}; choose one of {', '.join(METHODS)}.")
    return importlib.import_module(f"napari_petite.peft.{method}")


def default_config(backbone: str, method: str) -> MethodConfig:
    """The paper's hyper-parameters of ``method`` on ``backbone`` (generic for others)."""
    return method_config(backbone, method)


@dataclass
class MixPEFTSpec:
    """Encoder method + decoder method + BitFit flag + per-method hyper-parameters."""

    backbone: str
    preset: str
    encoder: str
    decoder: str
    bitfit: bool = True
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, kind in (("backbone", str), ("preset", str), ("encoder", str),
                           ("decoder", str), ("bitfit", bool), ("params", dict)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"The Mix-PEFT spec's {name} must be a "
                                  f"{'true/false' if kind is bool else kind.__name__}, not "
                                  f"{getattr(self, name)!r}.")
        for part in ("encoder", "decoder"):
            method = getattr(self, part)
            if method not in METHODS:
                raise ConfigError(f"Unknown {part} method {method!r}; choose one of "
                                  f"{', '.join(METHODS)}.")
        unknown = sorted(set(self.params) - set(METHODS) - {"head"})
        if unknown:
            raise ConfigError(f"Spec params have unknown method key(s) {unknown}; keys are "
                              "method names (e.g. {'lora': {'rank': 8}}).")
        for method, values in self.params.items():
            if method == "head":
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"The {LABELS[method]} options must be an object of "
                                  f"name: value, not {values!r}.")
            method_config(self.backbone, method, values)  # refuses bad values now
        self.head_trainable()  # and a bad discriminator choice

    # -- hyper-parameters ----------------------------------------------------------------
    def method_config(self, method: str) -> MethodConfig:
        """The typed config of ``method``: this backbone's defaults and the spec's values."""
        return method_config(self.backbone, method, self.params.get(method))

    def head_trainable(self) -> bool:
        """Whether the discriminator trains: only under full fine-tuning of both parts.

        The paper keeps the discriminator frozen under PEFT; ``params["head"] = "full"`` or
        ``"frozen"`` overrides the default.
        """
        head = self.params.get("head")
        if head is None:
            return self.encoder == "full" and self.decoder == "full"
        if head not in ("full", "frozen"):
            raise ConfigError(f"params['head'] must be 'full' or 'frozen', got {head!r}.")
        return head == "full"

    @property
    def label(self) -> str:
        base = f"enc {LABELS[self.encoder]} + dec {LABELS[self.decoder]}"
        return base + (" + BitFit" if self.bitfit else "")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MixPEFTSpec:
        if not isinstance(data, dict):
            raise ConfigError(f"A Mix-PEFT spec is a JSON object, not {type(data).__name__}.")
        fields = ("backbone", "preset", "encoder", "decoder", "bitfit", "params")
        missing = [f for f in fields[:4] if f not in data]
        if missing:
            raise ConfigError(f"Mix-PEFT spec lacks {', '.join(missing)}; it needs backbone, "
                              "preset, encoder and decoder.")
        extra = sorted(set(data) - set(fields))
        if extra:
            raise ConfigError(f"Mix-PEFT spec has unknown field(s) {extra}.")
        return cls(**{k: copy.deepcopy(data[k]) for k in fields if k in data})

    @classmethod
    def from_json(cls, text: str) -> MixPEFTSpec:
        from napari_petite.io.jsonfile import parse_json

        return cls.from_dict(parse_json(text, what="The Mix-PEFT spec", error=ConfigError,
                                        hint="write it as an object"))


def petite_spec(backbone: str, preset: str) -> MixPEFTSpec:
    """The paper's best combination on ``backbone`` (UNETR: LoRA r4 encoder + SSF decoder;
    CVT-GAN: VPT encoder + LoRA r8 decoder; BitFit on both)."""
    if backbone not in PETITE:
        raise ConfigError(f"The paper reports no PETITE combination for {backbone!r}; it "
                          f"covers {', '.join(PETITE)}.")
    encoder, decoder = PETITE[backbone]
    return MixPEFTSpec(backbone, preset, encoder, decoder, True)


# -- feasibility -------------------------------------------------------------------------------
def why_not(model, part: str, method: str, config: MethodConfig | None = None) -> str | None:
    """None when ``method`` can tune ``part`` of ``model``, else the reason it cannot."""
    module = method_module(method)
    config = default_config(model.name, method) if config is None else config
    return module.why_not(model, part, model.sites(part), config)


def fitting_methods(model, part: str, candidates: tuple[str, ...] = METHODS) -> list[str]:
    return [m for m in candidates if why_not(model, part, m) is None]


def _or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def check_fits(model, spec: MixPEFTSpec) -> None:
    """Raise ConfigError when a part's method does not fit, naming the methods that do."""
    for part in ("encoder", "decoder"):
        method = getattr(spec, part)
        reason = why_not(model, part, method, spec.method_config(method))
        if reason is not None:
            mix = [m for m in fitting_methods(model, part, MIX_METHODS) if m != method]
            others = mix or fitting_methods(model, part)
            raise ConfigError(f"{reason[0].upper()}{reason[1:]}. Choose {_or_list(others)} "
                              f"for the {part}.")


def _model_for(backbone) -> Any:
    """A backbone instance: given, or built (small preset) on the meta device."""
    if not isinstance(backbone, str):
        return backbone
    import torch

    from napari_petite.models.registry import build_model

    with torch.device("meta"):
        return build_model(backbone, "small")


def feasible_combinations(backbone, *, bitfit: bool = True) -> list[MixPEFTSpec]:
    """The paper's Mix-PEFT grid on ``backbone`` (a name or a Backbone instance).

    Every (encoder, decoder) pair of MIX_METHODS with encoder != decoder where each method
    fits its part, always with BitFit: 12 on CVT-GAN, 9 on UNETR (no VPT in a CNN decoder).
    """
    model = _model_for(backbone)
    enc = fitting_methods(model, "encoder", MIX_METHODS)
    dec = fitting_methods(model, "decoder", MIX_METHODS)
    return [MixPEFTSpec(model.name, model.preset, e, d, bitfit)
            for e in enc for d in dec if e != d]
