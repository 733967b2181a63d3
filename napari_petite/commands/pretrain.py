"""``petite pretrain``: train every weight of a backbone from scratch on one source scanner.

This is the first step of the paper's protocol (pre-train on a source scanner, then adapt to a
target with PEFT). The result is a base checkpoint (``.safetensors`` + JSON card) that
``finetune``, ``predict`` and the napari docks load. The card records what a reader needs to
trust and repeat it: the data (simulator version, seed, dose-reduction factor), the source
scanner and split, the training config, steps, time and device, the metrics on the source's
held-out test subjects, and the exact command line.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from napari_petite.commands import _options as opt
from napari_petite.errors import ConfigError, OutputError


def register(sub) -> None:
    parser = sub.add_parser(
        "pretrain",
        help="train a base model from scratch on one source scanner",
        description="Train all weights of a backbone (the CVT-GAN discriminator included) on "
        "the training subjects of a source scanner, keep the step with the best validation "
        "PSNR, measure it on the source's held-out test subjects and write a base checkpoint "
        "(.safetensors + .json card) to --out.",
    )
    opt.add_data(parser, trains_on="source")
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", required=True, choices=["unetr", "cvtgan"])
    group.add_argument("--preset", default="small", metavar="P",
                       help="size preset of the backbone: small (default) or paper")
    group.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                       help="model config value over the preset, VALUE in JSON, e.g. "
                       "hidden_size=192 or patch_size=[32,32,32] (repeatable)")
    opt.add_training(parser, steps=600)
    opt.add_output(parser, what="checkpoint file to write (.safetensors; the card goes beside "
                   "it as .json)")
    parser.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["hidden_size=48", "patch_size=[32,32,32]"]`` -> model config overrides."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--override {item!r} must look like KEY=VALUE, e.g. "
                              "hidden_size=192.")
        out[key.strip()] = opt._parse_value(value)
    return out


def command_line(args, overrides: dict[str, Any]) -> str:
    """The full command that repeats this run: every option spelled out, defaults included."""
    import json

    parts = ["petite", "pretrain", "--data", str(args.data), "--source", args.source,
             "--backbone", args.backbone, "--preset", args.preset]
    for key, value in overrides.items():
        parts += ["--override", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    for flag, value in (("--n-train", args.n_train), ("--n-val", args.n_val),
                        ("--n-test", args.n_test)):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--steps", str(args.steps), "--batch", str(args.batch)]
    if args.lr is not None:
        parts += ["--lr", repr(args.lr)]
    parts += ["--val-every", str(args.val_every)]
    if args.gan_warmup:
        parts += ["--gan-warmup", str(args.gan_warmup)]
    if args.checkpoint_every:
        parts += ["--checkpoint-every", str(args.checkpoint_every)]
    parts += opt.fidelity_argv(args)
    parts += ["--seed", str(args.seed),
              "--device", args.device]
    if args.bf16:
        parts.append("--bf16")
    parts += ["--out", str(args.out)]
    return shlex.join(parts)


def data_description(root: Path, scanner, split) -> dict[str, Any]:
    """Where the training data came from, as far as the dataset's own JSON files say."""
    profile = scanner.profile if isinstance(scanner.profile, dict) else {}
    metas = [scanner.subject(s).meta for s in split.train + split.val + split.test]
    keys = ("simulator", "simulator_version", "version", "seed", "drf", "dose_reduction",
            "size", "anatomy", "counts")
    subject_meta = {}
    for meta in metas:
        if isinstance(meta, dict):
            for key in keys:
                if key in meta and key not in subject_meta:
                    subject_meta[key] = meta[key]
    out = {"root": str(root), "scanner": scanner.id, "scanner_profile": profile,
           "subject_meta": subject_meta}
    summary = Path(root) / "dataset.json"  # written by `petite make-sample-data`
    if summary.is_file():
        from napari_petite.errors import PetiteError
        from napari_petite.io.jsonfile import read_json

        try:
            out["dataset"] = read_json(summary)
        except PetiteError:
            out["dataset"] = None
    return out


