"""``petite sweep``: the paper's table on one source -> target pair.

Runs No-FT (the base as is), Full-FT, every single method on both parts, and every feasible
Mix-PEFT combination (always with BitFit), each from the same base with the same step budget
and seed, picks each row's best step on the validation subjects and scores it on the target's
held-out test subjects. Each finished row is saved at once (``OUT/rows/<key>.json``), so an
interrupted multi-hour sweep continues where it stopped; the leaderboard (markdown, CSV, JSON)
is rewritten atomically. Under ``torchrun`` the rows are dealt out over the ranks (row i on
rank i % world, each trained in a single process) and rank 0 writes the leaderboard.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from napari_petite.commands import _options as opt
from napari_petite.errors import ConfigError

#: collectives wait this long for slower ranks (rows on different ranks end hours apart)
RANK_TIMEOUT_S = 72 * 3600.0


def register(sub) -> None:
    parser = sub.add_parser(
        "sweep",
        help="No-FT, Full-FT, single methods and every Mix-PEFT on one pair -> leaderboard",
        description="Fine-tune the same base with every method (No-FT, Full-FT, each single "
        "method, every feasible Mix-PEFT + BitFit) on --target with one step budget and seed, "
        "score each on the held-out test subjects and write leaderboard.md/.csv/.json into "
        "--out. Re-running with the same settings skips the rows already done (--overwrite "
        "starts again). Under torchrun the rows are spread over the ranks.",
    )
    opt.add_data(parser)
    opt.add_model(parser)
    opt.add_training(parser)
    parser.add_argument("--only", metavar="KEYS", default=None,
                        help="comma-separated row keys to run, e.g. no-ft,full-ft,mix-lora-ssf "
                        "(keys: no-ft, full-ft, layernorm, bitfit, lora, adapter, ssf, vpt, "
                        "ia3, mix-ENC-DEC)")
    opt.add_params(parser)
    parser.add_argument("--save-adapters", action="store_true",
                        help="also write each row's adapter bundle under OUT/adapters/KEY")
    opt.add_output(parser, what="sweep folder (leaderboard files, rows/, adapters/)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_petite.training.distributed import launched_session

    if args.resume or args.checkpoint_every:
        raise ConfigError("sweep resumes row by row on its own (re-run the same command); "
                          "--resume and --checkpoint-every belong to finetune.")
    with launched_session(args.device, timeout_s=RANK_TIMEOUT_S), \
            opt.reserve_outputs(args, Path(args.out).expanduser(), kind="workdir"):
        return _run(args)


def _run(args) -> int:
    from napari_petite.io.atomic import mark_output, write_text
    from napari_petite.training import distributed as dist
    from napari_petite.training.job import load_base, resolve_base, split_subjects
    from napari_petite.training.leaderboard import ranked, write_leaderboard
    from napari_petite.training.sweep import (
        SweepSetup,
        done_rows,
        fingerprint,
        plan_rows,
        run_row,
        select,
        skipped_row,
    )

    out = Path(args.out).expanduser()
    scanner = opt.dataset_scanner(args, args.target)
    split = split_subjects([s.id for s in scanner.subjects], n_train=args.n_train,
                           n_val=args.n_val, n_test=args.n_test)
    if not split.test:
        raise ConfigError("The sweep scores rows on held-out test subjects; --n-test must be at "
                          "least 1.")
    base, _ = resolve_base(args.base, args.backbone)
    base_model, base_card, base_sha = load_base(base)
    plans = select(plan_rows(base_model, opt.parse_params(args.param)), args.only)
    config = opt.train_config(args)
    config.ddp = False  # rows are spread over ranks; each row trains in one process
    source = args.source or base_card.get("source")
    meta = {"backbone": base_model.name, "preset": base_model.preset,
            "source": source, "target": args.target,
            "data": str(scanner.path.parent), "base": str(args.base or "shipped"),
            "base_sha256": base_sha, "steps": config.steps, "seed": config.seed,
            "batch": config.batch_size, "device": config.device, "split": split.to_dict(),
            "params": opt.parse_params(args.param), "world_size": dist.world_size()}
    del base_model
    setup = SweepSetup(scanner, split, base, base_sha, config, out, meta, source,
                       args.save_adapters)

    done = {} if args.overwrite else done_rows(out)
    rows: dict[str, dict] = {}
    todo = []
    for plan in plans:
        prior = done.get(plan.key)
        if prior is not None and prior.get("fingerprint") == fingerprint(plan, setup):
            rows[plan.key] = prior
        elif plan.skipped:
            rows[plan.key] = skipped_row(plan, setup)
        else:
            todo.append(plan)
    reused = sorted(k for k in rows if not rows[k].get("skipped"))
    quiet = args.json or not dist.is_main()
    if not quiet and reused:
        print(f"reusing {len(reused)} finished row(s): {', '.join(reused)}", file=sys.stderr)

    mine: list[dict] = []
    world, me = dist.world_size(), dist.rank()
    for i, plan in enumerate(todo):
        if i % world != me:
            continue
        index = f"[{i + 1}/{len(todo)}]"
        row = run_row(plan, setup, drive=lambda run, label=f"{index} {plan.label}":
                      opt.run_with_progress(run.trainer, quiet=args.json, desc=label))
        write_text(out / "rows" / f"{plan.key}.json", json.dumps(row, indent=2, default=str)
                   + "\n", overwrite=True)
        mine.append(row)
        if world == 1:  # keep the table current; under torchrun rank 0 writes at the end
            rows[plan.key] = row
            write_leaderboard(out, [rows[p.key] for p in plans if p.key in rows], meta)
    run_keys = []
    for batch in dist.all_gather_object(mine):
        for row in batch:
            rows[row["key"]] = row
            run_keys.append(row["key"])
    table = [rows[p.key] for p in plans if p.key in rows]
    ran = [r for r in table if not r.get("skipped")]
    if ran:
        low = ran[0].get("test_mean", {}).get("low", {})
        meta["low_vs_full"] = {"psnr": low.get("psnr_mask"), "ssim": low.get("ssim_mask"),
                               "nrmse": low.get("nrmse_mask")}
    if not dist.is_main():
        return 0
    paths = write_leaderboard(out, table, meta)
    mark_output(out, "sweep")
    summary = {"leaderboard": [str(p) for p in paths], "rows_run": run_keys,
               "rows_reused": reused, "meta": meta,
               "rows": [{k: r.get(k) for k in ("rank", "key", "label", "psnr", "ssim", "nrmse",
                                               "percent", "train_s", "peak_mem_mb", "skipped")}
                        for r in ranked(table)]}
    lines = [f"{len(ran)} row(s) on {args.target}, best head-mask PSNR first:"]
    for r in ranked(table):
        if r.get("skipped"):
            lines.append(f"   -  {r['label']}: not run ({r['skipped']})")
        else:
            lines.append(f"  {r['rank']:>2}. {r['label']:<48} PSNR {r['psnr']:.2f} dB  "
                         f"SSIM {r['ssim']:.3f}  NRMSE {r['nrmse']:.4f}  "
                         f"{r['percent']:.3f} % params  {r['train_s']:.0f} s")
    lines.append(f"leaderboard written to {out / 'leaderboard.md'}")
    opt.emit(args, summary, "\n".join(lines))
    return 0
