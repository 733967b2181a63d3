"""What every denoising backbone declares so that Mix-PEFT can act on it.

Mix-PEFT picks a method per *part* of the network, so a backbone must say which parameters
form its encoder, its decoder and (for a GAN) its discriminator ("head"), and where in each
part the PEFT methods attach (attention projections, feed-forward outputs, prompt hosts).
The models describe their own structure here; ``napari_petite.peft`` reads it and never has to
guess from module names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import nn

Part = Literal["encoder", "decoder", "head"]
PARTS: tuple[str, ...] = ("encoder", "decoder", "head")


#: initial weight scale of the last convolution of a residual denoiser (output = input + net)
RESIDUAL_OUT_SCALE = 1e-2


def start_near_identity(conv: nn.Module) -> None:
    """Shrink the output convolution of a residual denoiser so it starts near the identity.

    A low-count image is already close to its full-count target; a full-size random output
    layer adds an O(1) offset that the first hundreds of steps spend undoing. Not exactly
    zero, so every upstream tensor still gets a gradient on the first step.
    """
    import torch

    with torch.no_grad():
        conv.weight.mul_(RESIDUAL_OUT_SCALE)
        if conv.bias is not None:
            conv.bias.zero_()


@dataclass(frozen=True)
class Site:
    """One place a PEFT module attaches.

    Attributes
    ----------
    name : module name as in ``model.named_modules()``
    layout : where the channel axis of the module's *output* is: ``"tokens"`` (last axis,
        transformer sequences) or ``"channels"`` (axis 1, NC(D)HW feature maps)
    out_slice : for fused projections (e.g. UNETR's qkv Linear) the output rows this site
        covers, ``(start, stop)``; None means the whole output
    """

    name: str
    layout: Literal["tokens", "channels"] = "tokens"
    out_slice: tuple[int, int] | None = None


@dataclass(frozen=True)
class PromptSite:
    """A module whose forward honours prompt tokens (VPT).

    The host module has attributes ``prompts`` (shallow: ``None`` or a parameter of shape
    ``(1, n, dim)`` prepended to its token sequence and stripped after its blocks) and
    ``deep_prompts`` (``None`` or ``(depth, n, dim)``: block ``i`` replaces the prompt tokens
    with ``deep_prompts[i]`` before it runs). With both ``None`` the host is unchanged.
    """

    name: str
    dim: int
    depth: int
    default_tokens: int


@dataclass(frozen=True)
class PartSites:
    """Attachment points of one part (encoder or decoder)."""

    attention_qk: tuple[Site, ...] = ()  # q and k projections: LoRA's default targets (paper)
    attention_v: tuple[Site, ...] = ()  # v projections: extra LoRA targets on request
    convs: tuple[Site, ...] = ()  # convolutions of CNN parts: LoRA targets there
    ffn: tuple[Site, ...] = ()  # outputs that get a Houlsby adapter (FFN or conv block)
    ssf: tuple[Site, ...] = ()  # outputs that get SSF scale and shift
    ia3: tuple[Site, ...] = ()  # outputs IA3 rescales (keys, values, FFN hidden)
    prompts: tuple[PromptSite, ...] = ()  # VPT hosts; empty = VPT does not fit this part


class Backbone(nn.Module):
    """Base class of the denoising networks (low-count volume in, full-count estimate out).

    Subclasses set ``name``, build their layers, and implement :meth:`group_prefixes` and
    :meth:`sites`. ``forward(x)`` maps ``(B, 1, D, H, W)`` to the same shape; spatial sizes
    must be multiples of ``size_multiple``. GANs also own a discriminator in the ``head``
    group, used only by the training loss.
    """

    name: ClassVar[str] = ""
    #: spatial sizes of inputs must be multiples of this
    size_multiple: ClassVar[int] = 16
    #: True when the training loss needs ``self.discriminator``
    is_gan: ClassVar[bool] = False
    #: preset name -> constructor config (must include ``patch_size``); ``paper`` and ``small``
    PRESETS: ClassVar[dict[str, dict]] = {}

    def __init__(self, preset: str, config: dict):
        super().__init__()
        self.preset = preset
        self.config = dict(config)

    # -- to implement ---------------------------------------------------------------
    def group_prefixes(self) -> dict[str, tuple[str, ...]]:
        """Module-name prefixes of each part, e.g. ``{"encoder": ("vit.",), ...}``."""
        raise NotImplementedError

    def sites(self, part: str) -> PartSites:
        """Where PEFT modules attach in ``part`` (``encoder`` or ``decoder``)."""
        raise NotImplementedError

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """Training / inference window (D, H, W) the preset was built for."""
        return tuple(self.config.get("patch_size", (64, 64, 64)))  # type: ignore[return-value]

    # -- derived -------------------------------------------------------------------
    def group_of(self, param_name: str) -> str:
        """The part a parameter (or module) name belongs to; raises if none or several."""
        hits = [
            group
            for group, prefixes in self.group_prefixes().items()
            for prefix in prefixes
            if param_name == prefix.rstrip(".") or param_name.startswith(prefix)
        ]
        if len(hits) != 1:
            raise ValueError(
                f"{self.name}: parameter {param_name!r} belongs to {len(hits)} groups ({hits}); "
                "group_prefixes must partition the parameters"
            )
        return hits[0]

    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter names per part; every parameter appears in exactly one part."""
        groups: dict[str, list[str]] = {g: [] for g in self.group_prefixes()}
        for name, _ in self.named_parameters():
            groups[self.group_of(name)].append(name)
        return groups

    def modules_in(self, part: str) -> Iterator[tuple[str, nn.Module]]:
        """``named_modules()`` restricted to one part (leaves and containers)."""
        prefixes = self.group_prefixes().get(part, ())
        for name, module in self.named_modules():
            if any(name == p.rstrip(".") or name.startswith(p) for p in prefixes):
                yield name, module

    def parts(self) -> tuple[str, ...]:
        """The parts this backbone has, in PARTS order."""
        present = self.group_prefixes()
        return tuple(p for p in PARTS if present.get(p))
