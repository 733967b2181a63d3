"""Options shared by the ``petite`` sub-commands, defined once so they are named alike.

``--data --source --target --backbone --base --encoder --decoder --bitfit/--no-bitfit --steps
--seed --device --out --json`` mean the same thing in every sub-command that takes them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from typing import Any

from napari_petite.errors import ConfigError

#: the seeds every random generator of the tool accepts (numpy, torch, Python)
MAX_SEED = 2**32 - 1


# -- option types: every value is checked when the command line is parsed --------------------
def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """A whole number >= 1 (steps, batch, workers)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (intervals where 0 means "never", subject counts)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, not {text}")
    return value


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1."""
    value = _whole(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}, not "
                                         f"{text}")
    return value


def _finite(text: str, *, zero: bool, why: str = "") -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = "of at least 0" if zero else "above 0"
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, not {text}{why}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weights, shares, tolerances)."""
    return _finite(text, zero=True)


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rates, their scale)."""
    return _finite(text, zero=False, why=" (a negative learning rate would train the model "
                   "away from the target)")


def add_data(parser, *, trains_on: str = "target") -> None:
    """Dataset options; ``trains_on`` names the scanner whose subjects are split and used
    (``target`` when adapting or evaluating, ``source`` when pre-training)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=True, metavar="DIR",
                       help="dataset folder (<root>/<scanner>/<subject>/{low,full}.nii.gz)")
    if trains_on == "source":
        group.add_argument("--source", required=True, metavar="ID",
                           help="scanner to train on (its subjects are split train/val/test)")
    else:
        group.add_argument("--source", metavar="ID",
                           help="scanner the base model was trained on (for the record)")
        group.add_argument("--target", required=True, metavar="ID",
                           help="scanner to adapt to / evaluate on")
    group.add_argument("--n-train", type=positive_int, default=None, metavar="N",
                       help="training subjects (default: all but validation and test)")
    group.add_argument("--n-val", type=non_negative_int, default=None, metavar="N",
                       help="validation subjects, used to pick the best step (default 1)")
    group.add_argument("--n-test", type=non_negative_int, default=None, metavar="N",
                       help="held-out test subjects (default: a third, at least one)")
    group.add_argument("--strict", action="store_true",
                       help="refuse the whole dataset when any subject is incomplete or "
                       "unreadable (default: list those subjects and use the others)")


def dataset_scanner(args, scanner_id: str):
    """The scanner ``scanner_id`` of ``--data``, its subjects with problems left out and
    listed as a warning (``--strict``: refused instead)."""
    import warnings

    from napari_petite.errors import PetiteWarning
    from napari_petite.io.dataset import discover

    dataset = discover(args.data, strict=getattr(args, "strict", False))
    scanner = dataset.scanner(scanner_id)
    left_out = dataset.problems_of(scanner_id)
    if left_out:
        listed = "\n".join(f"  - {p}" for p in left_out[:20])
        more = f"\n  ... and {len(left_out) - 20} more" if len(left_out) > 20 else ""
        warnings.warn(f"{len(left_out)} problem(s) in {dataset.root}; the subjects concerned "
                      f"are left out (--strict refuses the dataset instead):\n{listed}{more}",
                      PetiteWarning, stacklevel=2)
    return scanner


def command_inputs(args) -> list:
    """Every input of a command, as paths: what no output may be, hold or lie inside."""
    from pathlib import Path

    from napari_petite.io.nifti import input_paths
    from napari_petite.models.checkpoint import card_path

    given = list(getattr(args, "inputs", None) or [])
    if getattr(args, "input", None):
        given.append(args.input)
    paths = input_paths([Path(p).expanduser() for p in given])
    for name in ("data", "adapter", "resume"):
        if getattr(args, name, None):
            paths.append(Path(getattr(args, name)).expanduser())
    if getattr(args, "base", None):
        base = Path(args.base).expanduser()
        paths += [base, card_path(base)]
    return paths


@contextlib.contextmanager
def reserve_outputs(args, out, resume=None, *, kind: str = "folder", needed: int = 0,
                    card=None):
    """Check ``out`` against the command's inputs and claim it (and the ``.resume`` work
    folder when ``--checkpoint-every`` writes one, and a checkpoint's ``card``) for the
    length of the command; yields the reservation of ``out`` (None on ranks other than 0,
    which write nothing)."""
    from napari_petite.io.atomic import check_not_input, reserve
    from napari_petite.training import distributed as dist

    inputs = command_inputs(args)
    overwrite = getattr(args, "overwrite", False)
    with contextlib.ExitStack() as stack:
        if not dist.is_main():
            check_not_input(out, inputs)
            yield None
            return
        claim = stack.enter_context(reserve(out, inputs=inputs, overwrite=overwrite,
                                            kind=kind, needed=needed))
        if card is not None:
            stack.enter_context(reserve(card, inputs=inputs, overwrite=overwrite, kind="file"))
        if resume is not None and getattr(args, "checkpoint_every", 0):
            from napari_petite.io.atomic import real_path

            others = [p for p in inputs if real_path(p) != real_path(resume)]
            stack.enter_context(reserve(resume, inputs=others, kind="workdir",
                                        what="--out (its .resume folder)"))
        yield claim


