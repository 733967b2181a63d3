"""Apply a Mix-PEFT spec to a backbone: freeze everything, attach, unfreeze, count.

Order: (0) every method's config is validated and checked to fit, before anything changes;
(1) every base parameter is frozen; (2) each part's method attaches its modules (new
tensors are trainable) or unfreezes its selection (``full``, ``layernorm``, ``bitfit``);
(3) the spec's ``bitfit`` flag unfreezes the biases of the encoder and decoder; (4) the
discriminator (``head``) stays frozen unless both parts are fully fine-tuned (paper).

The percentage reported is **trainable / total parameters of the denoiser** (the generator:
encoder + decoder, *including* the tensors PEFT added); the discriminator is excluded from
both, nothing else is. The state is recorded on the model (``model.peft_state``) so that
:func:`train_mode`, bundles and merging know what was done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.models.base import Backbone
from napari_petite.peft.bitfit import unfreeze_biases
from napari_petite.peft.spec import MixPEFTSpec, check_fits, method_module

TUNED_PARTS = ("encoder", "decoder")
#: prompt parameters a VPT attach registers on its hosts (empty until then)
PROMPT_ATTRS = ("prompts", "deep_prompts", "prompt_gate")


@dataclass
class PEFTReport:
    """What a spec made trainable, and how much of the denoiser that is."""

    spec: dict[str, Any]
    trainable: list[str]
    n_trainable: int
    n_total: int
    n_base: int
    n_added: int
    percent: float
    by_part: dict[str, dict[str, int]]
    head_trainable: int = 0
    notes: list[str] = field(default_factory=list)
    denominator: str = ("all parameters of the denoiser (encoder + decoder, including the "
                        "added PEFT tensors); the discriminator is excluded")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.n_trainable:,} of {self.n_total:,} parameters trainable "
                f"({self.percent:.3f} % of the denoiser)")


@dataclass
class PEFTState:
    """Recorded on a model by :func:`apply_spec`."""

    spec: MixPEFTSpec
    report: PEFTReport
    live_parts: tuple[str, ...]  # parts whose norm statistics keep updating (``full``)
    merged: bool = False
    base_grads: dict[str, bool] = field(default_factory=dict)  # before the spec, for undo


def peft_state(model: nn.Module) -> PEFTState | None:
    return model.__dict__.get("peft_state")


def _count(model: Backbone, names: set[str]) -> dict[str, dict[str, int]]:
    by_part: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        part = model.group_of(name)
        entry = by_part.setdefault(part, {"trainable": 0, "total": 0, "added": 0})
        entry["total"] += p.numel()
        entry["trainable"] += p.numel() if p.requires_grad else 0
        entry["added"] += 0 if name in names else p.numel()
    return by_part


def apply_spec(model: Backbone, spec: MixPEFTSpec) -> PEFTReport:
    """Apply ``spec`` to a freshly built (or freshly loaded) base model, in place."""
    if peft_state(model) is not None:
        raise ConfigError("This model already carries PEFT modules; apply a spec to a fresh "
                          "base model (rebuild it or load the base checkpoint again).")
    if spec.backbone != model.name:
        raise ConfigError(f"The spec is for backbone {spec.backbone!r} but the model is "
                          f"{model.name!r}; build the {spec.backbone} model or change the spec.")
    if spec.preset != model.preset:
        raise ConfigError(f"The spec is for preset {spec.preset!r} but the model was built "
                          f"with {model.preset!r}; use matching presets.")
    configs = {part: spec.method_config(getattr(spec, part)) for part in TUNED_PARTS}
    check_fits(model, spec)
    head_trainable = spec.head_trainable()
    base_names = {n for n, _ in model.named_parameters()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}

    for p in model.parameters():
        p.requires_grad_(False)
    notes: list[str] = []
    try:
        for part in TUNED_PARTS:
            result = method_module(getattr(spec, part)).attach(model, part, model.sites(part),
                                                               configs[part])
            notes.extend(result or [])
    except BaseException:
        _undo(model, grads)  # all or nothing: the caller gets its base model back
        raise
    if spec.bitfit:
        unfreeze_biases(model, TUNED_PARTS)
    if head_trainable and "head" in model.parts():
        for name, p in model.named_parameters():
            if model.group_of(name) == "head":
                p.requires_grad_(True)

    by_part = _count(model, base_names)
    tuned = [by_part.get(p, {"trainable": 0, "total": 0, "added": 0}) for p in TUNED_PARTS]
    n_trainable = sum(e["trainable"] for e in tuned)
    n_total = sum(e["total"] for e in tuned)
    n_added = sum(e["added"] for e in tuned)
    report = PEFTReport(
        spec=spec.to_dict(),
        trainable=[n for n, p in model.named_parameters() if p.requires_grad],
        n_trainable=n_trainable,
        n_total=n_total,
        n_base=n_total - n_added,
        n_added=n_added,
        percent=100.0 * n_trainable / max(n_total, 1),
        by_part=by_part,
        head_trainable=by_part.get("head", {}).get("trainable", 0),
        notes=notes,
    )
    live = tuple(p for p in TUNED_PARTS if getattr(spec, p) == "full")
    live += ("head",) if head_trainable else ()
    model.__dict__["peft_state"] = PEFTState(spec, report, live, base_grads=grads)
    return report


def remove_spec(model: Backbone) -> None:
    """Take an applied (unmerged) spec off again: the model is its base network once more.

    What makes loading transactional: an adapter whose tensors turn out not to fit is removed
    before the error reaches the caller.
    """
    state = peft_state(model)
    if state is None:
        return
    if state.merged:
        raise ConfigError("This model's PEFT modules were merged into its weights and cannot "
                          "be taken off; load the base checkpoint again.")
    _undo(model, state.base_grads)
    model.__dict__.pop("peft_state", None)


def _undo(model: Backbone, grads: dict[str, bool]) -> None:
    """Take off whatever a failed :func:`apply_spec` attached (LoRA wrappers, output hooks,
    prompts) and restore every base tensor's ``requires_grad``."""
    from napari_petite.peft._sites import is_hooked, unhook_output
    from napari_petite.peft.lora import LoRAMixin, remove_lora

    for module in list(model.modules()):
        if isinstance(module, LoRAMixin):
            remove_lora(module, merge=False)
        for attr in list(module._modules):
            if is_hooked(module, attr):
                unhook_output(module, attr)
        for name in PROMPT_ATTRS:
            if getattr(module, name, None) is not None and name in module._parameters:
                module.register_parameter(name, None)
    for name, p in model.named_parameters():
        p.requires_grad_(grads.get(name, False))


