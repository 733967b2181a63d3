"""The training engine on tiny real models and data: learning, stop, pause, resume, determinism."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_petite.errors import ConfigError
from napari_petite.models.registry import build_model, smoke_overrides
from napari_petite.peft.apply import apply_spec
from napari_petite.peft.spec import MixPEFTSpec
from napari_petite.training.engine import Control, TrainConfig, Trainer
from napari_petite.training.sampling import prepare_pair

WINDOW = (32, 32, 32)


def pairs(n=2, shape=(36, 40, 40), seed=0):
    """Low/full pairs: a smooth head with Poisson noise at two count levels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    out = []
    for i in range(n):
        truth = 1000.0 * ((z**2 + y**2 + x**2) < 0.7) * (1.5 + np.sin(4 * x + i) * 0.5)
        full = rng.poisson(truth * 0.2) / 0.2
        low = rng.poisson(truth * 0.02) / 0.02
        out.append(prepare_pair(f"s{i}", low.astype(np.float32), full.astype(np.float32),
                                WINDOW))
    return out


def tiny(spec_methods=("full", "full"), bitfit=False, seed=0):
    torch.manual_seed(seed)
    model = build_model("unetr", "small", **smoke_overrides("unetr"))
    spec = MixPEFTSpec("unetr", "small", *spec_methods, bitfit=bitfit)
    apply_spec(model, spec)
    return model


def trainer(steps=6, seed=0, model=None, val=(), **kw):
    cfg = TrainConfig(steps=steps, batch_size=2, seed=seed, device="cpu", val_every=0, **kw)
    return Trainer(model or tiny(seed=seed), pairs(), list(val), cfg)


def losses_of(events):
    return [e.loss for e in events if e.kind == "step"]


def test_loss_decreases():
    tr = trainer(steps=24, lr=3e-3, schedule="constant")
    losses = losses_of(list(tr.run()))
    assert len(losses) == 24
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6])


def test_same_seed_same_trace():
    a = losses_of(list(trainer(steps=3, seed=3).run()))
    b = losses_of(list(trainer(steps=3, seed=3).run()))
    c = losses_of(list(trainer(steps=3, seed=4).run()))
    assert a == b
    assert a != c


def test_stop_takes_effect_within_one_step():
    control = Control()
    events = []
    for event in trainer(steps=20).run(control):
        events.append(event)
        if event.kind == "step" and event.step == 3:
            control.stop()
    assert events[-1].kind == "stopped"
    assert max(e.step for e in events) == 3


def test_pause_and_resume_from_another_thread():
    control = Control()
    kinds = []
    gen = trainer(steps=4).run(control)
    for event in gen:
        kinds.append(event.kind)
        if event.kind == "step" and event.step == 1:
            control.pause()
            threading.Timer(0.3, control.resume).start()
    assert kinds.count("step") == 4
    assert "paused" in kinds and "resumed" in kinds
    assert kinds.index("paused") < kinds.index("resumed")


def test_resume_from_checkpoint_continues_the_trace(tmp_path):
    straight = losses_of(list(trainer(steps=6, seed=1).run()))
    first = trainer(steps=6, seed=1, checkpoint_every=3, checkpoint_dir=str(tmp_path / "ck"))
    control = Control()
    for event in first.run(control):
        if event.kind == "checkpoint":
            control.stop()
    resumed = trainer(steps=6, seed=1, model=tiny(seed=1))
    resumed.load_checkpoint(tmp_path / "ck")
    assert resumed.step == 3
    rest = losses_of(list(resumed.run()))
    assert resumed.losses[:3] == straight[:3]
    np.testing.assert_allclose(rest, straight[3:], rtol=1e-5)


def tiny_gan(spec_methods=("full", "full"), seed=0):
    torch.manual_seed(seed)
    model = build_model("cvtgan", "small", **smoke_overrides("cvtgan"))
    apply_spec(model, MixPEFTSpec("cvtgan", "small", *spec_methods, bitfit=False))
    return model


def gan_trainer(steps=6, seed=0, model=None, **kw):
    cfg = TrainConfig(steps=steps, batch_size=2, seed=seed, device="cpu", val_every=0,
                      patch_size=WINDOW, **kw)
    return Trainer(model or tiny_gan(seed=seed), pairs(), [], cfg)