def add_model(parser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", choices=["unetr", "cvtgan"], default=None,
                       help="backbone (default: the base checkpoint's)")
    group.add_argument("--base", metavar="FILE", default=None,
                       help="base checkpoint (.safetensors); default: the shipped base model")


def add_spec(parser) -> None:
    from napari_petite.peft.spec import METHODS

    group = parser.add_argument_group("Mix-PEFT")
    group.add_argument("--encoder", choices=METHODS, default=None,
                       help="encoder method (default: the paper's PETITE choice)")
    group.add_argument("--decoder", choices=METHODS, default=None,
                       help="decoder method (default: the paper's PETITE choice)")
    group.add_argument("--bitfit", action=argparse.BooleanOptionalAction, default=True,
                       help="also train every bias of encoder and decoder (default on)")
    add_params(group)


def add_training(parser, *, steps: int = 200, recipe: str = "paper") -> None:
    """Training options; ``recipe`` is the command's default fidelity recipe (finetune:
    faithful, docs/training.md; pretrain and sweep: the paper's, which they reproduce)."""
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=positive_int, default=steps, metavar="N")
    group.add_argument("--batch", type=positive_int, default=2, metavar="B")
    group.add_argument("--lr", type=positive_float, default=None,
                       help="learning rate for every tensor (default: per-method paper values)")
    group.add_argument("--lr-scale", type=positive_float, default=1.0, metavar="F",
                       help="multiply the per-method learning rates by F (default 1)")
    group.add_argument("--val-every", type=non_negative_int, default=50, metavar="N",
                       help="validate every N steps (0: never; default 50)")
    group.add_argument("--gan-warmup", type=non_negative_int, default=0, metavar="N",
                       help="CVT-GAN: train the first N steps with the pixel loss (MSE) alone "
                       "before the adversarial term and the discriminator join (needed from "
                       "scratch; default 0)")
    group.add_argument("--seed", type=seed, default=0, metavar="S",
                       help=f"random seed, 0 to {MAX_SEED} (default 0)")
    add_fidelity(parser, recipe)
    group.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps")
    group.add_argument("--bf16", action="store_true", help="bfloat16 autocast (opt-in)")
    group.add_argument("--checkpoint-every", type=non_negative_int, default=0, metavar="N",
                       help="write a resumable checkpoint every N steps (into OUT.resume/)")
    group.add_argument("--resume", metavar="DIR", default=None,
                       help="continue a run from its resume checkpoint folder")


#: the fidelity flags: TrainConfig field -> (flag, type or choices, help)
FIDELITY_FLAGS = {
    "sampling": ("--sampling", ("head", "hot"), "patch centres: head (the paper) or hot "
                 "(a share of patches on the full-count image's hottest structures)"),
    "hot_fraction": ("--hot-fraction", non_negative_float, "share of patches centred on hot "
                     "structures with --sampling hot (default 0.3)"),
    "lesion_augment": ("--lesion-augment", non_negative_float, "share of patches given "
                       "synthetic spheres, multiplied into input and target alike (default "
                       "0: off)"),
    "loss": ("--loss", ("auto", "mse", "l1", "poisson"), "voxel loss (default auto: MSE; "
             "CVT-GAN keeps adversarial + 100 L1)"),
    "lowfreq_weight": ("--lowfreq-weight", non_negative_float, "weight of the low-frequency "
                       "consistency term (the prediction's block means vs the reference's; "
                       "default 0: off)"),
    "lowfreq_reference": ("--lowfreq-reference", ("input", "target"), "what the prediction's "
                          "block means are held to: the input's (unbiased in expectation) or "
                          "the target's"),
    "lowfreq_block_mm": ("--lowfreq-block", positive_float, "the low-frequency term's block "
                         "size in mm (default 12)"),
    "select": ("--select", ("psnr", "faithful"), "checkpoint choice: best validation PSNR, or "
               "best PSNR among steps whose regional and lesion bias are no worse than the "
               "starting model's"),
    "select_tolerance_pct": ("--select-tolerance", non_negative_float, "--select faithful: "
                             "how much worse (percentage points) a step's bias may be "
                             "(default 1)"),
}


def add_fidelity(parser, recipe: str = "paper") -> None:
    """The quantitative-fidelity training options (docs/training.md) and ``--recipe``."""
    from napari_petite.training.engine import RECIPES

    group = parser.add_argument_group(f"quantitative fidelity (default: --recipe {recipe})")
    group.add_argument("--recipe", choices=sorted(RECIPES), default=recipe,
                       help="a named set of the options below: paper (exactly the paper's "
                       "training) or faithful (hot-spot sampling, lesion augmentation, the "
                       "low-frequency term against the input, faithful checkpoint choice); "
                       f"options given beside it win (default {recipe})")
    for dest, (flag, kind, text) in FIDELITY_FLAGS.items():
        if isinstance(kind, tuple):
            group.add_argument(flag, dest=dest, choices=kind, default=None, help=text)
        else:
            group.add_argument(flag, dest=dest, type=kind, default=None, metavar="X",
                               help=text)


