"""3D CVT-GAN: a convolutional vision transformer GAN for low-count PET enhancement.

Zeng P., Zhou L., Zu C., et al., "3D CVT-GAN: A 3D Convolutional Vision Transformer-GAN for
PET Reconstruction", MICCAI 2022, LNCS 13436, pp. 516-526 (doi:10.1007/978-3-031-16446-0_49),
as used as the second backbone of PETITE (Kim et al., MICCAI 2024).

Generator: a stride-2 Conv3d stem, three CvT stages (a strided Conv3d patch embedding, then
transformer blocks whose q/k/v come from depthwise Conv3d + BatchNorm projections, k/v at stride
2), a bottleneck, two *transposed* CvT stages (the same stage with a ConvTranspose3d embedding),
U-Net skips, transposed-conv upsampling back to full resolution and a global residual
(output = decoder + input). Discriminator (pix2pix, conditional on the low-count input): three
strided convs, two CvT blocks, a conv to PatchGAN logits.

Every CvT stage is a VPT prompt host, the way CvT treats its cls token: extra tokens are
prepended after the embedding, bypass the depthwise conv projections, take part in attention and
are dropped before the tokens are folded back into a volume. The conv blocks outside the
transformers carry no normalisation (as in EDSR-style restoration networks), so that any input
whose sides are multiples of 16 works, down to a 1-voxel bottleneck.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.models.base import Backbone, PartSites, PromptSite, Site, start_near_identity

Shape = tuple[int, ...]


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


# -- transformer parts ------------------------------------------------------------------------
class ConvProjection(nn.Module):
    """Depthwise Conv3d + BatchNorm on the token grid: CvT's local q/k/v projection."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, 3, stride=stride, padding=1, groups=dim, bias=False)
        self.bn = nn.BatchNorm3d(dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> tokens (B, N', C)."""
        return self.bn(self.conv(grid)).flatten(2).transpose(1, 2)


class CvTAttention(nn.Module):
    """Multi-head attention with convolutional projections (k/v subsampled by 2 per axis)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.conv_proj_q = ConvProjection(dim, stride=1)
        self.conv_proj_k = ConvProjection(dim, stride=2)
        self.conv_proj_v = ConvProjection(dim, stride=2)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, n_extra: int, shape: Shape,
                gate: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` = (B, n_extra + prod(shape), C); the first ``n_extra`` tokens are prompts.

        With ``gate`` the prompts are attended through their own softmax scaled by the gate,
        ``softmax(q K_img) V_img + gate softmax(q K_p) V_p``: a zero gate leaves the grid
        tokens exactly as without prompts (zero-initialised VPT).
        """
        b, length, c = x.shape
        extra, tokens = x[:, :n_extra], x[:, n_extra:]
        grid = tokens.transpose(1, 2).reshape(b, c, *shape)
        qkv = [p(grid) for p in (self.conv_proj_q, self.conv_proj_k, self.conv_proj_v)]
        if n_extra:  # prompts skip the local conv projections, like CvT's cls token
            qkv = [torch.cat([extra, t], dim=1) for t in qkv]
        q, k, v = (
            lin(t).reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)
            for lin, t in zip((self.proj_q, self.proj_k, self.proj_v), qkv, strict=True)
        )
        if gate is None or not n_extra:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k[:, :, n_extra:], v[:, :, n_extra:]) \
                + gate.to(q.dtype) * F.scaled_dot_product_attention(
                    q, k[:, :, :n_extra], v[:, :, :n_extra])
        return self.proj(out.transpose(1, 2).reshape(b, length, c))


class Mlp(nn.Module):
    """Transformer feed-forward network (Linear, GELU, Linear)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CvTBlock(nn.Module):
    """Pre-norm transformer block on (B, N, C) tokens of a 3D grid."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CvTAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, n_extra: int, shape: Shape,
                gate: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), n_extra, shape, gate)
        return x + self.mlp(self.norm2(x))


class ConvEmbed(nn.Module):
    """Patch embedding: a strided conv (or a k2 s2 transposed conv) + LayerNorm on channels."""

    def __init__(self, cin: int, cout: int, transpose: bool):
        super().__init__()
        if transpose:
            self.proj: nn.Module = nn.ConvTranspose3d(cin, cout, 2, stride=2)
        else:
            self.proj = nn.Conv3d(cin, cout, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Shape]:
        x = self.proj(x)
        return self.norm(x.flatten(2).transpose(1, 2)), tuple(x.shape[2:])