@pytest.mark.parametrize("warmup", [0, 2])
def test_gan_resume_reproduces_the_straight_trace(tmp_path, warmup):
    """Full/full CVT-GAN trains its discriminator with its own optimizer: a resumed run must
    restore that optimizer's moments too (it diverged at step 5 when they were lost)."""
    straight_tr = gan_trainer(steps=6, seed=2, gan_warmup_steps=warmup)
    assert straight_tr.d_optimizer is not None
    straight = losses_of(list(straight_tr.run()))
    first = gan_trainer(steps=6, seed=2, gan_warmup_steps=warmup, checkpoint_every=3,
                        checkpoint_dir=str(tmp_path / "ck"))
    control = Control()
    for event in first.run(control):
        if event.kind == "checkpoint":
            control.stop()
    resumed = gan_trainer(steps=6, seed=2, gan_warmup_steps=warmup, model=tiny_gan(seed=2))
    resumed.load_checkpoint(tmp_path / "ck")
    assert resumed.step == 3 and resumed.d_optimizer.state  # moments restored
    rest = losses_of(list(resumed.run()))
    np.testing.assert_allclose(rest, straight[3:], rtol=1e-6)


def test_gan_warmup_trains_the_pixel_loss_alone_first():
    """During the warm-up the generator sees MSE only and the discriminator does not move;
    after it the pix2pix loss (adversarial + 100 L1, far larger) and the discriminator join."""
    tr = gan_trainer(steps=4, seed=0, gan_warmup_steps=2)
    d_before = {k: v.clone() for k, v in tr.model.discriminator.state_dict().items()}
    gen = tr.run()
    losses = []
    for event in gen:
        if event.kind == "step":
            losses.append(event.loss)
            if len(losses) == 2:
                for k, v in tr.model.discriminator.state_dict().items():
                    assert torch.equal(v, d_before[k]), k
    assert max(losses[:2]) < 0.2 < min(losses[2:])
    assert any(not torch.equal(v, d_before[k])
               for k, v in tr.model.discriminator.state_dict().items())


def test_validation_and_best_state_restored():
    val_pairs = pairs(1, seed=9)
    tr = trainer(steps=4, val=val_pairs, lr=1e-3)
    tr.config.val_every = 2
    events = list(tr.run())
    vals = [e.val for e in events if e.kind == "val"]
    # step 0 is the model before training (the base, when fine-tuning), then every 2 steps
    assert [v["step"] for v in vals] == [0, 2, 4] and all(np.isfinite(v["psnr"]) for v in vals)
    assert events[-1].kind == "done" and events[-1].val["psnr"] == max(v["psnr"] for v in vals)


def test_a_run_that_never_beats_its_start_keeps_the_start():
    """The step-0 validation is the model as given: a run whose steps only make it worse
    ends with exactly the weights it started from (a fine-tune never loses the base)."""
    from napari_petite.peft.apply import trainable_state

    model = tiny()
    before = {k: v.detach().clone() for k, v in trainable_state(model).items()}
    tr = trainer(steps=3, val=pairs(1, seed=9), lr=0.05, schedule="constant", model=model)
    tr.config.val_every = 1
    events = list(tr.run())
    vals = [e.val for e in events if e.kind == "val"]
    assert vals[0]["step"] == 0 and max(vals, key=lambda v: v["psnr"])["step"] == 0, vals
    assert events[-1].val["step"] == 0
    for name, value in trainable_state(model).items():
        assert torch.equal(value, before[name]), name


def test_resume_keeps_the_best_validated_state(tmp_path):
    """A run stopped and resumed must end on the best state of *all* its validations, not
    only of those after the resume (the result reports the best over the whole history)."""
    val_pairs = pairs(1, seed=9)
    first = trainer(steps=6, val=val_pairs, lr=1e-3, checkpoint_every=3,
                    checkpoint_dir=str(tmp_path / "ck"))
    first.config.val_every = 1
    control = Control()
    for event in first.run(control):
        if event.kind == "checkpoint":
            control.stop()
    assert first.best is not None
    resumed = trainer(steps=6, val=val_pairs, lr=1e-3, model=tiny())
    resumed.config.val_every = 1
    resumed.load_checkpoint(tmp_path / "ck")
    assert resumed.best is not None and resumed.best[0] == first.best[0]
    assert resumed.best[1].keys() == first.best[1].keys()
    for name, value in first.best[1].items():
        assert torch.equal(resumed.best[1][name], value)
    events = list(resumed.run())
    assert resumed.best[0] == max(v["psnr"] for v in resumed.val_history)
    assert events[-1].val["psnr"] == resumed.best[0]


def test_nothing_to_train_is_a_clear_error():
    with pytest.raises(ConfigError, match="Nothing to train"):
        trainer(model=tiny(("none", "none"), bitfit=False))


def test_peft_run_changes_only_trainable_tensors():
    model = tiny(("lora", "ssf"), bitfit=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    list(trainer(steps=2, model=model).run())
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= trainable
