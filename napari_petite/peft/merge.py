"""Fold LoRA, SSF and IA³ into the base weights for zero-overhead inference.

``merge_peft(model)`` works in place: every LoRA module gets ``W += (alpha/r) B A`` and turns
back into its plain class (``lora_A``/``lora_B`` disappear), every SSF/IA³ module whose site
can absorb it (see :mod:`~napari_petite.peft.ssf`, :mod:`~napari_petite.peft.ia3`) is folded
and unhooked. Outputs stay the same up to float rounding. Adapters (an extra layer) and VPT
prompts (extra tokens) cannot be folded; they stay in place and the report says why, so a
Mix-PEFT model like PETITE CVT-GAN (VPT encoder + LoRA decoder) still loses its decoder
overhead. With ``strict=True`` anything left over raises ConfigError (after merging the rest,
which never changes outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.peft import ia3, ssf
from napari_petite.peft._sites import is_hooked
from napari_petite.peft.adapter import ATTR as ADAPTER_ATTR
from napari_petite.peft.apply import peft_state
from napari_petite.peft.lora import LoRAMixin, remove_lora
from napari_petite.peft.vpt import GATE_ATTR


@dataclass
class MergeReport:
    merged: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # module name -> why it stays

    @property
    def complete(self) -> bool:
        return not self.kept


def merge_peft(model: nn.Module, *, strict: bool = False) -> MergeReport:
    """Merge every mergeable PEFT module of ``model`` into its weights, in place."""
    report = MergeReport()
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRAMixin):
            remove_lora(module, merge=True)
            report.merged.append(f"{name} (lora)")
        for attr, merge_site in ((ssf.ATTR, ssf.merge_site), (ia3.ATTR, ia3.merge_site)):
            if is_hooked(module, attr):
                reason = merge_site(model, name)
                if reason is None:
                    report.merged.append(f"{name} ({attr})")
                else:
                    report.kept[f"{name}.{attr}"] = reason
        if is_hooked(module, ADAPTER_ATTR):
            report.kept[f"{name}.{ADAPTER_ATTR}"] = "an adapter adds a layer; it cannot be folded"
        for attr in ("prompts", "deep_prompts"):
            if getattr(module, attr, None) is not None and attr in module._parameters:
                report.kept[f"{name}.{attr}"] = "VPT prompts are extra tokens; they stay"
        if getattr(module, GATE_ATTR, None) is not None and GATE_ATTR in module._parameters:
            report.kept[f"{name}.{GATE_ATTR}"] = "the VPT gate belongs to the prompts"
    state = peft_state(model)
    if state is not None:
        state.merged = True
    if strict and report.kept:
        listed = "; ".join(f"{k}: {v}" for k, v in list(report.kept.items())[:4])
        raise ConfigError(f"{len(report.kept)} PEFT module(s) cannot be merged ({listed}); "
                          "the rest was merged. Run them unmerged or choose LoRA, SSF or IA3 "
                          "on foldable sites.")
    return report
