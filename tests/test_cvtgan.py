"""3D CVT-GAN: shapes, parameter groups, PEFT sites, prompt hosts, residual, discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.models.base import PartSites, PromptSite, Site
from napari_petite.models.cvtgan import CvTAttention, CvTGAN, CvTStage

TINY = {"stem_channels": 8, "channels": (16, 32, 64), "disc_channels": (8, 16, 32)}


@pytest.fixture(scope="module")
def model() -> CvTGAN:
    torch.manual_seed(0)
    return CvTGAN("small", **TINY).eval()


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [(16, 16, 16), (32, 32, 16), (48, 16, 32), (64, 64, 32)])
def test_output_shape(model: CvTGAN, shape: tuple[int, int, int]) -> None:
    with torch.no_grad():
        assert model(_x(*shape)).shape == (1, 1, *shape)


def test_batch_of_two_trains() -> None:
    m = CvTGAN("small", **TINY).train()
    x = torch.rand(2, 1, 32, 32, 16)
    y = m(x)
    assert y.shape == x.shape
    y.mean().backward()
    assert all(p.grad is not None for p in m.generator.parameters())


@pytest.mark.parametrize("shape", [(30, 32, 32), (32, 32, 24)])
def test_non_multiple_size_is_refused(model: CvTGAN, shape: tuple[int, int, int]) -> None:
    with pytest.raises(ConfigError, match="multiple of 16"):
        model(_x(*shape))


def test_wrong_rank_and_bad_config_are_refused(model: CvTGAN) -> None:
    with pytest.raises(ConfigError, match="batch, 1, D, H, W"):
        model(torch.rand(1, 32, 32, 32))
    with pytest.raises(ConfigError, match="preset"):
        CvTGAN("huge")
    with pytest.raises(ConfigError, match="chanels"):
        CvTGAN("small", chanels=(8, 8, 8))
    with pytest.raises(ConfigError, match="heads"):
        CvTGAN("small", **{**TINY, "heads": (3, 4, 4)})


def test_presets_and_config() -> None:
    assert set(CvTGAN.PRESETS) >= {"paper", "small"}
    for cfg in CvTGAN.PRESETS.values():
        assert tuple(cfg["patch_size"]) == (64, 64, 64)
    paper = CvTGAN.PRESETS["paper"]
    assert (paper["stem_channels"], *paper["channels"]) == (64, 128, 256, 512)
    assert paper["depths"] == (1, 2, 2) and paper["heads"] == (2, 4, 4)
    m = CvTGAN("small", **{**TINY, "channels": [16, 32, 64]})  # JSON gives lists
    assert m.preset == "small" and m.config["channels"] == (16, 32, 64)
    assert m.patch_size == (64, 64, 64)
    assert CvTGAN.name == "cvtgan" and CvTGAN.is_gan and CvTGAN.size_multiple == 16


def test_every_parameter_in_exactly_one_group(model: CvTGAN) -> None:
    groups = model.parameter_groups()
    assert set(groups) == {"encoder", "decoder", "head"}
    names = [n for g in groups.values() for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert all(groups[g] for g in groups)
    assert not [n for n, _ in model.generator.named_parameters(recurse=False)]


def _depthwise(m: nn.Module, stride: int) -> bool:
    return (
        type(m) is nn.Conv3d
        and m.groups == m.in_channels == m.out_channels
        and m.kernel_size == (3, 3, 3)
        and m.stride == (stride,) * 3
        and m.bias is None
    )


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_sites_exist_and_have_declared_kinds(model: CvTGAN, part: str) -> None:
    modules = dict(model.named_modules())
    sites = model.sites(part)
    assert isinstance(sites, PartSites)
    n_blocks = sum(len(s.blocks) for s in getattr(model.generator, part).stages)
    assert len(sites.attention_qk) == 2 * n_blocks and len(sites.attention_v) == n_blocks
    all_sites = [
        *sites.attention_qk,
        *sites.attention_v,
        *sites.convs,
        *sites.ffn,
        *sites.ssf,
        *sites.ia3,
    ]
    for site in all_sites:
        assert isinstance(site, Site)
        assert site.name in modules, site.name
        assert model.group_of(site.name) == part
    for site in sites.attention_qk:
        assert site.layout == "channels"
        stride = 1 if site.name.endswith("conv_proj_q.conv") else 2
        assert site.name.endswith(("conv_proj_q.conv", "conv_proj_k.conv"))
        assert _depthwise(modules[site.name], stride)
    for site in sites.attention_v:
        assert site.name.endswith("conv_proj_v.conv") and _depthwise(modules[site.name], 2)
    conv_types = (nn.Conv3d, nn.ConvTranspose3d)
    expected_convs = {
        n for n, m in model.modules_in(part) if isinstance(m, conv_types) and "conv_proj" not in n
    }
    assert {s.name for s in sites.convs} == expected_convs
    assert all(s.layout == "channels" for s in sites.convs)
    assert all(
        isinstance(modules[s.name], nn.ConvTranspose3d)
        for s in sites.convs
        if ".patch_embed.proj" in s.name
    ) == (part == "decoder")
    assert len(sites.ffn) == n_blocks and all(s.name.endswith(".mlp") for s in sites.ffn)
    assert all(s.layout == "tokens" for s in (*sites.ffn, *sites.ssf, *sites.ia3))
    assert {type(modules[s.name]) for s in sites.ia3} == {nn.Linear, nn.GELU}
    assert {type(modules[s.name]).__name__ for s in sites.ssf} == {
        "LayerNorm",
        "CvTAttention",
        "Mlp",
    }
    expected_tokens = (0, 8, 32) if part == "encoder" else (32, 8)
    assert tuple(p.default_tokens for p in sites.prompts) == expected_tokens
    for p in sites.prompts:
        assert isinstance(p, PromptSite)
        host = modules[p.name]
        assert isinstance(host, CvTStage)
        assert host.prompts is None and host.deep_prompts is None
        assert p.dim == host.dim and p.depth == len(host.blocks)


def test_example_site_name(model: CvTGAN) -> None:
    names = {s.name for s in model.sites("encoder").attention_qk}
    assert "generator.encoder.stages.0.blocks.0.attn.conv_proj_q.conv" in names
    with pytest.raises(ConfigError):
        model.sites("head")


def _host(model: CvTGAN, name: str) -> CvTStage:
    return model.get_submodule(name)  # type: ignore[return-value]


def test_prompts_change_output_and_none_restores_it_bit_exactly() -> None:
    torch.manual_seed(0)
    m = CvTGAN("small", **TINY).eval()
    x = _x(16, 16, 32)
    with torch.no_grad():
        base = m(x)
        for site in m.sites("encoder").prompts + m.sites("decoder").prompts:
            host = _host(m, site.name)
            n = 4
            host.prompts = nn.Parameter(torch.randn(1, n, site.dim))
            shallow = m(x)
            assert shallow.shape == base.shape and not torch.equal(shallow, base)
            host.deep_prompts = nn.Parameter(torch.randn(site.depth, n, site.dim))
            deep = m(x)
            assert deep.shape == base.shape and not torch.equal(deep, shallow)
            host.prompts = None  # deep prompts alone are enough (block 0 gets deep[0])
            assert torch.equal(m(x), deep)
            host.deep_prompts = None
            assert torch.equal(m(x), base)
            assert not list(host.named_parameters(recurse=False))


def test_zero_prompts_via_register_parameter_run(model: CvTGAN) -> None:
    host = _host(model, model.sites("encoder").prompts[2].name)
    try:
        host.register_parameter("prompts", nn.Parameter(torch.zeros(1, 32, host.dim)))
        with torch.no_grad():
            assert model(_x(32, 32, 32)).shape == (1, 1, 32, 32, 32)
    finally:
        host.prompts = None


def test_bad_prompt_shape_is_explained(model: CvTGAN) -> None:
    host = _host(model, "generator.decoder.stages.0")
    host.deep_prompts = nn.Parameter(torch.zeros(len(host.blocks) + 1, 4, host.dim))
    try:
        with pytest.raises(ConfigError, match="one row per block"):
            model(_x(16, 16, 16))
    finally:
        host.deep_prompts = None


def test_gradients_reach_prompts() -> None:
    torch.manual_seed(0)
    m = CvTGAN("small", **TINY).train()
    m.requires_grad_(False)
    enc = _host(m, "generator.encoder.stages.1")
    dec = _host(m, "generator.decoder.stages.0")
    enc.prompts = nn.Parameter(torch.zeros(1, 8, enc.dim))
    dec.deep_prompts = nn.Parameter(torch.zeros(len(dec.blocks), 8, dec.dim))
    x = torch.rand(2, 1, 32, 32, 32)
    ((m(x) - x.flip(2)) ** 2).mean().backward()
    for p in (enc.prompts, dec.deep_prompts):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert dec.deep_prompts.grad[-1].abs().sum() > 0  # every depth's tokens are used


def test_prompt_tokens_skip_conv_projections() -> None:
    torch.manual_seed(0)
    attn = CvTAttention(16, heads=2).eval()
    seen: list[tuple[int, ...]] = []
    attn.conv_proj_q.conv.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    x = torch.randn(2, 5 + 4 * 4 * 2, 16)
    out = attn(x, 5, (4, 4, 2))
    assert out.shape == x.shape and seen == [(2, 16, 4, 4, 2)]


def test_discriminator_patch_logits(model: CvTGAN) -> None:
    low, img = _x(32, 32, 16), _x(32, 32, 16, seed=2)
    with torch.no_grad():
        logits = model.discriminate(low, img)
    assert logits.shape == (1, 1, 4, 4, 2)
    assert model.discriminator.convs[0].in_channels == 2
    assert (
        sum(
            isinstance(m, nn.Conv3d) and m.kernel_size == (4, 4, 4)
            for m in model.discriminator.modules()
        )
        == 3
    )
    assert len(model.discriminator.blocks) == 2


def test_global_residual() -> None:
    m = CvTGAN("small", **TINY).eval()
    with torch.no_grad():
        m.generator.decoder.out.weight.zero_()
        m.generator.decoder.out.bias.zero_()
        x = _x(32, 16, 16)
        assert torch.equal(m(x), x)