def run(args) -> int:
    from napari_petite.models.checkpoint import SUFFIX, card_path
    from napari_petite.models.registry import check_overrides

    out = Path(args.out).expanduser()
    if out.suffix != SUFFIX:
        raise OutputError(f"--out must name a {SUFFIX} file (the card is written beside it as "
                          f".json), not {out.name!r}.")
    overrides = parse_overrides(args.override)
    check_overrides(args.backbone, args.preset, overrides)
    with opt.reserve_outputs(args, out, out.with_name(out.name + ".resume"), kind="file",
                             card=card_path(out)):
        return _pretrain(args, out, overrides)


def _pretrain(args, out: Path, overrides: dict[str, Any]) -> int:
    from napari_petite.models.checkpoint import card_path, save_checkpoint
    from napari_petite.training.evaluation import evaluate_subjects
    from napari_petite.training.job import JobRequest, Scratch, build_run, split_subjects

    scanner = opt.dataset_scanner(args, args.source)
    split = split_subjects([s.id for s in scanner.subjects], n_train=args.n_train,
                           n_val=args.n_val, n_test=args.n_test)
    config = opt.train_config(args, str(out.with_name(out.name + ".resume"))
                              if args.checkpoint_every else None)
    run = build_run(JobRequest(scanner, split, config,
                               scratch=Scratch(args.backbone, args.preset, overrides),
                               resume=args.resume, source=args.source))
    with opt.stop_on_sigterm() as control:
        result = opt.run_with_progress(run.trainer, control=control, quiet=args.json,
                                       desc=f"pretrain {args.backbone}-{args.preset} on "
                                       f"{args.source}")
    model, report, trainer = run.model, run.report, run.trainer

    evaluation = evaluate_subjects(model, scanner, split.test, device=trainer.device)
    mean = evaluation["mean"]
    # full/full adds no modules: the state dict is the plain backbone's; drop the PEFT record
    # so the saved model is an ordinary base model
    model.__dict__.pop("peft_state", None)
    model = model.to("cpu").eval()
    for p in model.parameters():
        p.requires_grad_(True)
    extra = {
        "kind": "base model (pre-trained from scratch, all weights)",
        "source": args.source,
        "data": data_description(scanner.path.parent, scanner, split),
        "split": split.to_dict(),
        "overrides": overrides,
        "training": {**run.record(result), **run.metrics(result)},
        "metrics": {
            "on": f"{args.source} test subjects {split.test} (held out from training and "
                  "checkpoint selection)",
            "low_vs_full": mean.get("low"), "model_vs_full": mean.get("recon"),
            "low_vs_truth": mean.get("low_vs_truth"),
            "model_vs_truth": mean.get("recon_vs_truth"),
            "per_subject": evaluation["subjects"],
        },
        "command": command_line(args, overrides),
    }
    path = save_checkpoint(model, out, extra=extra, overwrite=args.overwrite,
                           inputs=opt.command_inputs(args))

    low, rec = mean.get("low", {}), mean.get("recon", {})
    summary = {
        "checkpoint": str(path), "card": str(card_path(path)), "backbone": args.backbone,
        "preset": args.preset, "source": args.source, "split": split.to_dict(),
        "steps": result.steps_done, "stopped": result.stopped,
        "seconds": round(result.seconds, 1), "device": result.device,
        "params": report.n_trainable, "val_best": result.best_val,
        "test_low_vs_full": low, "test_model_vs_full": rec,
    }
    early = " (stopped early on request)" if result.stopped else ""
    text = (f"{args.backbone}-{args.preset} pre-trained on {args.source}: {result.steps_done} "
            f"steps{early} in {result.seconds:.0f} s on {result.device}.\n"
            f"test subjects {', '.join(split.test)} (head mask): low vs full PSNR "
            f"{low.get('psnr_mask', float('nan')):.2f} dB / SSIM "
            f"{low.get('ssim_mask', float('nan')):.3f}; model vs full PSNR "
            f"{rec.get('psnr_mask', float('nan')):.2f} dB / SSIM "
            f"{rec.get('ssim_mask', float('nan')):.3f}.\ncheckpoint written to {path}")
    opt.emit(args, summary, text)
    return 0
