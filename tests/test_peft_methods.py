"""Every PEFT method on every backbone where it fits: the issue's must-show properties.

For each (backbone, method): the output equals the base model's at init; exactly the intended
tensors require grad (derived here from the declared sites, independently of the method
code); one AdamW step changes those tensors and nothing else, buffers included; a saved
adapter bundle reloaded on a fresh base reproduces the outputs bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_peft_toys import BACKBONES, build, inputs
from torch import nn

from napari_petite.peft import lora as lora_mod
from napari_petite.peft._sites import NORM_TYPES, group_by_module
from napari_petite.peft.apply import apply_spec, peft_state, train_mode
from napari_petite.peft.bundle import load_adapter, save_adapter
from napari_petite.peft.spec import METHODS, MixPEFTSpec, feasible_combinations, why_not

SHA = "ab" * 32


def spec_for(model, method: str, bitfit: bool = False) -> MixPEFTSpec:
    """``method`` on every part it fits, ``none`` elsewhere."""
    parts = [method if why_not(model, p, method) is None else "none"
             for p in ("encoder", "decoder")]
    return MixPEFTSpec(model.name, model.preset, parts[0], parts[1], bitfit)


def expected_trainable(model, spec: MixPEFTSpec) -> set[str]:
    """Parameter names that must require grad, from the sites and the module tree."""
    names = {n for n, _ in model.named_parameters()}
    want: set[str] = set()
    for part in ("encoder", "decoder"):
        method, sites = getattr(spec, part), model.sites(part)
        in_part = {n for n in names if model.group_of(n) == part}
        if method == "full":
            want |= in_part
        elif method == "bitfit":
            want |= {n for n in in_part if n.endswith(".bias")}
        elif method == "layernorm":
            for mod_name, mod in model.modules_in(part):
                if isinstance(mod, NORM_TYPES):
                    want |= {f"{mod_name}.{p}" for p, _ in mod.named_parameters(recurse=False)}
        elif method == "lora":
            targets = lora_mod.target_sites(sites, spec.method_config("lora").targets)
            for name, group in group_by_module(targets).items():
                for i in range(len(group)):
                    want |= {f"{name}.lora_A.{i}", f"{name}.lora_B.{i}"}
        elif method == "adapter":
            want |= {f"{s.name}.adapter.{p}.{w}" for s in sites.ffn
                     for p in ("down", "up") for w in ("weight", "bias")}
        elif method == "ssf":
            want |= {f"{s.name}.ssf.{w}" for s in sites.ssf for w in ("scale", "shift")}
        elif method == "ia3":
            want |= {f"{s.name}.ia3.scale" for s in sites.ia3}
        elif method == "vpt":
            for host in sites.prompts:
                if host.default_tokens:
                    want.add(f"{host.name}.prompts")
                    if hasattr(model.get_submodule(host.name), "prompt_gate"):
                        want.add(f"{host.name}.prompt_gate")
        if spec.bitfit:
            want |= {n for n in in_part if n.endswith(".bias")}
    if spec.head_trainable():
        want |= {n for n in names if model.group_of(n) == "head"}
    return want


def cases():
    for backbone in BACKBONES:
        for method in METHODS:
            yield pytest.param(backbone, method, id=f"{backbone}-{method}")


@pytest.fixture(scope="module")
def base_outputs():
    """Base output of each tiny backbone on a fixed input (computed once)."""
    out = {}
    for backbone in BACKBONES:
        model = build(backbone).eval()
        with torch.no_grad():
            out[backbone] = model(inputs(model))
    return out


def _step(model, steps: int = 1) -> None:
    """``steps`` AdamW steps on an MSE loss, in PEFT train mode."""
    train_mode(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=1e-2) if trainable else None
    for _ in range(steps):
        x = inputs(model)
        out = model(x)
        if opt is not None:  # ``none`` trains nothing; its forward must still move nothing
            opt.zero_grad()
            nn.functional.mse_loss(out, x * 1.5).backward()
            opt.step()


@pytest.mark.parametrize(("backbone", "method"), cases())
def test_method(backbone, method, base_outputs, tmp_path):
    model = build(backbone)
    spec = spec_for(model, method, bitfit=False)
    if spec.encoder == spec.decoder == "none" and method != "none":
        pytest.skip(f"{method} fits no part of {backbone}")
    report = apply_spec(model, spec)

    # the output is the base model's at init
    with torch.no_grad():
        out = model.eval()(inputs(model))
    ungated = any("ungated" in n for n in report.notes)
    if ungated:  # plain VPT on a host without prompt_gate: checked to move, xfailed below
        assert not torch.allclose(out, base_outputs[backbone], atol=1e-5)
    else:
        torch.testing.assert_close(out, base_outputs[backbone], atol=1e-5, rtol=0)

    # exactly the intended tensors require grad; the report counts the denoiser only
    want = expected_trainable(model, spec)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == want
    assert set(report.trainable) == want
    params = dict(model.named_parameters())
    denoiser = {n for n in params if model.group_of(n) != "head"}
    assert report.n_trainable == sum(params[n].numel() for n in want & denoiser)
    assert report.n_total == sum(params[n].numel() for n in denoiser)

    # one AdamW step changes those tensors and nothing else (parameters and buffers)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model)
    for name in want & denoiser:  # every tuned tensor of the denoiser is reached by the loss
        assert params[name].grad is not None, name
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    # a trainable tensor moves unless it had neither gradient nor value (AdamW: nothing to do)
    should_move = {n for n in want if params[n].grad is not None
                   and (params[n].grad.any() or params[n].detach().any())}
    assert moved & set(params) == should_move
    live = peft_state(model).live_parts
    live_buffers = {
        f"{mod_name}.{b}" for mod_name, mod in model.named_modules()
        if isinstance(mod, nn.modules.batchnorm._NormBase) and mod.track_running_stats
        and model.group_of(mod_name) in live for b, _ in mod.named_buffers(recurse=False)
    }
    assert moved - set(params) <= live_buffers
    if method != "full":
        assert not moved - set(params), "buffers moved under PEFT"

    # save -> load on a fresh base reproduces the outputs bit for bit
    _step(model)  # a second step: zero-initialised tensors now hold trained values too
    folder = save_adapter(model, spec, tmp_path / "adapter", base_sha256=SHA, seed=3,
                          metrics={"psnr": 31.2}, training={"steps": 2})
    fresh = build(backbone)
    assert load_adapter(fresh, folder, base_sha256=SHA) == spec
    x = inputs(model, seed=5)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), fresh.eval()(x))
    stored = set(load_file(str(folder / "adapter.safetensors")))
    assert want <= stored
    extra = stored - want  # only statistics of fully fine-tuned parts travel along
    assert all(k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
               for k in extra)
    if method != "full":
        assert not extra
    if ungated:
        pytest.xfail(f"the {backbone} prompt hosts have no prompt_gate, so plain VPT moves the "
                     "output at init (see napari_petite.peft.vpt); all other checks passed")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_mix_peft_grid_applies_with_bitfit(backbone, base_outputs):
    model = build(backbone)
    for spec in feasible_combinations(model):
        fresh = build(backbone)
        report = apply_spec(fresh, spec)
        assert {n for n, p in fresh.named_parameters() if p.requires_grad} == \
            expected_trainable(fresh, spec)
        assert 0 < report.percent < 100
        if not report.notes:
            with torch.no_grad():
                out = fresh.eval()(inputs(fresh))
            torch.testing.assert_close(out, base_outputs[backbone], atol=1e-5, rtol=0)
