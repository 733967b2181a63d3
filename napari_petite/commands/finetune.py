"""``petite finetune``: adapt a base model to a target scanner with a Mix-PEFT spec.

Writes an adapter bundle (only the trained tensors + a JSON card with the spec, the base
checkpoint's sha256, the training config, the split, validation metrics and the seed).
"""

from __future__ import annotations

from pathlib import Path

from napari_petite.commands import _options as opt


def register(sub) -> None:
    parser = sub.add_parser(
        "finetune",
        help="fine-tune a base model on a target scanner (Mix-PEFT)",
        description="Fine-tune a base model on the training subjects of a target scanner with "
        "a PEFT method per part (default: the paper's PETITE choice), pick the best step on "
        "the validation subjects, and write an adapter bundle to --out.",
    )
    opt.add_data(parser)
    opt.add_model(parser)
    opt.add_spec(parser)
    opt.add_training(parser, recipe="faithful")
    opt.add_output(parser, what="adapter bundle folder to write")
    parser.set_defaults(func=run)


def resume_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".resume")


def run(args) -> int:
    from napari_petite.training.distributed import launched_session

    with launched_session(args.device):  # a no-op unless started by torchrun
        return _run(args)


def _run(args) -> int:

    out = Path(args.out).expanduser()
    with opt.reserve_outputs(args, out, resume_dir(out), kind="folder"):
        return _train_and_save(args, out)


def _train_and_save(args, out: Path) -> int:
    from napari_petite.peft.apply import trainable_state
    from napari_petite.peft.bundle import save_adapter
    from napari_petite.training import distributed as dist
    from napari_petite.training.job import JobRequest, build_run, resolve_base, split_subjects

    scanner = opt.dataset_scanner(args, args.target)
    split = split_subjects([s.id for s in scanner.subjects], n_train=args.n_train,
                           n_val=args.n_val, n_test=args.n_test)
    base, card = resolve_base(args.base, args.backbone)
    spec = opt.spec_from_args(args, card["backbone"], card["preset"])
    config = opt.train_config(args, str(resume_dir(out)) if args.checkpoint_every else None)
    run = build_run(JobRequest(scanner, split, config, spec=spec, base=base,
                               resume=args.resume, source=args.source))
    with opt.stop_on_sigterm() as control:
        result = opt.run_with_progress(run.trainer, control=control,
                                       quiet=args.json or not dist.is_main(),
                                       desc=f"{spec.label} on {args.target}")
    training = run.record(result)
    if dist.is_initialized():  # every rank's final tensors, so the card proves they agree
        training["distributed"] = dist.rank_digests(trainable_state(run.model))
    dist.barrier()
    if not dist.is_main():
        return 0
    bundle = save_adapter(run.model, spec, out, base_sha256=run.base_sha256, training=training,
                          metrics=run.metrics(result), seed=args.seed,
                          overwrite=args.overwrite, inputs=opt.command_inputs(args))
    report, best = run.report, result.best_val
    summary = {
        "adapter": str(bundle), "spec": spec.to_dict(), "label": spec.label,
        "trainable": report.n_trainable, "total": report.n_total, "percent": report.percent,
        "steps": result.steps_done, "seconds": round(result.seconds, 2), "device": result.device,
        "final_loss": training["final_loss"], "val_best": best, "split": split.to_dict(),
    }
    val_text = f"; best validation PSNR {best['psnr']:.2f} dB at step {best['step']}" \
        if best else ""
    opt.emit(args, summary, f"{spec.label}: {report.summary()}; {result.steps_done} steps in "
             f"{result.seconds:.0f} s on {result.device}{val_text}.\nadapter written to {bundle}")
    return 0
