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
import os
import resource
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_petite.commands import _options as opt
from napari_petite.errors import ConfigError, OutputError

#: single-method baselines, in the paper's order, with the paper's row names
SINGLE = {"layernorm": "LayerNorm", "bitfit": "BitFit", "lora": "LoRA", "adapter": "Adapters",
          "ssf": "SSF", "vpt": "VPT", "ia3": "IA3"}
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
    parser.add_argument("--save-adapters", action="store_true",
                        help="also write each row's adapter bundle under OUT/adapters/KEY")
    opt.add_output(parser, what="sweep folder (leaderboard files, rows/, adapters/)")
    parser.set_defaults(func=run)


@dataclass
class RowPlan:
    """One leaderboard row to produce: what to train (``spec``; None = the base as is)."""

    key: str
    label: str
    kind: str  # baseline | single | mix
    spec: Any = None
    note: str = ""
    skipped: str = ""


def plan_rows(model) -> list[RowPlan]:
    """Every row of the sweep on ``model``'s backbone, feasibility decided by the spec API."""
    from napari_petite.peft.spec import PETITE, MixPEFTSpec, feasible_combinations, why_not

    name, preset = model.name, model.preset
    rows = [RowPlan("no-ft", "No-FT", "baseline", None),
            RowPlan("full-ft", "Full-FT", "baseline",
                    MixPEFTSpec(name, preset, "full", "full", False))]
    for method, label in SINGLE.items():
        reasons = {part: why_not(model, part, method) for part in ("encoder", "decoder")}
        fits = [part for part, reason in reasons.items() if reason is None]
        if not fits:
            rows.append(RowPlan(method, label, "single", skipped="; ".join(
                f"{part}: {reason}" for part, reason in reasons.items())))
            continue
        parts = {part: (method if part in fits else "none") for part in reasons}
        note = "; ".join(f"{part} left frozen ({reason})" for part, reason in reasons.items()
                         if reason is not None)
        rows.append(RowPlan(method, label, "single",
                            MixPEFTSpec(name, preset, parts["encoder"], parts["decoder"], False),
                            note=note))
    petite = PETITE.get(name)
    for spec in feasible_combinations(model):
        tag = " (PETITE)" if (spec.encoder, spec.decoder) == petite else ""
        rows.append(RowPlan(f"mix-{spec.encoder}-{spec.decoder}", f"Mix: {spec.label}{tag}",
                            "mix", spec))
    return rows


def select(rows: list[RowPlan], only: str | None) -> list[RowPlan]:
    if not only:
        return rows
    wanted = [k.strip() for k in only.split(",") if k.strip()]
    known = {r.key for r in rows}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ConfigError(f"--only names unknown row(s) {', '.join(unknown)}; this backbone's "
                          f"rows are {', '.join(r.key for r in rows)}.")
    return [r for r in rows if r.key in wanted]


class PeakMemory:
    """Peak memory of one row: CUDA allocator peak, or sampled resident memory on the CPU.

    ``ru_maxrss`` only ever grows over a process's life, so a later row that needs less than an
    earlier one would read 0; sampling the current RSS (``/proc/self/statm``) every 20 ms gives
    each row its own peak above its starting level. Without ``/proc`` the ``ru_maxrss`` growth
    is reported and labelled as such.
    """

    def __init__(self, device) -> None:
        self.device = device
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.kind = ""
        self._start = self._peak = 0

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, self._rss() or 0)

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
        elif self._rss() is not None:
            self.kind = "cpu_rss_peak_growth"
            self._start = self._peak = self._rss() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.kind = "cpu_maxrss_growth"
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._peak = max(self._peak, self._rss() or 0)

    @property
    def mb(self) -> float:
        import torch

        if self.kind == "cuda_max_allocated":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.kind == "cpu_maxrss_growth":
            now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return (now - self._start) / 2**20
        return (self._peak - self._start) / 2**20


@dataclass
class Job:
    """What every row shares: data, split, pairs, base, config, output folder."""

    args: Any
    scanner: Any
    split: Any
    base_sha: str
    train_pairs: list
    val_pairs: list
    config: Any
    out: Path
    meta: dict


def fingerprint(plan: RowPlan, job: Job) -> dict:
    """What makes a finished row reusable: same spec, budget, seed, base, target and split."""
    c = job.config
    return {"spec": plan.spec.to_dict() if plan.spec else None, "steps": c.steps,
            "seed": c.seed, "batch": c.batch_size, "lr": c.lr, "val_every": c.val_every,
            "bf16": c.bf16, "base_sha256": job.base_sha, "target": job.args.target,
            "split": job.split.to_dict()}


def _abs_bias(mean: dict) -> float | None:
    regions = mean.get("regional_bias_pct") or {}
    values = [abs(v) for v in regions.values() if v == v]
    return sum(values) / len(values) if values else None


