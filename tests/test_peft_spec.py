"""Mix-PEFT spec: defaults, JSON, feasibility from structure (12 + 9 = 21), clear errors,
and the CLI's counted percentages (PETITE under 1 % at the paper's scale)."""

from __future__ import annotations

import json

import pytest
import torch
from test_peft_toys import build

from napari_petite.errors import ConfigError
from napari_petite.peft.apply import apply_spec
from napari_petite.peft.spec import (
    MixPEFTSpec,
    default_config,
    feasible_combinations,
    petite_spec,
)


def test_feasible_grid_is_12_plus_9():
    cvt = feasible_combinations("cvtgan")
    unetr = feasible_combinations("unetr")
    assert len(cvt) == 12 and len(unetr) == 9 and len(cvt) + len(unetr) == 21
    assert all(s.bitfit and s.encoder != s.decoder for s in cvt + unetr)
    assert not any(s.decoder == "vpt" for s in unetr)  # a CNN decoder has no tokens
    assert {(s.encoder, s.decoder) for s in cvt} >= {("vpt", "lora")}
    assert {(s.encoder, s.decoder) for s in unetr} >= {("lora", "ssf")}


def test_feasibility_follows_structure_not_names():
    """The toy has a ViT encoder and a CNN decoder like UNETR: same 9, under another name."""
    toy = feasible_combinations(build("toy"))
    assert len(toy) == 9 and not any(s.decoder == "vpt" for s in toy)


def test_vpt_on_cnn_decoder_names_what_fits():
    model = build("unetr")
    with pytest.raises(ConfigError) as err:
        apply_spec(model, MixPEFTSpec("unetr", "small", "lora", "vpt"))
    msg = str(err.value)
    assert "need a transformer" in msg and "convolutional network" in msg
    assert msg.endswith("Choose adapter or ssf for the decoder.") or \
        "Choose lora, adapter or ssf for the decoder." in msg


def test_spec_errors_are_config_errors():
    with pytest.raises(ConfigError, match="choose one of none, full"):
        MixPEFTSpec("unetr", "small", "prefix", "ssf")
    with pytest.raises(ConfigError, match="rank"):
        MixPEFTSpec("unetr", "small", "lora", "ssf", params={"lora": {"rnk": 4}})
    with pytest.raises(ConfigError, match="unknown method"):
        MixPEFTSpec("unetr", "small", "lora", "ssf", params={"lorra": {}})
    with pytest.raises(ConfigError, match="backbone 'cvtgan'"):
        apply_spec(build("unetr"), MixPEFTSpec("cvtgan", "small", "lora", "ssf"))
    with pytest.raises(ConfigError, match="preset"):
        apply_spec(build("unetr"), MixPEFTSpec("unetr", "paper", "lora", "ssf"))
    model = build("toy")
    apply_spec(model, MixPEFTSpec("toy", "small", "lora", "ssf"))
    with pytest.raises(ConfigError, match="fresh base"):
        apply_spec(model, MixPEFTSpec("toy", "small", "lora", "ssf"))
    with pytest.raises(ConfigError, match="lacks"):
        MixPEFTSpec.from_dict({"backbone": "unetr"})


def test_paper_defaults_per_backbone():
    from napari_petite.peft.config import LoRAConfig, VPTConfig

    assert default_config("unetr", "lora") == LoRAConfig(rank=4)
    assert default_config("unetr", "lora").scale_alpha == 8.0
    assert default_config("cvtgan", "lora").rank == 8
    assert default_config("cvtgan", "lora").scale_alpha == 16.0
    assert default_config("unetr", "adapter").reduction == 4
    assert default_config("cvtgan", "adapter").reduction == 8
    assert default_config("cvtgan", "vpt") == VPTConfig(tokens=None, deep=False, gate="auto")
    spec = MixPEFTSpec("cvtgan", "small", "vpt", "lora", params={"lora": {"rank": 2}})
    lora = spec.method_config("lora")
    assert (lora.rank, lora.scale_alpha, lora.targets) == (2, 4.0, "qk")  # alpha = 2 x rank


@pytest.mark.parametrize(("params", "words"), [
    ({"adapter": {"reduction": 0}}, "reduction' must lie in"),
    ({"lora": {"rank": "8"}}, "rank' must be int"),
    ({"lora": {"targets": "v"}}, "targets' must be one of"),
    ({"vpt": {"tokens": -1}}, "tokens' must lie in"),
    ({"vpt": {"gate": "yes"}}, "gate' must be one of"),
    ({"lora": {"ranks": 8}}, "has no option"),
    ({"lora": 8}, "must be an object"),
])
def test_bad_method_values_are_refused_when_the_spec_is_made(params, words):
    with pytest.raises(ConfigError, match=words):
        MixPEFTSpec("unetr", "small", "lora", "adapter", True, params)


def test_every_method_has_one_typed_config_with_help():
    from napari_petite.peft.config import REGISTRY, options
    from napari_petite.peft.spec import METHODS

    assert set(REGISTRY) == set(METHODS)
    for method in METHODS:
        for f in options(method):
            assert f.metadata["label"] and len(f.metadata["help"]) > 20, (method, f.name)


