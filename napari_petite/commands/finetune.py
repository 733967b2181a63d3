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
    opt.add_training(parser)
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
    import torch

    from napari_petite.errors import OutputError
    from napari_petite.io.dataset import discover
    from napari_petite.peft.apply import apply_spec, trainable_state
    from napari_petite.peft.bundle import save_adapter
    from napari_petite.training import distributed as dist
    from napari_petite.training.engine import Trainer
    from napari_petite.training.job import load_base, load_pairs, split_subjects

    out = Path(args.out).expanduser()
    if out.exists() and not args.overwrite:
        raise OutputError(f"{out} already exists; choose another --out or add --overwrite.")
    dataset = discover(args.data)
    scanner = dataset.scanner(args.target)
    split = split_subjects([s.id for s in scanner.subjects], n_train=args.n_train,
                           n_val=args.n_val, n_test=args.n_test)
    model, base_card, base_sha = load_base(args.base, args.backbone)
    spec = opt.spec_from_args(args, model.name, model.preset)
    torch.manual_seed(args.seed)
    report = apply_spec(model, spec)
    config = opt.train_config(args, str(resume_dir(out)) if args.checkpoint_every else None)
    window = tuple(model.patch_size)
    trainer = Trainer(model, load_pairs(scanner, split.train, window),
                      load_pairs(scanner, split.val, window), config, spec)
    if args.resume:
        trainer.load_checkpoint(args.resume)
    with opt.stop_on_sigterm() as control:
        result = opt.run_with_progress(trainer, control=control,
                                       quiet=args.json or not dist.is_main(),
                                       desc=f"{spec.label} on {args.target}")
    training = {
        "config": config.to_dict(), "data": str(dataset.root), "source": args.source or
        base_card.get("source"), "target": args.target, "split": split.to_dict(),
        "steps_done": result.steps_done, "stopped": result.stopped, "seconds": result.seconds,
        "device": result.device, "losses": result.losses,
    }
    metrics = {"val_best": result.best_val, "val_history": result.val_history}
    if dist.is_initialized():  # every rank's final tensors, so the card proves they agree
        training["distributed"] = dist.rank_digests(trainable_state(model))
    dist.barrier()
    if not dist.is_main():
        return 0
    bundle = save_adapter(model, spec, out, base_sha256=base_sha, training=training,
                          metrics=metrics, seed=args.seed, overwrite=args.overwrite)
    best = result.best_val
    summary = {
        "adapter": str(bundle), "spec": spec.to_dict(), "label": spec.label,
        "trainable": report.n_trainable, "total": report.n_total, "percent": report.percent,
        "steps": result.steps_done, "seconds": round(result.seconds, 2), "device": result.device,
        "final_loss": result.losses[-1] if result.losses else None, "val_best": best,
        "split": split.to_dict(),
    }
    val_text = f"; best validation PSNR {best['psnr']:.2f} dB at step {best['step']}" \
        if best else ""
    opt.emit(args, summary, f"{spec.label}: {report.summary()}; {result.steps_done} steps in "
             f"{result.seconds:.0f} s on {result.device}{val_text}.\nadapter written to {bundle}")
    return 0
