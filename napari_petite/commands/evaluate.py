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
        description="Reconstruct the chosen subjects of --target (default: its held-out test "
        "subjects, the same split as finetune) and report metrics of low-count vs full-count "
        "and reconstruction vs full-count (and vs truth when present), in a head mask and on "
        "the whole volume.",
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


def run(args) -> int:
    from napari_petite.io.atomic import check_destination, write_text
    from napari_petite.io.dataset import discover
    from napari_petite.training.device import resolve_device
    from napari_petite.training.evaluation import evaluate_subjects
    from napari_petite.training.job import model_for_inference, split_subjects

    dataset = discover(args.data)
    scanner = dataset.scanner(args.target)
    ids = [s.id for s in scanner.subjects]
    if args.subjects == "test":
        chosen = split_subjects(ids, n_train=args.n_train, n_val=args.n_val,
                                n_test=args.n_test).test
    elif args.subjects == "all":
        chosen = ids
    else:
        chosen = [s.strip() for s in args.subjects.split(",") if s.strip()]
        for sid in chosen:
            scanner.subject(sid)  # unknown ids fail before any work
    out = Path(args.out).expanduser() if args.out else None
    if out is not None:
        for name in ("metrics.json", "metrics.csv"):
            check_destination(out / name, overwrite=args.overwrite)
    device = resolve_device(args.device)
    model, description = model_for_inference(args.base, args.adapter, backbone=args.backbone)
    model.to(device)
    result = evaluate_subjects(model, scanner, chosen, device=device)
    result.update(model=description, target=args.target, subjects_chosen=chosen)
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
