"""The quantitative-fidelity training options do what they say, on tiny real models and data:
hot-spot sampling, synthetic lesion augmentation, the losses, faithful checkpoint choice,
validation's fidelity summary, resume with the options, the CLI flags and fingerprints."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from test_ddp import tiny_workspace
from test_engine import losses_of, pairs, tiny

from napari_petite.errors import ConfigError
from napari_petite.training import losses as L
from napari_petite.training.engine import (
    FIDELITY_FIELDS,
    RECIPES,
    Control,
    TrainConfig,
    Trainer,
    choose_best,
    recipe_of,
)
from napari_petite.training.fidelity import Reference
from napari_petite.training.sampling import PatchSampler, prepare_pair
from napari_petite.training.sweep import RowPlan, SweepSetup, fingerprint


def blob_pair():
    """A uniform head (value 1) with one hot blob (value 8) at (10, 10, 10); full = 2 x low."""
    low = np.zeros((48, 48, 48), np.float32)
    z, y, x = np.ogrid[:48, :48, :48]
    low[(z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 < 20 ** 2] = 1.0
    low[(z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 3 ** 2] = 8.0
    return prepare_pair("blob", low, 2.0 * low, (16, 16, 16), spacing=(2.0, 2.0, 2.0))


def test_hot_sampling_centres_patches_on_the_hottest_structure():
    pair = blob_pair()
    hot = PatchSampler([pair], (16, 16, 16), np.random.default_rng(0), hot_fraction=1.0)
    for _ in range(8):
        low, _ = hot.batch(1)
        assert low.max() == pytest.approx(8.0 / pair.scale)
    head = PatchSampler([pair], (16, 16, 16), np.random.default_rng(0), head_fraction=1.0)
    share = np.mean([head.batch(1)[0].max() > 2.0 / pair.scale for _ in range(40)])
    assert share < 0.5  # without the option, the blob is in few patches


def test_augmentation_inserts_the_same_spheres_in_input_and_target_seeded():
    pair = blob_pair()

    def draw(seed, augment):
        return PatchSampler([pair], (16, 16, 16), np.random.default_rng(seed), head_fraction=1.0,
                            augment=augment).batch(4)

    low, full = draw(3, 1.0)
    np.testing.assert_allclose(full, 2.0 * low, rtol=1e-5)  # same factor in both
    plain_low, _ = draw(3, 0.0)
    again = draw(3, 1.0)
    np.testing.assert_array_equal(again[0], low)
    # off by default: the plain sampler is bit-identical to augment=0
    np.testing.assert_array_equal(plain_low, PatchSampler(
        [pair], (16, 16, 16), np.random.default_rng(3), head_fraction=1.0).batch(4)[0])
    # the field itself: 1 far from the spheres, above or below 1 inside them
    factor = PatchSampler([pair], (16, 16, 16), np.random.default_rng(5),
                          augment=1.0)._spheres((2.0, 2.0, 2.0))
    assert factor.shape == (16, 16, 16) and np.any(np.abs(factor - 1) > 0.2)
    assert factor.min() > 0


def test_losses_on_known_tensors():
    pred = torch.tensor([1.0, 2.0, 4.0]).reshape(1, 1, 1, 1, 3)
    target = torch.tensor([1.0, 1.0, 2.0]).reshape(1, 1, 1, 1, 3)
    assert float(L.pixel_loss("mse", pred, target)) == pytest.approx(5 / 3)
    assert float(L.pixel_loss("l1", pred, target)) == pytest.approx(1.0)
    expected = np.mean([p - t * math.log(p + L.POISSON_EPS)
                        for p, t in ((1, 1), (2, 1), (4, 2))])
    assert float(L.pixel_loss("poisson", pred, target)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError):
        L.pixel_loss("huber", pred, target)
    x = torch.rand(1, 1, 12, 12, 12)
    means = L.block_means(x, 4)
    assert means.shape == (1, 1, 3, 3, 3)
    assert float(means[0, 0, 0, 0, 0]) == pytest.approx(float(x[0, 0, :4, :4, :4].mean()))
    assert float(L.lowfreq_loss(x, x, 4)) == 0.0
    # noise of zero mean is (nearly) invisible to the low-frequency term, a bias is not
    ones = torch.ones(1, 1, 24, 24, 24)
    noise = torch.randn(1, 1, 24, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.1
    assert float(L.lowfreq_loss(ones + noise, ones, 6)) < 1e-4
    assert float(L.lowfreq_loss(0.8 * ones, ones, 6)) == pytest.approx(0.04, rel=1e-4)


def test_lowfreq_term_is_added_with_its_weight():
    tr = Trainer(tiny(), pairs(), [], TrainConfig(steps=1, device="cpu", val_every=0,
                                                  lowfreq_weight=2.0))
    pred, target, low = (torch.rand(1, 1, 16, 16, 16) for _ in range(3))
    plain = float(torch.nn.functional.mse_loss(pred, target))
    term = float(L.lowfreq_loss(pred, low, tr.lowfreq_block))
    assert float(tr._loss(pred, target, low)) == pytest.approx(plain + 2.0 * term, rel=1e-5)


def test_faithful_selection_refuses_steps_that_quantify_worse():
    history = [
        {"step": 0, "psnr": 25.0, "region_abs_bias_pct": 2.0, "lesion_suvmean_bias_pct": -3.0},
        {"step": 25, "psnr": 27.0, "region_abs_bias_pct": 5.0, "lesion_suvmean_bias_pct": -9},
        {"step": 50, "psnr": 26.0, "region_abs_bias_pct": 2.5, "lesion_suvmean_bias_pct": 3.5},
        {"step": 75, "psnr": 26.5, "region_abs_bias_pct": 2.2, "lesion_suvmean_bias_pct": -4.5},
    ]
    assert choose_best(history)["step"] == 25
    assert choose_best(history, "faithful", 1.0)["step"] == 50
    assert choose_best(history, "faithful", 2.0)["step"] == 75
    assert choose_best(history[:1], "faithful")["step"] == 0
    no_lesions = [dict(h, lesion_suvmean_bias_pct=math.nan) for h in history]
    assert choose_best(no_lesions, "faithful", 1.0)["step"] == 75
    assert choose_best([]) is None


def _reference_pair(pair):
    labels = np.zeros(pair.full.shape, np.int32)
    labels[pair.full > 0] = 1
    labels[pair.full > 1.5 * np.median(pair.full[pair.full > 0])] = 11
    pair.reference = Reference.build(pair.full, pair.spacing, labels=labels,
                                     names={1: "grey matter", 11: "hot lesion"})
    return pair


def test_validation_reports_fidelity_and_faithful_run_keeps_an_eligible_step():
    val = [_reference_pair(pairs(1, seed=5)[0])]
    tr = Trainer(tiny(), pairs(), val, TrainConfig(steps=4, device="cpu", val_every=2,
                                                   select="faithful", lr=3e-3))
    t0 = time.perf_counter()
    events = list(tr.run())
    vals = [e.val for e in events if e.kind == "val"]
    assert len(vals) == 3 and all("region_abs_bias_pct" in v for v in vals)
    assert all(math.isfinite(v["lesion_suvmean_bias_pct"]) for v in vals)
    assert "suvr_abs_bias_pct" not in vals[0]  # not measurable here: left out, not NaN
    done = events[-1]
    assert done.val == choose_best(tr.val_history, "faithful", 1.0)
    assert time.perf_counter() - t0 < 120


def test_options_resume_with_the_straight_runs_trace(tmp_path):
    options = dict(sampling="hot", hot_fraction=0.5, lesion_augment=0.5, loss="poisson",
                   lowfreq_weight=1.0)

    def make(model=None, **kw):
        cfg = TrainConfig(steps=4, batch_size=2, seed=2, device="cpu", val_every=0,
                          **options, **kw)
        return Trainer(model or tiny(seed=2), pairs(), [], cfg)

    straight = losses_of(list(make().run()))
    plain = losses_of(list(Trainer(tiny(seed=2), pairs(), [], TrainConfig(
        steps=4, batch_size=2, seed=2, device="cpu", val_every=0)).run()))
    assert straight != plain  # the options change the run
    first = make(checkpoint_every=2, checkpoint_dir=str(tmp_path / "ck"))
    control = Control()
    for event in first.run(control):
        if event.kind == "checkpoint":
            control.stop()
    resumed = make(model=tiny(seed=2))
    resumed.load_checkpoint(tmp_path / "ck")
    rest = losses_of(list(resumed.run()))
    np.testing.assert_allclose(rest, straight[2:], rtol=1e-5)


def test_config_refuses_nonsense_and_fingerprints_name_only_options_in_use():
    for bad in (dict(sampling="lesions"), dict(hot_fraction=1.5), dict(lesion_augment=-0.1),
                dict(loss="huber"), dict(lowfreq_weight=-1.0), dict(lowfreq_reference="x"),
                dict(select="ssim"), dict(lowfreq_block_mm=0.0)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad).check()
    assert TrainConfig(**RECIPES["paper"]).fidelity_options() == {}
    faithful = TrainConfig(**RECIPES["faithful"]).fidelity_options()
    assert faithful["sampling"] == "hot" and faithful["select"] == "faithful"

    class FakeScanner:
        id = "vision"

    class FakeSplit:
        def to_dict(self):
            return {"train": ["a"], "val": [], "test": ["b"]}

    def fp(config):
        setup = SweepSetup(FakeScanner(), FakeSplit(), None, "sha", config, None, {})
        return fingerprint(RowPlan("no-ft", "No-FT", "baseline"), setup)

    assert "sampling" not in fp(TrainConfig()) and "loss" not in fp(TrainConfig())
    used = fp(TrainConfig(sampling="hot", loss="l1"))
    assert used["sampling"] == "hot" and used["hot_fraction"] == 0.3 and used["loss"] == "l1"


def test_a_config_names_its_recipe_and_the_cli_applies_it_the_same_way():
    from napari_petite.commands import _options as opt

    assert recipe_of(TrainConfig()) == "paper"  # the dataclass's defaults are the paper's
    faithful = TrainConfig(steps=7, seed=3).with_recipe("faithful")
    assert recipe_of(faithful) == "faithful" and (faithful.steps, faithful.seed) == (7, 3)
    assert faithful.sampling == "hot" and faithful.select == "faithful"
    assert recipe_of(faithful.with_recipe("paper")) == "paper"
    # every fidelity field counts, also those the recipe does not name
    assert recipe_of(TrainConfig().with_recipe("faithful", loss="poisson")) == "custom"
    assert recipe_of(TrainConfig(lowfreq_weight=5.0)) == "custom"
    with pytest.raises(ConfigError):
        TrainConfig().with_recipe("fast")
    # the CLI reads --recipe through the same function: one meaning of a recipe
    assert set(opt.FIDELITY_FLAGS) == set(FIDELITY_FIELDS)
    parser = argparse.ArgumentParser()
    opt.add_fidelity(parser, "faithful")
    assert opt.fidelity_options(parser.parse_args([])) == faithful.recipe_fields()
    custom = opt.fidelity_options(parser.parse_args(["--loss", "l1"]))
    assert custom == {**faithful.recipe_fields(), "loss": "l1"}
    assert recipe_of(TrainConfig(**custom)) == "custom"


def test_cli_flags_reach_the_card_and_bad_values_exit_2(tmp_path):
    data, base = tiny_workspace(tmp_path)
    common = [sys.executable, "-m", "napari_petite.cli", "finetune", "--data", str(data),
              "--target", "site-b", "--base", str(base), "--steps", "1", "--val-every", "1",
              "--device", "cpu", "--n-test", "1", "--n-val", "1"]
    out = tmp_path / "adapter"
    done = subprocess.run([*common, "--recipe", "faithful", "--loss", "l1", "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((out / "adapter.json").read_text())["training"]["config"]
    assert config["sampling"] == "hot" and config["select"] == "faithful"
    assert config["loss"] == "l1"  # a flag beside the recipe wins
    history = json.loads((out / "adapter.json").read_text())["metrics"]["val_history"]
    assert "region_abs_bias_pct" in history[0]  # unlabelled data: intensity-defined regions
    bad = subprocess.run([*common, "--hot-fraction", "2", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "share of patches" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "x").exists()