def frozen_norms(model: Backbone) -> list[nn.Module]:
    """Norm layers with running statistics that must not update under this spec.

    Statistics are part of what a PEFT run must not change: they are not trainable tensors,
    so they would escape the adapter bundle. Only fully fine-tuned parts keep them live.
    """
    state = peft_state(model)
    live = state.live_parts if state is not None else ("encoder", "decoder", "head")
    prefixes = model.group_prefixes()
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            part = next((p for p, pre in prefixes.items()
                         if any(name.startswith(x) for x in pre)), None)
            if part not in live:
                out.append(module)
    return out


def train_mode(model: Backbone, mode: bool = True) -> Backbone:
    """``model.train(mode)``, but frozen norm layers stay in eval mode (statistics fixed)."""
    model.train(mode)
    if mode:
        for module in frozen_norms(model):
            module.eval()
    return model


def trainable_state(model: Backbone) -> dict[str, Any]:
    """The tensors an adapter bundle stores: every trainable parameter, plus the running
    statistics of norm layers in fully fine-tuned parts (they change during training)."""
    state = peft_state(model)
    frozen = {id(m) for m in frozen_norms(model)}
    tensors = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if state is not None and state.live_parts:
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and id(module) not in frozen:
                for bname, buf in module.named_buffers(recurse=False):
                    if buf is not None:
                        tensors[f"{name}.{bname}" if name else bname] = buf
    return tensors