def test_a_failed_apply_leaves_the_model_as_it_was(monkeypatch):
    """apply_spec is all or nothing: when the decoder's method fails to attach after the
    encoder's LoRA went in, the model comes back with no PEFT modules and its own
    requires_grad flags (the old code left LoRA attached and no peft_state)."""
    from napari_petite.peft import ssf
    from napari_petite.peft.apply import peft_state

    model = build("toy")
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
    classes = {n: type(m) for n, m in model.named_modules()}
    x = torch.rand(2, 1, *model.patch_size) + 0.1
    y = model(x)

    def broken(*_args, **_kw):
        raise RuntimeError("disk full while building SSF")

    monkeypatch.setattr(ssf, "attach", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        apply_spec(model, MixPEFTSpec("toy", "small", "lora", "ssf"))
    assert peft_state(model) is None
    assert {n: type(m) for n, m in model.named_modules()} == classes
    after = dict(model.named_parameters())
    assert set(after) == set(before)
    for name, (value, grad) in before.items():
        assert torch.equal(after[name], value) and after[name].requires_grad == grad, name
    torch.testing.assert_close(model(x), y, rtol=0, atol=0)
    monkeypatch.undo()
    apply_spec(model, MixPEFTSpec("toy", "small", "lora", "ssf"))  # and it still takes a spec


def test_spec_json_round_trip():
    spec = MixPEFTSpec("cvtgan", "paper", "vpt", "lora", True,
                       {"vpt": {"deep": True, "tokens": 4}, "lora": {"targets": "qkv"}})
    again = MixPEFTSpec.from_json(spec.to_json())
    assert again == spec and json.loads(spec.to_json())["params"]["vpt"]["deep"] is True


def test_lora_qkv_option_adds_v():
    qk = apply_spec(build("toy"), MixPEFTSpec("toy", "small", "lora", "none", False))
    qkv = apply_spec(build("toy"), MixPEFTSpec("toy", "small", "lora", "none", False,
                                                {"lora": {"targets": "qkv"}}))
    d, r, blocks = 16, 4, 2  # toy: one q|k site (0, 2d) and one v site (2d, 3d) per block
    assert qk.n_trainable == blocks * (r * d + 2 * d * r)
    assert qkv.n_trainable == qk.n_trainable + blocks * (r * d + d * r)


def test_head_stays_frozen_under_peft_and_trains_under_full():
    peft = apply_spec(build("cvtgan"), petite_spec("cvtgan", "small"))
    full = apply_spec(build("cvtgan"), MixPEFTSpec("cvtgan", "small", "full", "full", False))
    assert peft.head_trainable == 0 and full.head_trainable > 0
    assert full.percent == 100.0  # the discriminator is outside the denominator


def test_methods_command_paper_petite_under_one_percent(capsys):
    from napari_petite.cli import main

    assert main(["methods", "--backbone", "unetr", "--preset", "paper", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    unetr = out["backbones"][0]
    assert unetr["petite"]["encoder"] == "lora" and unetr["petite"]["decoder"] == "ssf"
    assert 0 < unetr["petite"]["percent"] < 1
    assert len(unetr["mix_peft"]) == 9
    assert main(["methods", "--backbone", "cvtgan", "--preset", "paper", "--json"]) == 0
    cvt = json.loads(capsys.readouterr().out)["backbones"][0]
    assert (cvt["petite"]["encoder"], cvt["petite"]["decoder"]) == ("vpt", "lora")
    assert 0 < cvt["petite"]["percent"] < 1 and len(cvt["mix_peft"]) == 12
    assert main(["methods", "--backbone", "nope"]) == 2


def test_recommended_recipe_keeps_lora_within_the_budget():
    """On the shipped small UNETR the paper's rank 4 trains 1.1 %; the recommended recipe
    halves the rank until the count is at most 1 %, and leaves a recipe that fits alone."""
    from pathlib import Path

    from napari_petite.peft.count import BUDGET_PERCENT, SpecCounter

    card = json.loads((Path(__file__).parents[1] / "sample_data" / "models"
                       / "unetr-small.json").read_text())
    counter = SpecCounter()
    paper = counter.count(petite_spec("unetr", "small"), card["config"])
    assert paper[2] > BUDGET_PERCENT  # the reason the recipe is lowered at all
    spec = counter.recommended("unetr", "small", card["config"])
    assert (spec.encoder, spec.decoder, spec.bitfit) == ("lora", "ssf", True)
    assert spec.method_config("lora").rank == 2 and spec.method_config("lora").scale_alpha == 4
    assert counter.count(spec, card["config"])[2] <= BUDGET_PERCENT
    assert counter.recommended("unetr", "paper") == petite_spec("unetr", "paper")  # 0.27 %
    assert counter.recommended("cvtgan", "small") == petite_spec("cvtgan", "small")