def run_row(plan: RowPlan, job: Job, *, index: str, quiet: bool) -> dict:
    """Train (unless No-FT) and test one row; return its leaderboard row."""
    import torch

    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.bundle import save_adapter
    from napari_petite.peft.spec import MixPEFTSpec
    from napari_petite.training.device import resolve_device
    from napari_petite.training.distributed import rank
    from napari_petite.training.engine import Trainer
    from napari_petite.training.evaluation import evaluate_subjects
    from napari_petite.training.job import load_base

    args = job.args
    model, _, _ = load_base(args.base, args.backbone)
    device = resolve_device(job.config.device)
    spec = plan.spec or MixPEFTSpec(model.name, model.preset, "none", "none", False)
    torch.manual_seed(job.config.seed)
    report = apply_spec(model, spec)
    seconds, val_best, steps = 0.0, None, 0
    with PeakMemory(device) as memory:
        if plan.spec is not None:
            trainer = Trainer(model, job.train_pairs, job.val_pairs, job.config, spec)
            result = opt.run_with_progress(trainer, quiet=quiet, desc=f"{index} {plan.label}")
            seconds, val_best, steps = result.seconds, result.best_val, result.steps_done
        model.to(device)
        evaluation = evaluate_subjects(model, job.scanner, job.split.test, device=device)
    mean = evaluation["mean"]
    recon = mean.get("recon", {})
    row = {
        "key": plan.key, "label": plan.label, "kind": plan.kind,
        "encoder": spec.encoder, "decoder": spec.decoder, "bitfit": spec.bitfit,
        "trainable": report.n_trainable, "total": report.n_total, "percent": report.percent,
        "psnr": recon.get("psnr_mask"), "ssim": recon.get("ssim_mask"),
        "nrmse": recon.get("nrmse_mask"), "abs_bias_pct": _abs_bias(recon),
        "train_s": round(seconds, 2), "steps_done": steps, "peak_mem_mb": round(memory.mb, 1),
        "mem_kind": memory.kind, "rank_ran_on": rank(), "device": str(device),
        "note": plan.note, "skipped": "", "val_best": val_best, "test_mean": mean,
        "fingerprint": fingerprint(plan, job),
    }
    if args.save_adapters and plan.spec is not None:
        save_adapter(model, spec, job.out / "adapters" / plan.key, base_sha256=job.base_sha,
                     training={"config": job.config.to_dict(), "target": args.target,
                               "split": job.split.to_dict(), "sweep_row": plan.key,
                               "seconds": seconds},
                     metrics={"val_best": val_best, "test_mean": mean}, seed=job.config.seed,
                     overwrite=True)
    return row


def _skipped_row(plan: RowPlan, job: Job) -> dict:
    return {"key": plan.key, "label": plan.label, "kind": plan.kind, "note": plan.note,
            "skipped": plan.skipped, "fingerprint": fingerprint(plan, job)}


def _done_rows(out: Path) -> dict[str, dict]:
    """Rows finished by earlier runs: the leaderboard's, updated by any row files."""
    from napari_petite.training.leaderboard import read_rows

    done = {r["key"]: r for r in read_rows(out)}
    for path in sorted((out / "rows").glob("*.json")) if (out / "rows").is_dir() else []:
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(row, dict) and "key" in row:
            done[row["key"]] = row
    return done


def run(args) -> int:
    from napari_petite.training.distributed import launched_session

    with launched_session(args.device, timeout_s=RANK_TIMEOUT_S):
        return _run(args)


def _run(args) -> int:
    from napari_petite.io.atomic import write_text
    from napari_petite.io.dataset import discover
    from napari_petite.training import distributed as dist
    from napari_petite.training.job import load_base, load_pairs, split_subjects
    from napari_petite.training.leaderboard import ranked, write_leaderboard

    if args.resume or args.checkpoint_every:
        raise ConfigError("sweep resumes row by row on its own (re-run the same command); "
                          "--resume and --checkpoint-every belong to finetune.")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose a folder for --out.")
    dataset = discover(args.data)
    scanner = dataset.scanner(args.target)
    split = split_subjects([s.id for s in scanner.subjects], n_train=args.n_train,
                           n_val=args.n_val, n_test=args.n_test)
    if not split.test:
        raise ConfigError("The sweep scores rows on held-out test subjects; --n-test must be at "
                          "least 1.")
    base_model, base_card, base_sha = load_base(args.base, args.backbone)
    plans = select(plan_rows(base_model), args.only)
    config = opt.train_config(args)
    config.ddp = False  # rows are spread over ranks; each row trains in one process
    window = tuple(base_model.patch_size)
    meta = {"backbone": base_model.name, "preset": base_model.preset,
            "source": args.source or base_card.get("source"), "target": args.target,
            "data": str(dataset.root), "base": str(args.base or "shipped"),
            "base_sha256": base_sha, "steps": config.steps, "seed": config.seed,
            "batch": config.batch_size, "device": config.device, "split": split.to_dict(),
            "world_size": dist.world_size()}
    del base_model
    job = Job(args, scanner, split, base_sha, load_pairs(scanner, split.train, window),
              load_pairs(scanner, split.val, window), config, out, meta)

    done = {} if args.overwrite else _done_rows(out)
    rows: dict[str, dict] = {}
    todo: list[RowPlan] = []
    for plan in plans:
        prior = done.get(plan.key)
        if prior is not None and prior.get("fingerprint") == fingerprint(plan, job):
            rows[plan.key] = prior
        elif plan.skipped:
            rows[plan.key] = _skipped_row(plan, job)
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
        row = run_row(plan, job, index=f"[{i + 1}/{len(todo)}]", quiet=args.json)
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
