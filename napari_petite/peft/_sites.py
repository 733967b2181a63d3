"""Plumbing shared by the PEFT methods: site modules, their output width, output hooks.

A method that acts on a site's *output* (adapter, SSF, IA³) registers its module as a child
of the site module under a fixed attribute name (``adapter``, ``ssf``, ``ia3``) and a forward
hook that passes the output through it. So the state-dict keys of the base weights never
change (``blocks.0.mlp.fc2.weight`` stays that), the new tensors sit under the site's name
(``blocks.0.mlp.ssf.scale``), every new tensor belongs to the same backbone part as its site,
and ``copy.deepcopy`` keeps hook and module paired (the hook object holds the module, and
deepcopy's memo maps both to the copy).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from napari_petite.models.base import Backbone, Site

#: norm layers whose affine parameters ``layernorm`` trains and whose statistics ``train_mode``
#: freezes (BatchNorm*/InstanceNorm* share ``_NormBase``)
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def get_site_module(model: nn.Module, name: str) -> nn.Module:
    """The module a site names; a wrong name is a backbone bug, so a plain ValueError."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{type(model).__name__}.sites() names {name!r}, which is no module "
                         "of the model") from None


def group_by_module(sites: Iterable[Site]) -> dict[str, list[Site]]:
    """Sites grouped by module name, first-seen order (fused qkv gives two sites, one module)."""
    grouped: dict[str, list[Site]] = {}
    for site in sites:
        grouped.setdefault(site.name, []).append(site)
    return grouped


def merged_slices(sites: list[Site], width: int) -> tuple[tuple[int, int], ...]:
    """The output ranges a module's sites cover, sorted; overlapping ranges are an error."""
    ranges = sorted((0, width) if s.out_slice is None else tuple(s.out_slice) for s in sites)
    for (a0, a1), (b0, b1) in itertools.pairwise(ranges):
        if b0 < a1:
            raise ValueError(f"sites on {sites[0].name!r} overlap: {(a0, a1)} and {(b0, b1)}")
    for a, b in ranges:
        if not 0 <= a < b <= width:
            raise ValueError(f"site slice {(a, b)} on {sites[0].name!r} is outside 0..{width}")
    return tuple(ranges)  # type: ignore[return-value]


