"""LoRA on Linear (incl. fused-qkv slices), Conv3d (depthwise, grouped, dilated, strided) and
ConvTranspose3d: unchanged at init, full-kernel updates, exact merge, stable state-dict keys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.peft.lora import LoRAMixin, add_lora, remove_lora

MODULES = {
    "linear": lambda: nn.Linear(6, 9),
    "conv-depthwise": lambda: nn.Conv3d(4, 4, 3, padding=1, groups=4, bias=False),
    "conv-dilated": lambda: nn.Conv3d(4, 6, 3, padding=2, dilation=2),
    "conv-grouped-strided": lambda: nn.Conv3d(4, 6, 3, stride=2, padding=1, groups=2),
    "conv-1x1x1": lambda: nn.Conv3d(4, 6, 1),
    "convT": lambda: nn.ConvTranspose3d(4, 6, 2, stride=2),
    "convT-grouped-dilated": lambda: nn.ConvTranspose3d(4, 6, 3, stride=2, padding=1,
                                                        output_padding=1, groups=2, dilation=1),
    "convT-dilated": lambda: nn.ConvTranspose3d(4, 2, 3, dilation=2),
    "conv-depthwise-27": lambda: nn.Conv3d(8, 8, 3, padding=1, groups=8),
}


def _input(module: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if isinstance(module, nn.Linear):
        return torch.randn(2, 5, module.in_features, generator=g)
    return torch.randn(2, module.in_channels, 6, 6, 6, generator=g)


def _randomise(module: nn.Module) -> None:
    """What training does: B leaves zero."""
    with torch.no_grad():
        for b in module.lora_B:
            b.normal_(0, 0.5)


def _reference_weight(module: nn.Module) -> torch.Tensor:
    """W + alpha/r * B @ A, reshaped to the *full* kernel, computed independently."""
    delta = torch.cat([b @ a for a, b in zip(module.lora_A, module.lora_B, strict=True)], 0)
    return module.weight + module.lora_scaling * delta.reshape(module.weight.shape)


@pytest.mark.parametrize("kind", list(MODULES))
def test_lora_unchanged_at_init_then_exact_merge(kind):
    torch.manual_seed(0)
    module = MODULES[kind]()
    keys = set(module.state_dict())
    weight_before = module.weight
    x = _input(module)
    y0 = module(x)

    add_lora(module, rank=2, alpha=4)
    assert isinstance(module, LoRAMixin) and isinstance(module, type(module)._lora_base_cls)
    assert module.weight is weight_before  # the base parameter itself, same key
    assert set(module.state_dict()) == keys | {"lora_A.0", "lora_B.0"}
    assert torch.equal(module(x), y0)

    _randomise(module)
    y1 = module(x)
    assert not torch.allclose(y1, y0, atol=1e-4)
    # the low-rank update covers the whole kernel (loralib sized it for 2D kernels only)
    fan = math.prod(module.weight.shape[1:])
    assert module.lora_A[0].shape == (2, fan)
    assert module.lora_delta().shape == module.weight.shape
    if isinstance(module, nn.Linear):
        ref = F.linear(x, _reference_weight(module), module.bias)
    elif module.transposed:
        ref = F.conv_transpose3d(x, _reference_weight(module), module.bias, module.stride,
                                 module.padding, module.output_padding, module.groups,
                                 module.dilation)
    else:
        ref = F.conv3d(x, _reference_weight(module), module.bias, module.stride,
                       module.padding, module.dilation, module.groups)
    torch.testing.assert_close(y1, ref, atol=1e-5, rtol=1e-5)

    module.merge()
    torch.testing.assert_close(module(x), y1, atol=1e-5, rtol=1e-5)
    module.unmerge()
    torch.testing.assert_close(module(x), y1, atol=1e-5, rtol=1e-5)
    remove_lora(module, merge=True)
    assert type(module) is type(MODULES[kind]())
    assert set(module.state_dict()) == keys
    torch.testing.assert_close(module(x), y1, atol=1e-5, rtol=1e-5)


def test_depthwise_3d_update_has_27_values_per_channel():
    conv = nn.Conv3d(8, 8, 3, padding=1, groups=8)
    add_lora(conv, rank=8, alpha=16)
    assert conv.lora_delta().numel() == 27 * 8  # loralib 0.1.2 produced 9 * 8


def test_conv_transpose_output_size_is_honoured():
    torch.manual_seed(0)
    conv = nn.ConvTranspose3d(4, 3, 3, stride=2, padding=1)
    x = torch.randn(1, 4, 5, 5, 5)
    base = conv(x, output_size=[10, 10, 10])
    add_lora(conv, rank=2, alpha=2)
    out = conv(x, output_size=[10, 10, 10])
    assert out.shape == base.shape == (1, 3, 10, 10, 10)
    assert torch.equal(out, base)


def test_fused_qkv_slices_update_only_q_and_k():
    torch.manual_seed(0)
    qkv = nn.Linear(8, 24)
    x = torch.randn(3, 8)
    y0 = qkv(x)
    add_lora(qkv, rank=2, alpha=4, slices=((0, 8), (8, 16)))
    assert [tuple(b.shape) for b in qkv.lora_B] == [(8, 2), (8, 2)]
    _randomise(qkv)
    y1 = qkv(x)
    assert not torch.allclose(y1[:, :16], y0[:, :16])
    assert torch.equal(y1[:, 16:], y0[:, 16:])  # v untouched
    delta = qkv.lora_delta()
    assert torch.count_nonzero(delta[16:]) == 0
    qkv.merge()
    torch.testing.assert_close(qkv(x), y1, atol=1e-5, rtol=1e-5)


def test_gradients_reach_b_first_then_a():
    torch.manual_seed(0)
    conv = add_lora(nn.Conv3d(4, 4, 3, padding=1, groups=4), rank=2, alpha=4)
    conv(torch.randn(1, 4, 4, 4, 4)).square().sum().backward()
    assert conv.lora_B[0].grad.abs().sum() > 0  # B zero, A random: B learns at once
    assert conv.weight.grad is not None  # (only frozen by apply_spec, not by add_lora)


def test_bad_rank_and_double_wrap():
    with pytest.raises(ConfigError, match="rank"):
        add_lora(nn.Linear(2, 2), rank=0, alpha=1)
    lin = add_lora(nn.Linear(2, 2), rank=1, alpha=1)
    with pytest.raises(ValueError):
        add_lora(lin, rank=1, alpha=1)


def test_lora_module_deepcopies():
    import copy

    torch.manual_seed(0)
    lin = add_lora(nn.Linear(4, 4), rank=2, alpha=2)
    _randomise(lin)
    twin = copy.deepcopy(lin)
    x = torch.randn(2, 4)
    assert torch.equal(twin(x), lin(x))
    assert twin.lora_A[0] is not lin.lora_A[0]