def fidelity_options(args) -> dict[str, Any]:
    """TrainConfig's fidelity fields from ``--recipe`` and the fidelity flags (flags win)."""
    from napari_petite.training.engine import TrainConfig

    given = {d: getattr(args, d) for d in FIDELITY_FLAGS if getattr(args, d, None) is not None}
    return TrainConfig().with_recipe(args.recipe, **given).recipe_fields()


def fidelity_argv(args) -> list[str]:
    """The fidelity flags as given, to repeat a run's command line."""
    parts = ["--recipe", args.recipe] if getattr(args, "recipe", None) else []
    for dest, (flag, _, _) in FIDELITY_FLAGS.items():
        if getattr(args, dest, None) is not None:
            parts += [flag, str(getattr(args, dest))]
    return parts


def add_output(parser, *, required: bool = True, what: str = "output folder") -> None:
    parser.add_argument("--out", required=required, metavar="DIR", help=what)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (never the inputs)")
    parser.add_argument("--json", action="store_true",
                        help="print one machine-readable JSON object on stdout")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def spec_from_args(args, backbone: str, preset: str):
    """The Mix-PEFT spec the options describe (PETITE's choice where a part is not given)."""
    from napari_petite.peft.spec import PETITE, MixPEFTSpec

    default_enc, default_dec = PETITE.get(backbone, ("lora", "ssf"))
    return MixPEFTSpec(backbone, preset, args.encoder or default_enc,
                       args.decoder or default_dec, args.bitfit, parse_params(args.param))


def add_params(parser) -> None:
    parser.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="method hyper-parameter, e.g. lora.rank=8 (repeatable)")


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["lora.rank=8", "vpt.deep=true"]`` -> ``{"lora": {"rank": 8}, "vpt": {...}}``."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--param {item!r} must look like METHOD.KEY=VALUE, e.g. "
                              "lora.rank=8.")
        params.setdefault(method, {})[name] = _parse_value(value)
    return params


def train_config(args, out_resume: str | None = None):
    from napari_petite.training.distributed import rank_device
    from napari_petite.training.engine import TrainConfig

    if args.steps < 1:
        raise ConfigError("--steps must be at least 1.")
    if not args.lr_scale > 0:
        raise ConfigError(f"--lr-scale must be above 0, not {args.lr_scale}.")
    config = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr,
                         lr_scale=args.lr_scale,
                         val_every=args.val_every, gan_warmup_steps=args.gan_warmup,
                         seed=args.seed, device=rank_device(args.device),
                         bf16=args.bf16, checkpoint_every=args.checkpoint_every,
                         checkpoint_dir=out_resume, **fidelity_options(args))
    config.check()
    return config


@contextlib.contextmanager
def stop_on_sigterm():
    """A :class:`Control` that SIGTERM stops: the run ends after the current step instead of
    being killed (pass it to :func:`run_with_progress`).

    Batch schedulers send SIGTERM when a job's time is up: the best state reached so far is
    still evaluated and written, and the card records the real number of steps and
    ``stopped: true``. (Ctrl-C still aborts without writing anything.) Not under
    torch.distributed: ranks stopping at different steps would wait on each other forever.
    """
    import signal
    import threading

    from napari_petite.training import distributed as dist
    from napari_petite.training.engine import Control

    control = Control()
    if threading.current_thread() is not threading.main_thread() or dist.is_initialized():
        yield control
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: control.stop())
    try:
        yield control
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_with_progress(trainer, *, quiet: bool, desc: str, control=None):
    """Drive the engine (stopped through ``control``, if given) with a tqdm bar on stderr;
    return the TrainResult."""
    from tqdm import tqdm

    from napari_petite.training.engine import Control

    bar = tqdm(total=trainer.config.steps, initial=trainer.step, desc=desc, unit="step",
               disable=quiet, file=sys.stderr, dynamic_ncols=True)
    gen = trainer.run(control or Control())
    try:
        while True:
            event = next(gen)
            if event.kind == "step":
                bar.update(1)
                bar.set_postfix(loss=f"{event.loss:.4g}")
            elif event.kind == "val" and event.val and not quiet:
                bar.write(f"step {event.step}: validation PSNR {event.val['psnr']:.2f} dB, "
                          f"SSIM {event.val['ssim']:.3f}{quantification(event.val)}",
                          file=sys.stderr)
    except StopIteration as done:
        return done.value
    finally:
        bar.close()


def quantification(val: dict) -> str:
    """The validation's fidelity figures in words (empty when it has none)."""
    parts = [(k, label) for k, label in (("region_abs_bias_pct", "mean |regional bias|"),
                                         ("lesion_suvmean_bias_pct", "lesion SUVmean bias"))
             if val.get(k) == val.get(k) and val.get(k) is not None]
    return "".join(f", {label} {val[k]:+.1f} %" if k.startswith("lesion") else
                   f", {label} {val[k]:.1f} %" for k, label in parts)


def emit(args, payload: dict, text: str) -> None:
    """Print ``payload`` as JSON with --json, else the human sentence(s) ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)