def typed_width(module: nn.Module) -> int | None:
    """Output channels known from the module type alone (None for blocks and activations)."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, nn.LayerNorm | getattr(nn, "RMSNorm", nn.LayerNorm)):
        shape = module.normalized_shape
        return int(shape[-1]) if shape else None
    return None


def output_widths(model: Backbone, sites: Iterable[Site]) -> dict[str, int]:
    """Output channel count of every site module (channel axis per the site's layout).

    Typed modules answer directly; for blocks and activations one no-grad probe forward at
    the backbone's patch size records the shapes (in eval mode, so no statistics move).
    """
    sites = list(sites)
    widths: dict[str, int] = {}
    pending: dict[str, Site] = {}
    for site in sites:
        width = typed_width(get_site_module(model, site.name))
        if width is None:
            pending[site.name] = site
        else:
            widths[site.name] = width
    if pending:
        widths.update(_probe_widths(model, pending))
    return widths


def run_probe(model: Backbone) -> None:
    """One no-grad forward at the backbone's patch size, in eval mode (no statistic moves)."""
    was_training = {m: m.training for m in model.modules()}
    try:
        param = next(model.parameters())
        x = torch.zeros((1, 1, *model.patch_size), device=param.device, dtype=param.dtype)
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for m, flag in was_training.items():
            m.training = flag


#: widths found by probing, per (backbone class, config, site names): structure only
_WIDTH_CACHE: dict[tuple, dict[str, int]] = {}


def _probe_widths(model: Backbone, pending: dict[str, Site]) -> dict[str, int]:
    key = (type(model), repr(sorted(model.config.items())))
    cached = _WIDTH_CACHE.get(key, {})
    if all(n in cached for n in pending):
        return {n: cached[n] for n in pending}
    # one probe answers every untyped site of the backbone (later methods then need none)
    pending = dict(pending)
    for part in ("encoder", "decoder"):
        try:
            sites = model.sites(part)
        except Exception:  # a backbone without this part
            continue
        for site in (*sites.ffn, *sites.ssf, *sites.ia3):
            if site.name not in pending and typed_width(get_site_module(model, site.name)) is None:
                pending[site.name] = site
    probe_model = model
    if any(p.is_meta for p in model.parameters()):
        # meta tensors carry shapes but some kernels (instance norm) refuse them: probe an
        # uninitialised CPU copy instead (no weight init, shapes are all that matter)
        probe_model = copy.deepcopy(model).to_empty(device="cpu")
    found: dict[str, int] = {}
    handles = []
    for name, site in pending.items():
        axis = -1 if site.layout == "tokens" else 1

        def record(_mod, _args, out, name=name, axis=axis):
            if isinstance(out, torch.Tensor):
                found.setdefault(name, int(out.shape[axis]))

        handles.append(get_site_module(probe_model, name).register_forward_hook(record))
    try:
        run_probe(probe_model)
    finally:
        for h in handles:
            h.remove()
    missing = sorted(set(pending) - set(found))
    if missing:
        raise ValueError(f"sites {missing} produced no tensor in a forward pass")
    _WIDTH_CACHE[key] = {**cached, **found}
    return found


def channel_shape(ndim: int, layout: str, width: int) -> list[int]:
    """Broadcast shape of a per-channel vector for an output of ``ndim`` dimensions."""
    shape = [1] * ndim
    shape[-1 if layout == "tokens" else 1] = width
    return shape


def expand_vector(values: torch.Tensor, slices: tuple[tuple[int, int], ...], width: int,
                  fill: float) -> torch.Tensor:
    """A length-``width`` vector: ``values`` (concatenated slices) inside ``slices``, ``fill``
    elsewhere. Built with ``cat`` so gradients reach ``values`` only where they act."""
    if slices == ((0, width),):
        return values
    pieces, pos, used = [], 0, 0
    for start, stop in slices:
        if start > pos:
            pieces.append(values.new_full((start - pos,), fill))
        pieces.append(values[used: used + stop - start])
        used += stop - start
        pos = stop
    if pos < width:
        pieces.append(values.new_full((width - pos,), fill))
    return torch.cat(pieces)


class OutputHook:
    """Forward hook that passes a site's output through a PEFT module."""

    def __init__(self, peft: nn.Module):
        self.peft = peft

    def __call__(self, _module: nn.Module, _args: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"{type(self.peft).__name__} needs a tensor output, got "
                            f"{type(output).__name__}")
        return self.peft(output)


def hook_output(module: nn.Module, attr: str, peft: nn.Module) -> None:
    """Register ``peft`` as ``module.<attr>`` and run it on ``module``'s output."""
    if attr in module._modules or hasattr(module, attr):
        raise ValueError(f"{type(module).__name__} already has an attribute {attr!r}")
    module.add_module(attr, peft)
    module.register_forward_hook(OutputHook(peft))


def hook_per_channel(model: Backbone, sites: Iterable[Site], attr: str, factory) -> None:
    """Hook ``factory(width, slices, layout, **like(model))`` onto every site module's output.

    SSF and IA³ both attach one per-channel module per site module (its declared slices
    merged), so they share this loop.
    """
    sites = tuple(sites)
    widths = output_widths(model, sites)
    kw = like(model)
    for name, group in group_by_module(sites).items():
        slices = merged_slices(group, widths[name])
        hook_output(get_site_module(model, name), attr,
                    factory(widths[name], slices, group[0].layout, **kw))


def unhook_output(module: nn.Module, attr: str) -> nn.Module:
    """Undo :func:`hook_output`; returns the detached PEFT module."""
    peft = module._modules.pop(attr)
    for key, hook in list(module._forward_hooks.items()):
        if isinstance(hook, OutputHook) and hook.peft is peft:
            del module._forward_hooks[key]
            module._forward_hooks_with_kwargs.pop(key, None)
            module._forward_hooks_always_called.pop(key, None)
    return peft


def is_hooked(module: nn.Module, attr: str) -> bool:
    return attr in module._modules and any(
        isinstance(h, OutputHook) and h.peft is module._modules[attr]
        for h in module._forward_hooks.values()
    )


def new_parameter(data: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(data, requires_grad=True)


def like(reference: nn.Module) -> dict[str, Any]:
    """``device``/``dtype`` keyword arguments matching a module's first parameter or buffer."""
    for t in (*reference.parameters(), *reference.buffers()):
        if t.is_floating_point():
            return {"device": t.device, "dtype": t.dtype}
    return {}
