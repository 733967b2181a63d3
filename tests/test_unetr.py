"""UNETR backbone: MONAI equivalence, VPT prompt host, input checks and attachment sites."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNETR
from torch import nn

from napari_petite.errors import ConfigError
from napari_petite.models.registry import smoke_overrides
from napari_petite.models.unetr import N_LAYERS, UNETRBackbone

TINY = smoke_overrides("unetr")
H = TINY["hidden_size"]


@pytest.fixture(scope="module")
def model() -> UNETRBackbone:
    torch.manual_seed(0)
    return UNETRBackbone("small", **TINY, residual=False).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 1, *TINY["patch_size"])


def _plain_monai(model: UNETRBackbone) -> UNETR:
    c = model.config
    return UNETR(in_channels=1, out_channels=1, img_size=c["patch_size"],
                 feature_size=c["feature_size"], hidden_size=c["hidden_size"],
                 mlp_dim=c["mlp_dim"], num_heads=c["num_heads"], qkv_bias=c["qkv_bias"],
                 norm_name=("instance", {"affine": True})).eval()


def test_without_prompts_bit_identical_to_monai(model, x):
    ref = _plain_monai(model)
    result = ref.load_state_dict(model.state_dict(), strict=False)
    assert not result.unexpected_keys
    # only MONAI's unused cross-attention LayerNorms are absent here
    assert result.missing_keys and all(".norm_cross_attn." in k for k in result.missing_keys)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_loads_monai_state_dict(model, x):
    torch.manual_seed(5)
    ref = _plain_monai(model)
    other = UNETRBackbone("small", **TINY, residual=False).eval()
    other.load_monai_state_dict(ref.state_dict())
    with torch.no_grad():
        assert torch.equal(other(x), ref(x))


def test_residual_adds_the_input_to_monais_output(model, x):
    residual = UNETRBackbone("small", **TINY, residual=True).eval()
    residual.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(residual(x), x + model(x))
    assert UNETRBackbone.PRESETS["small"]["residual"]
    assert not UNETRBackbone.PRESETS["paper"]["residual"]  # the paper's network stays MONAI's


def test_state_dict_keys_are_monai_names(model):
    ref_keys = {k for k in _plain_monai(model).state_dict() if ".norm_cross_attn." not in k}
    assert set(model.state_dict()) == ref_keys


def test_decoder_norms_have_affine_and_qkv_has_bias(model):
    norms = [m for _, m in model.modules_in("decoder") if isinstance(m, nn.InstanceNorm3d)]
    assert norms and all(m.weight is not None and m.bias is not None for m in norms)
    assert all(blk.attn.qkv.bias is not None for blk in model.vit.blocks)


@pytest.mark.parametrize("kind", ["prompts", "deep_prompts"])
def test_prompts_change_output_keep_shape_and_are_stripped(model, x, kind):
    with torch.no_grad():
        base = model(x)
    n = 5
    shape = (1, n, H) if kind == "prompts" else (N_LAYERS, n, H)
    torch.manual_seed(2)
    value = nn.Parameter(torch.randn(shape))
    model.vit.register_parameter(kind, value)  # the other installation route than setattr
    try:
        assert any(p is value for p in model.parameters())
        tokens, hidden = model.vit(x)
        n_patches = x[0, 0].numel() // 16**3
        assert tokens.shape == (1, n_patches, H)
        assert len(hidden) == N_LAYERS
        assert all(h.shape == (1, n_patches, H) for h in hidden)
        out = model(x)
        assert out.shape == base.shape
        assert not torch.allclose(out, base, atol=1e-4)
        out.square().mean().backward()
        grad = value.grad
        assert grad is not None
        # every deep prompt row (one per block) influences the output
        assert all(g.abs().sum() > 0 for g in grad)
    finally:
        setattr(model.vit, kind, None)
        model.zero_grad(set_to_none=True)
    with torch.no_grad():
        assert torch.equal(model(x), base)
    assert model.vit.prompts is None and model.vit.deep_prompts is None
    assert "vit.prompts" not in model.state_dict()


def test_stripping_keeps_exactly_the_patch_tokens(x):
    """With every attention output zeroed, tokens do not interact, so the stripped hidden
    states and output must equal the prompt-free ones exactly when stripping removes the
    prompt tokens (and nothing else)."""
    torch.manual_seed(3)
    m = UNETRBackbone("small", **TINY).eval()
    with torch.no_grad():
        for blk in m.vit.blocks:  # attention contributes nothing -> tokens are independent
            blk.attn.out_proj.weight.zero_()
            blk.attn.out_proj.bias.zero_()
        ref_tokens, ref_hidden = m.vit(x)
        m.vit.prompts = nn.Parameter(torch.randn(1, 7, H))
        tokens, hidden = m.vit(x)
    assert torch.allclose(tokens, ref_tokens, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(hidden, ref_hidden, strict=True))


@pytest.mark.parametrize("kind", ["prompts", "deep_prompts"])
def test_zero_gate_keeps_output_and_gate_learns(model, x, kind):
    with torch.no_grad():
        base = model(x)
    torch.manual_seed(4)
    shape = (1, 6, H) if kind == "prompts" else (N_LAYERS, 6, H)
    setattr(model.vit, kind, nn.Parameter(torch.randn(shape)))
    model.vit.prompt_gate = nn.Parameter(torch.zeros(N_LAYERS))
    try:
        out = model(x)
        assert torch.allclose(out, base, atol=1e-5)
        out.square().mean().backward()
        assert model.vit.prompt_gate.grad.abs().min() > 0  # every block's gate learns at once
        with torch.no_grad():
            model.vit.prompt_gate.fill_(0.5)
            assert not torch.allclose(model(x), base, atol=1e-4)
    finally:
        setattr(model.vit, kind, None)
        model.vit.prompt_gate = None
        model.zero_grad(set_to_none=True)


def test_prompt_shape_errors(model, x):
    for kind, shape in (("prompts", (2, 3, H)), ("prompts", (1, 3, H + 1)),
                        ("deep_prompts", (N_LAYERS - 1, 3, H))):
        setattr(model.vit, kind, nn.Parameter(torch.zeros(shape)))
        try:
            with pytest.raises(ConfigError, match="shape"):
                model(x)
        finally:
            setattr(model.vit, kind, None)
    model.vit.prompts = nn.Parameter(torch.zeros(1, 3, H))
    try:
        model.vit.prompt_gate = nn.Parameter(torch.zeros(N_LAYERS + 1))
        with pytest.raises(ConfigError, match="gate"):
            model(x)
        model.vit.prompt_gate = None
        model.vit.deep_prompts = nn.Parameter(torch.zeros(N_LAYERS, 3, H))
        with pytest.raises(ConfigError, match="only one"):
            model(x)
    finally:
        model.vit.prompts = None
        model.vit.deep_prompts = None
        model.vit.prompt_gate = None


@pytest.mark.parametrize("shape", [(2, 1, 48, 32, 32), (2, 1, 16, 16, 16), (1, 2, 32, 32, 32),
                                   (1, 32, 32, 32)])
def test_wrong_input_size_is_a_config_error(model, shape):
    with pytest.raises(ConfigError, match=r"sliding-window|expects"):
        model(torch.zeros(shape))


def test_config_errors():
    with pytest.raises(ConfigError, match="paper"):
        UNETRBackbone("huge")
    with pytest.raises(ConfigError, match="hidden_size"):
        UNETRBackbone("small", hiden_size=48)
    with pytest.raises(ConfigError, match="divisible"):
        UNETRBackbone("small", **{**TINY, "num_heads": 5})
    with pytest.raises(ConfigError, match="multiples of 16"):
        UNETRBackbone("small", **{**TINY, "patch_size": (32, 32, 40)})


def test_presets():
    paper = UNETRBackbone.PRESETS["paper"]
    assert (paper["hidden_size"], paper["mlp_dim"], paper["num_heads"]) == (768, 3072, 12)
    assert paper["feature_size"] == 16 and tuple(paper["patch_size"]) == (64, 64, 64)
    assert tuple(UNETRBackbone.PRESETS["small"]["patch_size"]) == (64, 64, 64)


def test_encoder_sites(model):
    modules = dict(model.named_modules())
    enc = model.sites("encoder")
    assert len(enc.attention_qk) == 2 * N_LAYERS  # q and k: one LoRA pair each
    assert len(enc.attention_v) == len(enc.ffn) == N_LAYERS
    for site in enc.attention_qk + enc.attention_v:
        assert isinstance(modules[site.name], nn.Linear) and site.name.endswith("attn.qkv")
    assert {s.out_slice for s in enc.attention_qk} == {(0, H), (H, 2 * H)}
    assert {s.out_slice for s in enc.attention_v} == {(2 * H, 3 * H)}
    assert {s.out_slice for s in enc.ia3 if s.name.endswith("qkv")} == {(H, 3 * H)}
    assert all(isinstance(modules[s.name], nn.GELU) for s in enc.ia3 if s.out_slice is None)
    assert enc.convs == ()
    (prompt,) = enc.prompts
    assert (prompt.name, prompt.dim, prompt.depth, prompt.default_tokens) == ("vit", H, 12, 50)


def test_decoder_sites(model):
    modules = dict(model.named_modules())
    dec = model.sites("decoder")
    assert dec.attention_qk == dec.attention_v == dec.prompts == ()
    convs = {n for n, m in model.modules_in("decoder")
             if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)}
    assert {s.name for s in dec.convs} == convs and all(s.layout == "channels" for s in dec.convs)
    assert {s.name for s in dec.ssf} == {f"decoder2.conv_block.norm{i}" for i in (1, 2, 3)}
    assert all(isinstance(modules[s.name], nn.InstanceNorm3d) for s in dec.ssf)
    assert [s.name for s in dec.ffn][-1] == "decoder2" and len(dec.ffn) == 8
    with pytest.raises(ConfigError):
        model.sites("head")


def test_qkv_slices_are_q_k_then_v(model, x):
    """Zeroing the attention_v rows makes attention output only the projection bias;
    zeroing the attention_qk rows makes attention uniform (mean of v over tokens)."""
    blk = model.vit.blocks[0]
    tokens = torch.randn(2, 8, H)
    sites = model.sites("encoder")
    (q0, q1), (k0, k1) = (s.out_slice for s in sites.attention_qk[:2])
    assert q1 == k0
    qk, v = (q0, k1), sites.attention_v[0].out_slice
    saved = blk.attn.qkv.weight.detach().clone(), blk.attn.qkv.bias.detach().clone()
    try:
        with torch.no_grad():
            blk.attn.qkv.weight[v[0]:v[1]] = 0
            blk.attn.qkv.bias[v[0]:v[1]] = 0
            out = blk.attn(tokens)
            assert torch.allclose(out, blk.attn.out_proj.bias.expand_as(out), atol=1e-6)
            blk.attn.qkv.weight.copy_(saved[0])
            blk.attn.qkv.bias.copy_(saved[1])
            blk.attn.qkv.weight[qk[0]:qk[1]] = 0
            blk.attn.qkv.bias[qk[0]:qk[1]] = 0
            values = tokens @ saved[0][v[0]:v[1]].T + saved[1][v[0]:v[1]]
            expected = blk.attn.out_proj(values.mean(dim=1, keepdim=True)).expand_as(out)
            assert torch.allclose(blk.attn(tokens), expected, atol=1e-5)
    finally:
        with torch.no_grad():
            blk.attn.qkv.weight.copy_(saved[0])
            blk.attn.qkv.bias.copy_(saved[1])
