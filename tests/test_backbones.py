"""Contract tests run over every registered backbone (tiny configs so they stay fast)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_petite.errors import ConfigError, PetiteError
from napari_petite.models import Backbone, backbone_class, backbone_names, build_model, preset_names
from napari_petite.models.registry import smoke_overrides

NAMES = backbone_names()
_CACHE: dict[str, Backbone] = {}


def tiny(name: str) -> Backbone:
    """One tiny model per backbone for the whole module (in eval mode)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = build_model(name, "small", **smoke_overrides(name)).eval()
    return _CACHE[name]


def window(model: Backbone, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(batch, 1, *model.patch_size)


def all_sites(model: Backbone):
    for part in ("encoder", "decoder"):
        sites = model.sites(part)
        for field in ("attention_qk", "attention_v", "convs", "ffn", "ssf", "ia3"):
            for site in getattr(sites, field):
                yield part, field, site


def test_registry_lists_both_backbones():
    assert NAMES[0] == "unetr"
    assert set(NAMES) <= {"unetr", "cvtgan"}


def test_registry_errors_name_the_choices():
    with pytest.raises(ConfigError, match="unetr"):
        build_model("resnet")
    with pytest.raises(ConfigError, match="small"):
        build_model("unetr", "large")


@pytest.mark.parametrize("name", NAMES)
def test_presets_and_class(name):
    cls = backbone_class(name)
    assert cls.name == name
    assert {"paper", "small"} <= set(preset_names(name))
    for preset in cls.PRESETS.values():
        assert all(s % cls.size_multiple == 0 for s in preset["patch_size"])
    assert smoke_overrides(name), f"registry has no smoke config for {name}"


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_in_exactly_one_group(name):
    model = tiny(name)
    groups = model.parameter_groups()  # raises if a parameter is in 0 or 2+ groups
    expected = {"encoder", "decoder", "head"} if model.is_gan else {"encoder", "decoder"}
    assert set(model.parts()) == expected
    assert all(groups[g] for g in expected), "every declared part owns parameters"
    names = [n for ns in groups.values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    for prefixes in model.group_prefixes().values():
        for prefix in prefixes:
            hits = [n for n, _ in model.named_parameters() if n.startswith(prefix)]
            assert hits, f"prefix {prefix!r} matches no parameter"


@pytest.mark.parametrize("name", NAMES)
def test_every_site_resolves_to_a_module_of_its_part(name):
    model = tiny(name)
    modules = dict(model.named_modules())
    seen = 0
    for part, field, site in all_sites(model):
        assert site.name in modules, f"{part}.{field}: {site.name} is not a module"
        assert model.group_of(site.name) == part
        assert site.layout in ("tokens", "channels")
        if site.out_slice is not None:
            start, stop = site.out_slice
            assert 0 <= start < stop <= modules[site.name].out_features
        if field in ("attention_qk", "attention_v", "convs"):
            assert isinstance(modules[site.name], nn.Linear | nn.Conv3d | nn.ConvTranspose3d)
        seen += 1
    assert seen > 0
    for part in ("encoder", "decoder"):
        for host in model.sites(part).prompts:
            module = modules[host.name]
            assert model.group_of(host.name) == part
            assert module.prompts is None and module.deep_prompts is None
            assert host.depth >= 1 and host.dim >= 1


@pytest.mark.parametrize("name", NAMES)
def test_site_layouts_match_the_output_axis(name):
    """A site's declared layout must say where its channel axis is: run one forward with
    hooks and check the out_slice / channel count fits that axis."""
    model = tiny(name)
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}

    def record(key: str):
        def hook(module, inputs, output) -> None:
            shapes.setdefault(key, tuple(output.shape))
        return hook

    handles = [modules[s.name].register_forward_hook(record(s.name))
               for _, _, s in all_sites(model)]
    try:
        with torch.no_grad():
            model(window(model))
    finally:
        for h in handles:
            h.remove()
    for part, field, site in all_sites(model):
        shape = shapes[site.name]
        if site.layout == "channels":
            assert len(shape) == 5, f"{part}.{field} {site.name}: {shape} is not N C D H W"
        else:
            assert len(shape) == 3, f"{part}.{field} {site.name}: {shape} is not B N C"
        if site.out_slice is not None:
            axis = 1 if site.layout == "channels" else -1
            assert site.out_slice[1] <= shape[axis]


@pytest.mark.parametrize("name", NAMES)
def test_forward_keeps_shape(name):
    model = tiny(name)
    x = window(model)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_user_error(name):
    model = tiny(name)
    size = model.patch_size[0] + model.size_multiple // 2
    with pytest.raises(PetiteError):
        model(torch.zeros(2, 1, size, *model.patch_size[1:]))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("deep", [False, True])
def test_prompt_hosts_change_output_and_keep_shape(name, deep):
    model = tiny(name)
    for module in model.modules():  # undo the near-identity start of residual outputs
        if isinstance(module, nn.Conv3d) and module.out_channels == 1:
            module.reset_parameters()
    x = window(model)
    with torch.no_grad():
        base = model(x)
    modules = dict(model.named_modules())
    hosts = [h for part in ("encoder", "decoder") for h in model.sites(part).prompts]
    if not hosts:
        pytest.skip(f"{name} declares no prompt host")
    torch.manual_seed(2)
    attr = "deep_prompts" if deep else "prompts"
    try:
        for host in hosts:
            shape = (host.depth, 3, host.dim) if deep else (1, 3, host.dim)
            setattr(modules[host.name], attr, nn.Parameter(torch.randn(shape)))
        with torch.no_grad():
            out = model(x)
        assert out.shape == base.shape
        assert not torch.allclose(out, base, atol=1e-5)
    finally:
        for host in hosts:
            setattr(modules[host.name], attr, None)
    with torch.no_grad():
        assert torch.equal(model(x), base)


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_runs_and_changes_every_part(name):
    """A plain full training step reaches every generator parameter (no dead tensors)."""
    torch.manual_seed(3)
    model = build_model(name, "small", **smoke_overrides(name)).train()
    x = window(model)
    loss = (model(x) - x).square().mean()
    loss.backward()
    head = set(model.parameter_groups().get("head", []))
    dead = [n for n, p in model.named_parameters()
            if n not in head and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, f"parameters without gradient: {dead[:5]}"