class CvTStage(nn.Module):
    """Embedding + CvT blocks; a VPT prompt host (see :class:`~.base.PromptSite`).

    ``prompts`` (1, n, C) and ``deep_prompts`` (depth, n, C) are registered as empty
    parameters, so PEFT code may install tensors with ``setattr`` or ``register_parameter``.
    """

    def __init__(
        self, cin: int, cout: int, depth: int, heads: int, mlp_ratio: float, transpose: bool
    ):
        super().__init__()
        self.dim = cout
        self.patch_embed = ConvEmbed(cin, cout, transpose)
        self.blocks = nn.ModuleList(CvTBlock(cout, heads, mlp_ratio) for _ in range(depth))
        self.register_parameter("prompts", None)
        self.register_parameter("deep_prompts", None)
        self.register_parameter("prompt_gate", None)  # (depth,): gated VPT, see CvTAttention

    def _prompt_tensors(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        shallow = getattr(self, "prompts", None)
        deep = getattr(self, "deep_prompts", None)
        if shallow is not None and (
            shallow.ndim != 3 or shallow.shape[0] != 1 or shallow.shape[2] != self.dim
        ):
            raise ConfigError(
                f"VPT prompts of a {self.dim}-channel CvT stage must have shape "
                f"(1, n, {self.dim}); got {tuple(shallow.shape)}."
            )
        if deep is not None and (
            deep.ndim != 3 or deep.shape[0] != len(self.blocks) or deep.shape[2] != self.dim
        ):
            raise ConfigError(
                f"Deep VPT prompts of this CvT stage must have shape "
                f"({len(self.blocks)}, n, {self.dim}), one row per block; got {tuple(deep.shape)}."
            )
        return shallow, deep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, shape = self.patch_embed(x)
        b = tokens.shape[0]
        shallow, deep = self._prompt_tensors()
        gate = getattr(self, "prompt_gate", None)
        if gate is not None and tuple(gate.shape) != (len(self.blocks),):
            raise ConfigError(f"The VPT prompt gate of this CvT stage must have shape "
                              f"({len(self.blocks)},); got {tuple(gate.shape)}.")
        extra = None if shallow is None else shallow.expand(b, -1, -1)
        for i, block in enumerate(self.blocks):
            if deep is not None:
                extra = deep[i : i + 1].expand(b, -1, -1)
            if extra is None:
                tokens = block(tokens, 0, shape)
            else:
                n = extra.shape[1]
                out = block(torch.cat([extra, tokens], dim=1), n, shape,
                            None if gate is None else gate[i])
                extra, tokens = out[:, :n], out[:, n:]
        return tokens.transpose(1, 2).reshape(b, self.dim, *shape)


# -- convolutional parts ----------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1), _act())


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 2, stride=2), _act())


