"""``vpt``: visual prompt tuning (Jia et al., ECCV 2022) with zero-initialised gating.

Learnable prompt tokens are installed on each prompt host (:class:`~napari_petite.models.base.
PromptSite`): shallow ``prompts`` ``(1, n, dim)`` are prepended once and carried through the
host's blocks; deep ``deep_prompts`` ``(depth, n, dim)`` are replaced before every block. The
host strips them before its output, so the rest of the network never sees them. ``n`` defaults
to the host's ``default_tokens`` (UNETR: 50 on the ViT; CVT-GAN: 0/8/32 on the encoder stages
and 32/8 on the decoder stages, as in the paper); a host with 0 tokens gets none.

Why a gate
----------
Plain VPT cannot leave the model unchanged at initialisation: whatever value a prompt has,
its key enters every image token's softmax and takes attention mass from the image keys, so
the output moves (zero prompts too: after LayerNorm they become the LN bias, whose key is not
-inf). Keys cannot be "masked until trained" either: a masked key has no gradient.

So prompts attend through their own softmax, scaled by a learnable gate that starts at 0 —
the zero-init attention of LLaMA-Adapter (Zhang et al., ICLR 2024)::

    out = softmax(q K_img^T / sqrt(d)) V_img + gate[i] * softmax(q K_p^T / sqrt(d)) V_p

for block ``i`` of the host (:func:`gated_prompt_attention` is the reference). At init
``gate = 0`` and the image tokens' attention is exactly the base model's, so the whole output
is identical. On the first step ``d out / d gate[i] = softmax(q K_p^T) V_p`` is non-zero, so the
gates learn at once; the prompts receive gradient ``∝ gate`` and learn from the second step on
(the same warm-up a zero up-projection gives an adapter).

The gate is a host parameter ``prompt_gate`` of shape ``(depth,)``. A host supports it by
registering ``prompt_gate`` (``None``) and using :func:`gated_prompt_attention`'s formula in
its blocks when the gate is set. With ``gate="auto"`` (default) the gate is installed where the
host supports it; a host without support gets plain (ungated) VPT, which changes the output
at init — :func:`napari_petite.peft.apply.apply_spec` records that in its report notes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from napari_petite.models.base import Backbone, PartSites, PromptSite
from napari_petite.peft._sites import get_site_module, like
from napari_petite.peft.config import MethodConfig

NAME = "vpt"
ADDS_MODULES = True
GATE_ATTR = "prompt_gate"


def gated_prompt_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_prompts: int,
                           gate: torch.Tensor | None) -> torch.Tensor:
    """Attention where the first ``n_prompts`` keys/values are prompts behind a scalar gate.

    ``q`` (B, H, Nq, d), ``k``/``v`` (B, H, Nk, d). With ``gate`` None (or no prompts) this is
    ordinary softmax attention over all keys.
    """
    import torch.nn.functional as F

    if gate is None or n_prompts == 0:
        return F.scaled_dot_product_attention(q, k, v)
    image = F.scaled_dot_product_attention(q, k[:, :, n_prompts:], v[:, :, n_prompts:])
    prompt = F.scaled_dot_product_attention(q, k[:, :, :n_prompts], v[:, :, :n_prompts])
    return image + gate.to(q.dtype) * prompt


def host_tokens(site: PromptSite, config: MethodConfig) -> int:
    return site.default_tokens if config.tokens is None else int(config.tokens)


def supports_gate(host: nn.Module) -> bool:
    return hasattr(host, GATE_ATTR)


def why_not(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> str | None:
    if not sites.prompts:
        return (f"prompt tokens (VPT) need a transformer, and the {model.name} {part} is a "
                "convolutional network")
    if not any(host_tokens(s, config) > 0 for s in sites.prompts):
        return f"every prompt host of the {model.name} {part} is set to 0 tokens"
    if config.gate is True:
        missing = [s.name for s in sites.prompts
                   if not supports_gate(get_site_module(model, s.name))]
        if missing:
            return f"gated VPT was requested but {', '.join(missing)} has no prompt_gate"
    return None


def attach(model: Backbone, part: str, sites: PartSites, config: MethodConfig) -> list[str]:
    """Install prompts (and gates); returns notes for the report (ungated hosts)."""
    deep, gate_mode = config.deep, config.gate
    notes = []
    kw = like(model)
    for site in sites.prompts:
        n = host_tokens(site, config)
        if n == 0:
            continue
        host = get_site_module(model, site.name)
        shape = (site.depth if deep else 1, n, site.dim)
        bound = math.sqrt(6.0 / (n + site.dim))  # Xavier-uniform over (tokens, dim)
        prompts = nn.Parameter(torch.empty(shape, **kw).uniform_(-bound, bound))
        host.register_parameter("deep_prompts" if deep else "prompts", prompts)
        if gate_mode is not False and supports_gate(host):
            host.register_parameter(GATE_ATTR, nn.Parameter(torch.zeros(site.depth, **kw)))
        else:
            notes.append(f"VPT on {site.name} is ungated (the host has no {GATE_ATTR}): the "
                         "output changes at initialisation")
    return notes
