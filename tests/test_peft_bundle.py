"""Adapter bundles refuse what does not match; merging folds LoRA/SSF/IA3 exactly; adapters
and gated VPT receive gradient where the released code's did not."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_peft_toys import BACKBONES, build, inputs
from torch import nn

from napari_petite.errors import CheckpointError, ConfigError, OutputError
from napari_petite.peft.apply import apply_spec
from napari_petite.peft.bundle import load_adapter, save_adapter
from napari_petite.peft.lora import LoRAMixin
from napari_petite.peft.merge import merge_peft
from napari_petite.peft.spec import MixPEFTSpec

SHA, OTHER = "ab" * 32, "cd" * 32


@pytest.fixture
def bundle(tmp_path):
    model = build("toy")
    spec = MixPEFTSpec("toy", "small", "lora", "ssf", True)
    apply_spec(model, spec)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    return model, spec, save_adapter(model, spec, tmp_path / "ad", base_sha256=SHA, seed=7,
                                     training={"lr": 1e-3}, metrics={"psnr": 30.0})


def test_card_records_spec_base_and_tensors(bundle):
    model, spec, folder = bundle
    card = json.loads((folder / "adapter.json").read_text())
    assert card["spec"] == spec.to_dict() and card["base_sha256"] == SHA and card["seed"] == 7
    assert card["training"] == {"lr": 1e-3} and card["metrics"] == {"psnr": 30.0}
    stored = load_file(str(folder / "adapter.safetensors"))
    assert set(card["tensors"]) == set(stored)
    assert set(stored) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(k.endswith(".bias") for k in stored)  # BitFit tensors travel with the adapter
    assert [p.name for p in folder.parent.iterdir()] == ["ad"]  # no temp folder left


def test_refuses_other_base_backbone_and_config(bundle):
    _, _, folder = bundle
    with pytest.raises(CheckpointError) as err:
        load_adapter(build("toy"), folder, base_sha256=OTHER)
    assert SHA in str(err.value) and OTHER in str(err.value)
    with pytest.raises(CheckpointError, match="backbone 'toy'"):
        load_adapter(build("cvtgan"), folder)
    from test_peft_toys import ToyNet

    with pytest.raises(CheckpointError, match="configuration"):
        load_adapter(ToyNet("small", dim=8), folder)


def test_refuses_missing_or_edited_tensors(bundle):
    _, _, folder = bundle
    weights = folder / "adapter.safetensors"
    tensors = load_file(str(weights))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match="sha256"):
        load_adapter(build("toy"), folder)
    card = json.loads((folder / "adapter.json").read_text())
    card.pop("adapter_sha256")  # an edited card: the strict tensor check still catches it
    (folder / "adapter.json").write_text(json.dumps(card))
    target = build("toy")
    with pytest.raises(CheckpointError, match="missing"):
        load_adapter(target, folder)
    # all or nothing: the refused bundle left no PEFT module and no state on the base, so the
    # same model can take a good adapter at once (it said "already carries PEFT" before)
    from napari_petite.peft.apply import peft_state

    assert peft_state(target) is None
    assert not any(isinstance(m, LoRAMixin) for m in target.modules())
    assert all(p.requires_grad for p in target.parameters())  # as build() made them
    apply_spec(target, MixPEFTSpec("toy", "small", "lora", "ssf", True))


def test_bundles_are_shareable_like_any_file(bundle):
    """A bundle is for colleagues: folder and files get 0o777 / 0o666 minus the umask (they
    were mkdtemp's private 0o700 and 0o600 when the bundle hand-rolled its folder write)."""
    import os
    import stat

    from napari_petite.io.atomic import DIR_MODE, FILE_MODE

    _, _, folder = bundle
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == DIR_MODE == 0o777 & ~mask
    for name in ("adapter.safetensors", "adapter.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == FILE_MODE == 0o666 & ~mask


def test_atomic_dir_is_all_or_nothing(tmp_path):
    from napari_petite.io.atomic import atomic_dir

    dest = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary copy
    with atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(OutputError, match="already exists"), atomic_dir(dest):
        pass
    with atomic_dir(dest, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in dest.iterdir()) == [".petite-output.json", "b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_overwrite_rules(bundle, tmp_path):
    model, spec, folder = bundle
    with pytest.raises(OutputError, match="already exists"):
        save_adapter(model, spec, folder, base_sha256=SHA)
    save_adapter(model, spec, folder, base_sha256=SHA, overwrite=True, seed=8)
    assert json.loads((folder / "adapter.json").read_text())["seed"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ad"]
    with pytest.raises(ConfigError, match="no PEFT"):
        save_adapter(build("toy"), spec, tmp_path / "x", base_sha256=SHA)
    with pytest.raises(ConfigError, match="sha256"):
        save_adapter(model, spec, tmp_path / "x", base_sha256="abc")


def _perturb(model):
    """Stand-in for training: every PEFT tensor moves away from its identity init."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", ["lora", "ssf", "ia3"])
def test_merge_gives_same_outputs(backbone, method):
    model = build(backbone)
    n_base = sum(p.numel() for p in model.parameters())
    apply_spec(model, MixPEFTSpec(backbone, "small", method, method, True))
    _perturb(model)
    x = inputs(model)
    with torch.no_grad():
        before = model.eval()(x)
    report = merge_peft(model)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert report.merged
    assert not any(isinstance(m, LoRAMixin) for m in model.modules())
    if method == "lora":
        assert report.complete and sum(p.numel() for p in model.parameters()) == n_base
    for name, reason in report.kept.items():  # what stays is named with why
        assert name.endswith(f".{method}") and reason


def test_merge_strict_and_unmergeable():
    model = build("toy")
    apply_spec(model, MixPEFTSpec("toy", "small", "vpt", "adapter", False))
    with pytest.raises(ConfigError, match="cannot be merged"):
        merge_peft(model, strict=True)
    spec = MixPEFTSpec("toy", "small", "lora", "lora", False)
    merged = build("toy")
    apply_spec(merged, spec)
    merge_peft(merged)
    with pytest.raises(ConfigError, match="merged"):
        save_adapter(merged, spec, "/tmp/never-written", base_sha256=SHA)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_adapter_weights_learn(backbone):
    """Up-projection gradient on step 1, down-projection from step 2; with the released
    code's init (both zero) no adapter weight ever gets a gradient."""
    model = build(backbone)
    apply_spec(model, MixPEFTSpec(backbone, "small", "adapter", "adapter", False))
    adapters = [m for n, m in model.named_modules() if n.endswith(".adapter")]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = inputs(model)
    nn.functional.mse_loss(model(x), 1.5 * x).backward()
    assert all(a.up.weight.grad.abs().sum() > 0 for a in adapters)
    assert all(a.up.bias.grad.abs().sum() > 0 for a in adapters)
    opt.step()
    opt.zero_grad()
    nn.functional.mse_loss(model(x), 1.5 * x).backward()
    assert all(a.down.weight.grad.abs().sum() > 0 for a in adapters)
    assert all(a.up.weight.grad.abs().sum() > 0 for a in adapters)

    released = build(backbone)
    apply_spec(released, MixPEFTSpec(backbone, "small", "adapter", "adapter", False))
    for name, a in released.named_modules():
        if name.endswith(".adapter"):
            nn.init.zeros_(a.down.weight)
            nn.init.zeros_(a.down.bias)
    nn.functional.mse_loss(released(x), 1.5 * x).backward()
    for name, a in released.named_modules():
        if name.endswith(".adapter"):
            assert a.up.weight.grad.abs().sum() == 0 and a.down.weight.grad.abs().sum() == 0


@pytest.mark.parametrize("deep", [False, True])
def test_gated_vpt_unchanged_at_init_and_learns(deep):
    model = build("toy")
    x = inputs(model)
    with torch.no_grad():
        base = model.eval()(x)
    apply_spec(model, MixPEFTSpec("toy", "small", "vpt", "none", False,
                                  {"vpt": {"deep": deep, "tokens": 3}}))
    host = model.vit
    prompts = host.deep_prompts if deep else host.prompts
    assert prompts.shape == ((2 if deep else 1), 3, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base, atol=1e-5, rtol=0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    nn.functional.mse_loss(model(x), 1.5 * x).backward()
    assert host.prompt_gate.grad.abs().min() > 0  # every block's gate learns on step 1
    opt.step()
    opt.zero_grad()
    nn.functional.mse_loss(model(x), 1.5 * x).backward()
    assert prompts.grad.abs().sum() > 0  # prompts learn once the gates opened