class ResBlock(nn.Module):
    """conv-act-conv with an identity skip (no normalisation, EDSR style)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv3d(dim, dim, 3, padding=1)
        self.act = _act()
        self.conv2 = nn.Conv3d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class Encoder(nn.Module):
    """Stem (1/2) and three CvT stages (1/4, 1/8, 1/16); returns every level for the skips."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        dims = (cfg["stem_channels"], *cfg["channels"])
        self.stem = _conv(1, dims[0], stride=2)
        self.stages = nn.ModuleList(
            CvTStage(dims[i], dims[i + 1], d, h, cfg["mlp_ratio"], transpose=False)
            for i, (d, h) in enumerate(zip(cfg["depths"], cfg["heads"], strict=True))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = [self.stem(x)]
        for stage in self.stages:
            levels.append(stage(levels[-1]))
        return levels


class Decoder(nn.Module):
    """Bottleneck, transposed CvT stages to 1/4, transposed convs to full size, output conv.

    Each step after the first takes the previous output concatenated with the encoder level
    of the same resolution (U-Net skip).
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        c0, c1, c2, c3 = cfg["stem_channels"], *cfg["channels"]
        (d0, d1), (h0, h1), ratio = cfg["dec_depths"], cfg["dec_heads"], cfg["mlp_ratio"]
        self.bottleneck = nn.Sequential(_conv(c3, c3), ResBlock(c3))
        self.stages = nn.ModuleList(
            [
                CvTStage(c3, c2, d0, h0, ratio, transpose=True),
                CvTStage(2 * c2, c1, d1, h1, ratio, transpose=True),
            ]
        )
        self.up = nn.ModuleList([_up(2 * c1, c0), _up(2 * c0, c0)])
        self.out = nn.Conv3d(c0, 1, 3, padding=1)
        start_near_identity(self.out)  # the generator adds the input back (global residual)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = self.stages[0](self.bottleneck(levels[-1]))
        steps = [*self.stages[1:], *self.up]
        for step, skip in zip(steps, reversed(levels[:-1]), strict=True):
            x = step(torch.cat([x, skip], dim=1))
        return self.out(x)


class Generator(nn.Module):
    """Encoder-decoder with a global residual: it learns the full-minus-low correction."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)) + x


class Discriminator(nn.Module):
    """Conditional PatchGAN: concat(low, image) -> logits at 1/8 resolution."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 2
        for i, c in enumerate(cfg["disc_channels"]):
            layers.append(nn.Conv3d(cin, c, 4, stride=2, padding=1))
            if i:  # no norm on the first layer, as in pix2pix
                layers.append(nn.InstanceNorm3d(c, affine=True))
            layers.append(_act())
            cin = c
        self.convs = nn.Sequential(*layers)
        self.blocks = nn.ModuleList(
            CvTBlock(cin, cfg["disc_heads"], cfg["mlp_ratio"]) for _ in range(cfg["disc_depth"])
        )
        self.out = nn.Conv3d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        b, c, *shape = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens, 0, tuple(shape))
        return self.out(tokens.transpose(1, 2).reshape(b, c, *shape))


# -- the backbone -----------------------------------------------------------------------------
def _init_weights(module: nn.Module) -> None:
    """CvT's initialisation: truncated-normal Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class CvTGAN(Backbone):
    """3D CVT-GAN generator (the denoiser) with its discriminator (the ``head`` group).

    Parameters
    ----------
    preset : ``"paper"`` or ``"small"``
    **overrides : config keys that replace the preset's (e.g. ``channels=(16, 32, 64)``)
    """

    name: ClassVar[str] = "cvtgan"
    is_gan: ClassVar[bool] = True
    size_multiple: ClassVar[int] = 16
    #: Measured with benchmarks/bench_cvtgan_step.py (64^3 patch, batch 2, 2 CPU threads of a
    #: shared 2-core machine, torch 2.13; generator forward + backward with 100 * L1 +
    #: adversarial loss through the frozen discriminator, AdamW step; min over 4-6 steps, quiet
    #: runs; under load from other processes the same step took 7-14 s):
    #:   paper: generator 37.72 M (encoder 12.88 M, decoder 24.84 M; the 512-channel bottleneck
    #:          convs hold 21 M) + discriminator 4.26 M parameters, 4.96 s per step;
    #:   small: generator 9.43 M (encoder 3.23 M, decoder 6.20 M) + discriminator 1.08 M
    #:          parameters, 0.70-0.85 s per step (budget 1.5 s). The stem width costs most
    #:          (full-resolution convs): stem 24 instead of 16 took 1.14 s.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {
            "stem_channels": 64,
            "channels": (128, 256, 512),
            "depths": (1, 2, 2),
            "heads": (2, 4, 4),
            "dec_depths": (2, 1),
            "dec_heads": (4, 2),
            "mlp_ratio": 4.0,
            "enc_prompt_tokens": (0, 8, 32),
            "dec_prompt_tokens": (32, 8),
            "disc_channels": (64, 128, 256),
            "disc_depth": 2,
            "disc_heads": 4,
            "patch_size": (64, 64, 64),
        },
        "small": {
            "stem_channels": 16,
            "channels": (64, 128, 256),
            "depths": (1, 2, 2),
            "heads": (2, 4, 4),
            "dec_depths": (2, 1),
            "dec_heads": (4, 2),
            "mlp_ratio": 4.0,
            "enc_prompt_tokens": (0, 8, 32),
            "dec_prompt_tokens": (32, 8),
            "disc_channels": (32, 64, 128),
            "disc_depth": 2,
            "disc_heads": 4,
            "patch_size": (64, 64, 64),
        },
    }

    def __init__(self, preset: str = "small", **overrides: Any):
        if preset not in self.PRESETS:
            raise ConfigError(
                f"Unknown CVT-GAN preset {preset!r}; choose one of {', '.join(self.PRESETS)}."
            )
        unknown = sorted(set(overrides) - set(self.PRESETS[preset]))
        if unknown:
            raise ConfigError(
                f"Unknown CVT-GAN option(s) {unknown}; valid options are "
                f"{', '.join(self.PRESETS[preset])}."
            )
        cfg = {**self.PRESETS[preset], **overrides}
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        _check_config(cfg)
        super().__init__(preset, cfg)
        self.generator = Generator(cfg)
        self.discriminator = Discriminator(cfg)
        self.apply(_init_weights)

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse tensors the generator cannot take, saying what to do instead."""
        if x.ndim != 5 or x.shape[1] != 1:
            raise ConfigError(
                f"CVT-GAN expects a (batch, 1, D, H, W) tensor, got shape {tuple(x.shape)}; "
                "add the batch and channel axes."
            )
        if any(s % self.size_multiple for s in x.shape[2:]):
            raise ConfigError(
                f"CVT-GAN needs every spatial size to be a multiple of {self.size_multiple}, "
                f"got {tuple(x.shape[2:])}; pad or crop the volume (sliding-window inference "
                "does this)."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Low-count (B, 1, D, H, W) -> full-count estimate of the same shape."""
        self.check_input(x)
        return self.generator(x)

    def discriminate(self, low: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """PatchGAN logits of ``image`` (real full-count or generated) given ``low``."""
        return self.discriminator(torch.cat([low, image], dim=1))

    def group_prefixes(self) -> dict[str, tuple[str, ...]]:
        return {
            "encoder": ("generator.encoder.",),
            "decoder": ("generator.decoder.",),
            "head": ("discriminator.",),
        }

    def sites(self, part: str) -> PartSites:
        if part not in ("encoder", "decoder"):
            raise ConfigError(f"CVT-GAN has PEFT sites in 'encoder' and 'decoder', not {part!r}.")
        root = f"generator.{part}"
        stages: nn.ModuleList = getattr(self.generator, part).stages
        tokens = self.config[f"{part[:3]}_prompt_tokens"]
        blocks = [
            f"{root}.stages.{s}.blocks.{b}"
            for s, st in enumerate(stages)
            for b in range(len(st.blocks))
        ]

        def at(suffixes: tuple[str, ...], layout: str = "tokens") -> tuple[Site, ...]:
            return tuple(Site(f"{b}.{s}", layout) for b in blocks for s in suffixes)  # type: ignore[arg-type]

        conv_types = (nn.Conv3d, nn.ConvTranspose3d)
        convs = tuple(
            Site(name, "channels")
            for name, m in self.modules_in(part)
            if isinstance(m, conv_types) and ".attn.conv_proj_" not in name
        )
        return PartSites(
            attention_qk=at(("attn.conv_proj_q.conv", "attn.conv_proj_k.conv"), "channels"),
            attention_v=at(("attn.conv_proj_v.conv",), "channels"),
            convs=convs,
            ffn=at(("mlp",)),
            ssf=at(("norm1", "attn", "norm2", "mlp")),
            ia3=at(("attn.proj_k", "attn.proj_v", "mlp.act")),
            prompts=tuple(
                PromptSite(f"{root}.stages.{i}", st.dim, len(st.blocks), int(n))
                for i, (st, n) in enumerate(zip(stages, tokens, strict=True))
            ),
        )


def _check_config(cfg: dict[str, Any]) -> None:
    """Raise ConfigError naming the first inconsistent option."""
    lengths = {
        "channels": 3,
        "depths": 3,
        "heads": 3,
        "enc_prompt_tokens": 3,
        "dec_depths": 2,
        "dec_heads": 2,
        "dec_prompt_tokens": 2,
        "patch_size": 3,
    }
    for key, n in lengths.items():
        if not isinstance(cfg[key], tuple) or len(cfg[key]) != n:
            raise ConfigError(f"CVT-GAN option {key!r} needs {n} values, got {cfg[key]!r}.")
    c = cfg["channels"]
    pairs = [
        *zip(c, cfg["heads"], strict=True),
        *zip(c[1::-1], cfg["dec_heads"], strict=True),
        (cfg["disc_channels"][-1], cfg["disc_heads"]),
    ]
    for dim, heads in pairs:
        if heads < 1 or dim % heads:
            raise ConfigError(
                f"CVT-GAN: {dim} channels cannot be split into {heads} heads; "
                "choose heads that divide the stage width."
            )
    if any(s % CvTGAN.size_multiple for s in cfg["patch_size"]):
        raise ConfigError(
            f"CVT-GAN patch_size {cfg['patch_size']} must be multiples of {CvTGAN.size_multiple}."
        )
