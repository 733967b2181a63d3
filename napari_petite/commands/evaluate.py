"""``petite evaluate``: metrics of the base or adapted model on a scanner's subjects."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from napari_petite.commands import _options as opt


def register(sub) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="PSNR / SSIM / NRMSE / regional bias of a model on a scanner's subjects",
        description="Reconstruct the chosen subjects of --target (default: the held-out test "
        "subjects recorded in the adapter's card, or without an adapter the same split as "
        "finetune) and report metrics of low-count vs full-count and reconstruction vs "
        "full-count (and vs truth when present), in a head mask and on the whole volume. "
        "Subjects the adapter trained or validated on are marked as such.",
    )
    opt.add_data(parser)
    opt.add_model(parser)
    parser.add_argument("--adapter", metavar="DIR", default=None)
    parser.add_argument("--subjects", default="test",
                        help="test (default), all, or comma-separated subject ids")
    parser.add_argument("--device", default="auto")
    opt.add_output(parser, required=False, what="folder for metrics.json and metrics.csv")
    parser.set_defaults(func=run)


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["subject", "comparison", "psnr_mask", "ssim_mask", "nrmse_mask", "psnr",
                     "ssim", "nrmse"])
    for row in rows:
        for kind in ("low", "recon", "low_vs_truth", "recon_vs_truth"):
            if kind in row:
                m = row[kind]
                writer.writerow([row["subject"], kind] + [f"{m.get(k, float('nan')):.6g}" for k in
                                 ("psnr_mask", "ssim_mask", "nrmse_mask", "psnr", "ssim",
                                  "nrmse")])
    return buffer.getvalue()


def recorded_split(args) -> dict | None:
    """The split the adapter was trained with (its card), for the same target scanner."""
    from napari_petite.errors import ConfigError
    from napari_petite.peft.bundle import read_card

    if args.adapter is None:
        return None
    training = read_card(args.adapter).get("training") or {}
    split = training.get("split")
    if not isinstance(split, dict) or not all(
            isinstance(split.get(k), list) for k in ("train", "val", "test")):
        return None
    if training.get("target") not in (None, args.target):
        raise ConfigError(f"The adapter was trained on scanner {training['target']!r}, not "
                          f"{args.target!r}; its held-out subjects belong to that scanner. "
                          "Choose --subjects explicitly to evaluate it elsewhere.")
    return split


def choose_subjects(args, scanner) -> tuple[list[str], dict[str, str]]:
    """The subjects to score and, for each one the adapter saw, what it was used for."""
    import warnings

    from napari_petite.errors import DatasetError, PetiteWarning
    from napari_petite.training.job import split_subjects

    ids = [s.id for s in scanner.subjects]
    recorded = recorded_split(args)
    own_split = any(v is not None for v in (args.n_train, args.n_val, args.n_test))
    if args.subjects == "test" and recorded is not None and not own_split:
        chosen = [s for s in recorded["test"] if s in ids]
        if not chosen:
            raise DatasetError("The adapter held out no test subject of this dataset (it was "
                               "trained with --n-test 0, or its subjects are gone); choose "
                               "--subjects explicitly (they are marked if the adapter saw "
                               "them).")
    elif args.subjects == "test":
        chosen = split_subjects(ids, n_train=args.n_train, n_val=args.n_val,
                                n_test=args.n_test).test
    elif args.subjects == "all":
        chosen = ids
    else:
        chosen = [s.strip() for s in args.subjects.split(",") if s.strip()]
        for sid in chosen:
            scanner.subject(sid)  # unknown ids fail before any work
    seen = {}
    for use, what in (("train", "trained on"), ("val", "validated on")):
        for sid in (recorded or {}).get(use, []):
            if sid in chosen:
                seen[sid] = what
    if seen:
        listed = ", ".join(f"{sid} ({what})" for sid, what in sorted(seen.items()))
        warnings.warn(f"the adapter was {'trained or validated' if len(seen) > 1 else 'fit'} "
                      f"on {listed}: those scores are not held-out results.", PetiteWarning,
                      stacklevel=2)
    return chosen, seen


def run(args) -> int:
    import contextlib

    from napari_petite.io.atomic import reserve

    scanner = opt.dataset_scanner(args, args.target)
    chosen, seen = choose_subjects(args, scanner)
    out = Path(args.out).expanduser() if args.out else None
    with contextlib.ExitStack() as claims:
        if out is not None:
            for name in ("metrics.json", "metrics.csv"):
                claims.enter_context(reserve(out / name, inputs=opt.command_inputs(args),
                                             overwrite=args.overwrite, kind="file"))
        return _evaluate(args, scanner, chosen, seen, out)


def _evaluate(args, scanner, chosen, seen, out) -> int:
    from napari_petite.io.atomic import write_text
    from napari_petite.training.device import resolve_device
    from napari_petite.training.evaluation import evaluate_subjects
    from napari_petite.training.job import model_for_inference

    device = resolve_device(args.device)
    model, description = model_for_inference(args.base, args.adapter, backbone=args.backbone)
    model.to(device)
    result = evaluate_subjects(model, scanner, chosen, device=device)
    result.update(model=description, target=args.target, subjects_chosen=chosen,
                  seen_in_training=seen)
    if out is not None:
        write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n",
                   overwrite=args.overwrite)
        write_text(out / "metrics.csv", _csv(result["subjects"]), overwrite=args.overwrite)
    mean = result["mean"]
    lines = [f"{description} on {args.target} ({len(chosen)} subjects), head mask:"]
    for kind in ("low", "recon", "recon_vs_truth"):
        if kind in mean:
            m = mean[kind]
            lines.append(f"  {kind:<15} PSNR {m['psnr_mask']:.2f} dB  SSIM {m['ssim_mask']:.3f}"
                         f"  NRMSE {m['nrmse_mask']:.4f}")
    opt.emit(args, result, "\n".join(lines))
    return 0
