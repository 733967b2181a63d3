"""A tiny ViT-encoder / CNN-decoder / discriminator backbone for the PEFT tests.

It exercises what the real backbones do not (yet) all have: a prompt host with the
zero-init VPT gate (``prompt_gate``), a decoder with depthwise-dilated, grouped and strided
convolutions, transposed convolutions, BatchNorm with running statistics and an affine
InstanceNorm, and a discriminator in the ``head`` group. It declares its sites through the
same contract as UNETR and CVT-GAN; the tests at the end check the toy itself.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from napari_petite.models.base import Backbone, PartSites, PromptSite, Site
from napari_petite.peft.vpt import gated_prompt_attention


class ToyAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, n_prompts: int, gate: torch.Tensor | None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = gated_prompt_attention(q, k, v, n_prompts, gate)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class ToyMlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ToyBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ToyAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ToyMlp(dim)

    def forward(self, x, n_prompts, gate):
        x = x + self.attn(self.norm1(x), n_prompts, gate)
        return x + self.mlp(self.norm2(x))


class ToyViT(nn.Module):
    """Patch embedding + blocks; a VPT host that supports the zero-init gate."""

    def __init__(self, dim: int, depth: int, heads: int, patch: int, grid: int):
        super().__init__()
        self.patch_embed = nn.Conv3d(1, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, grid**3, dim) * 0.02)
        self.blocks = nn.ModuleList(ToyBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.register_parameter("prompts", None)
        self.register_parameter("deep_prompts", None)
        self.register_parameter("prompt_gate", None)

    def forward(self, x):
        tokens = self.patch_embed(x)
        b, c, *grid = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2) + self.pos
        n = 0
        for i, blk in enumerate(self.blocks):
            prompt = self.deep_prompts[i: i + 1] if self.deep_prompts is not None else (
                self.prompts if i == 0 else None)
            if prompt is not None:
                rest = tokens[:, n:]
                n = prompt.shape[1]
                tokens = torch.cat([prompt.expand(b, -1, -1), rest], dim=1)
            gate = None if self.prompt_gate is None else self.prompt_gate[i]
            tokens = blk(tokens, n, gate)
        tokens = self.norm(tokens[:, n:])
        return tokens.transpose(1, 2).reshape(b, c, *grid)


class ToyDecoder(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        mid = 8
        self.up = nn.ConvTranspose3d(dim, mid, patch // 2, stride=patch // 2)
        self.block1 = nn.Sequential(
            nn.Conv3d(mid, mid, 3, padding=2, dilation=2, groups=mid),  # depthwise, dilated
            nn.BatchNorm3d(mid),
            nn.GELU(),
            nn.Conv3d(mid, mid, 3, padding=1, groups=2),  # grouped
            nn.InstanceNorm3d(mid, affine=True),
        )
        self.up2 = nn.ConvTranspose3d(mid, 4, 2, stride=2)
        self.block2 = nn.Sequential(nn.Conv3d(4, 4, 3, stride=1, padding=1), nn.GELU())
        self.down = nn.Conv3d(4, 4, 3, stride=2, padding=1)  # strided
        self.up3 = nn.ConvTranspose3d(4, 4, 2, stride=2, groups=2)  # grouped transposed
        self.out = nn.Conv3d(4, 1, 1)

    def forward(self, x):
        x = self.block1(self.up(x))
        x = self.block2(self.up2(x))
        return self.out(self.up3(self.down(x)))


class ToyDisc(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 4, stride=2, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.out = nn.Conv3d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.conv(x))))


class ToyNet(Backbone):
    """ViT encoder (gated VPT host) + CNN decoder + discriminator head."""

    name: ClassVar[str] = "toy"
    size_multiple: ClassVar[int] = 16
    is_gan: ClassVar[bool] = True
    PRESETS: ClassVar[dict] = {"small": {"dim": 16, "depth": 2, "heads": 2, "patch": 8,
                                         "patch_size": (16, 16, 16), "tokens": 4}}

    def __init__(self, preset: str = "small", **overrides):
        super().__init__(preset, {**self.PRESETS[preset], **overrides})
        c = self.config
        grid = c["patch_size"][0] // c["patch"]
        self.vit = ToyViT(c["dim"], c["depth"], c["heads"], c["patch"], grid)
        self.decoder = ToyDecoder(c["dim"], c["patch"])
        self.discriminator = ToyDisc()

    def forward(self, x):
        return self.decoder(self.vit(x)) + x

    def group_prefixes(self):
        return {"encoder": ("vit.",), "decoder": ("decoder.",), "head": ("discriminator.",)}

    def sites(self, part: str) -> PartSites:
        c = self.config
        if part == "encoder":
            blocks = [f"vit.blocks.{i}" for i in range(c["depth"])]
            d = c["dim"]
            return PartSites(
                attention_qk=tuple(Site(f"{b}.attn.qkv", "tokens", (0, 2 * d)) for b in blocks),
                attention_v=tuple(Site(f"{b}.attn.qkv", "tokens", (2 * d, 3 * d))
                                  for b in blocks),
                ffn=tuple(Site(f"{b}.mlp", "tokens") for b in blocks),
                ssf=tuple(Site(f"{b}.{op}", "tokens") for b in blocks
                          for op in ("norm1", "attn", "norm2", "mlp.fc2")),
                ia3=tuple(s for b in blocks for s in (
                    Site(f"{b}.attn.qkv", "tokens", (d, 3 * d)), Site(f"{b}.mlp.act", "tokens"))),
                prompts=(PromptSite("vit", d, c["depth"], c["tokens"]),),
            )
        convs = tuple(Site(n, "channels") for n, m in self.modules_in("decoder")
                      if isinstance(m, nn.Conv3d | nn.ConvTranspose3d))
        return PartSites(
            convs=convs,
            ffn=(Site("decoder.block1", "channels"), Site("decoder.block2", "channels")),
            ssf=(Site("decoder.block1.1", "channels"), Site("decoder.block1.4", "channels"),
                 Site("decoder.down", "channels")),
            ia3=(Site("decoder.up", "channels"), Site("decoder.block2.1", "channels")),
        )


def build_toy(**overrides) -> ToyNet:
    torch.manual_seed(0)
    return ToyNet("small", **overrides)


def test_toy_groups_partition_parameters():
    model = build_toy()
    groups = model.parameter_groups()
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    assert set(groups) == {"encoder", "decoder", "head"}


def test_toy_gated_host_is_unchanged_by_prompts_behind_a_zero_gate():
    model = build_toy().eval()
    x = torch.randn(2, 1, 16, 16, 16)
    base = model(x)
    model.vit.prompts = nn.Parameter(torch.randn(1, 4, 16))
    plain = model(x)
    model.vit.prompt_gate = nn.Parameter(torch.zeros(2))
    gated = model(x)
    assert not torch.allclose(plain, base, atol=1e-5)  # ungated prompts move the output
    torch.testing.assert_close(gated, base, atol=1e-6, rtol=0)


# -- shared helpers for the PEFT tests ----------------------------------------------------------
#: tiny versions of the real backbones (seconds on a CPU)
TINY = {
    "unetr": dict(hidden_size=24, num_heads=2, mlp_dim=48, feature_size=4,
                  patch_size=(16, 16, 16)),
    "cvtgan": dict(stem_channels=4, channels=(8, 16, 16), heads=(2, 2, 2), dec_heads=(2, 2),
                   disc_channels=(4, 8, 8), disc_heads=2, patch_size=(16, 16, 16)),
}
BACKBONES = ("toy", "unetr", "cvtgan")


def build(backbone: str) -> Backbone:
    """A deterministic tiny model: the same call gives the same base weights."""
    if backbone == "toy":
        return build_toy()
    from napari_petite.models.registry import build_model

    torch.manual_seed(0)
    return build_model(backbone, "small", **TINY[backbone])


def inputs(model: Backbone, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, 1, *model.patch_size), generator=g) + 0.1
