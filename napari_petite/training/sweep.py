"""The sweep behind the paper's tables: which rows to run, how one row runs, which finished
rows can be reused.

``petite sweep`` (one source -> target pair) and the benchmarks share this: the row plan is
decided from the spec API (never from backbone names), every trained row goes through the job
pipeline (:mod:`napari_petite.training.job`), and a finished row is reused only when its
fingerprint (spec, budget, seed, base, target, split) is the same.
"""

from __future__ import annotations

import os
import resource
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_petite.errors import ConfigError

#: single-method baselines, in the paper's order, with the paper's row names
SINGLE = {"layernorm": "LayerNorm", "bitfit": "BitFit", "lora": "LoRA", "adapter": "Adapters",
          "ssf": "SSF", "vpt": "VPT", "ia3": "IA3"}


@dataclass
class RowPlan:
    """One leaderboard row to produce: what to train (``spec``; None = the base as is)."""

    key: str
    label: str
    kind: str  # baseline | single | mix
    spec: Any = None
    note: str = ""
    skipped: str = ""


def plan_rows(model, params: dict | None = None) -> list[RowPlan]:
    """Every row of the sweep on ``model``'s backbone, feasibility decided by the spec API.

    ``params`` (``{"lora": {"rank": 2}}``) go to the rows that use those methods only, so a
    sweep that changes LoRA's rank reuses its finished rows without LoRA.
    """
    from napari_petite.peft.spec import PETITE, MixPEFTSpec, feasible_combinations, why_not

    name, preset = model.name, model.preset
    params = params or {}

    def spec(enc: str, dec: str, bitfit: bool) -> MixPEFTSpec:
        mine = {m: dict(v) for m, v in params.items() if m in (enc, dec)}
        return MixPEFTSpec(name, preset, enc, dec, bitfit, mine)

    rows = [RowPlan("no-ft", "No-FT", "baseline", None),
            RowPlan("full-ft", "Full-FT", "baseline", spec("full", "full", False))]
    for method, label in SINGLE.items():
        config = spec(method, method, False).method_config(method)
        reasons = {part: why_not(model, part, method, config) for part in ("encoder", "decoder")}
        fits = [part for part, reason in reasons.items() if reason is None]
        if not fits:
            rows.append(RowPlan(method, label, "single", skipped="; ".join(
                f"{part}: {reason}" for part, reason in reasons.items())))
            continue
        parts = {part: (method if part in fits else "none") for part in reasons}
        note = "; ".join(f"{part} left frozen ({reason})" for part, reason in reasons.items()
                         if reason is not None)
        rows.append(RowPlan(method, label, "single",
                            spec(parts["encoder"], parts["decoder"], False), note=note))
    petite = PETITE.get(name)
    for mix in feasible_combinations(model):
        tag = " (PETITE)" if (mix.encoder, mix.decoder) == petite else ""
        rows.append(RowPlan(f"mix-{mix.encoder}-{mix.decoder}", f"Mix: {mix.label}{tag}",
                            "mix", spec(mix.encoder, mix.decoder, True)))
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
class SweepSetup:
    """What every row of one sweep shares: target data and split, base, config, output."""

    scanner: Any
    split: Any
    base: Path
    base_sha: str
    config: Any
    out: Path
    meta: dict
    source: str | None = None
    save_adapters: bool = False


def fingerprint(plan: RowPlan, setup: SweepSetup) -> dict:
    """What makes a finished row reusable: same spec, budget, seed, base, target and split."""
    c = setup.config
    out = {"spec": plan.spec.to_dict() if plan.spec else None, "steps": c.steps,
           "seed": c.seed, "batch": c.batch_size, "lr": c.lr, "val_every": c.val_every,
           "bf16": c.bf16, "base_sha256": setup.base_sha, "target": setup.scanner.id,
           "split": setup.split.to_dict()}
    if c.gan_warmup_steps:  # only when used, so rows made before it existed stay reusable
        out["gan_warmup_steps"] = c.gan_warmup_steps
    if c.lr_scale != 1.0:  # likewise
        out["lr_scale"] = c.lr_scale
    out.update(c.fidelity_options())  # likewise: only the fidelity options in use
    return out


def _abs_bias(mean: dict) -> float | None:
    regions = mean.get("regional_bias_pct") or {}
    values = [abs(v) for v in regions.values() if v == v]
    return sum(values) / len(values) if values else None


def run_row(plan: RowPlan, setup: SweepSetup, *, drive=None) -> dict:
    """Train (unless No-FT) and test one row; return its leaderboard row.

    ``drive(run)`` runs the engine and returns its TrainResult (default:
    :func:`napari_petite.training.job.drive`; the CLI passes one that shows progress).
    """
    import torch

    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.bundle import save_adapter
    from napari_petite.peft.spec import MixPEFTSpec
    from napari_petite.training import job as jobs
    from napari_petite.training.device import resolve_device
    from napari_petite.training.distributed import rank
    from napari_petite.training.evaluation import evaluate_subjects

    device = resolve_device(setup.config.device)
    seconds, val_best, steps = 0.0, None, 0
    with PeakMemory(device) as memory:
        if plan.spec is not None:
            run = jobs.build_run(jobs.JobRequest(setup.scanner, setup.split, setup.config,
                                                 spec=plan.spec, base=setup.base,
                                                 source=setup.source))
            result = (drive or jobs.drive)(run)
            model, spec, report = run.model, run.spec, run.report
            seconds, val_best, steps = result.seconds, result.best_val, result.steps_done
        else:  # No-FT: the base as is, counted through the same spec machinery
            model, _, _ = jobs.load_base(setup.base)
            spec = MixPEFTSpec(model.name, model.preset, "none", "none", False)
            torch.manual_seed(setup.config.seed)
            report = apply_spec(model, spec)
        model.to(device)
        evaluation = evaluate_subjects(model, setup.scanner, setup.split.test, device=device)
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
        "fingerprint": fingerprint(plan, setup),
    }
    if setup.save_adapters and plan.spec is not None:
        save_adapter(model, spec, setup.out / "adapters" / plan.key,
                     base_sha256=setup.base_sha,
                     training={**run.record(result), "sweep_row": plan.key},
                     metrics={**run.metrics(result), "test_mean": mean},
                     seed=setup.config.seed, overwrite=True)
    return row


def skipped_row(plan: RowPlan, setup: SweepSetup) -> dict:
    return {"key": plan.key, "label": plan.label, "kind": plan.kind, "note": plan.note,
            "skipped": plan.skipped, "fingerprint": fingerprint(plan, setup)}


def done_rows(out: Path) -> dict[str, dict]:
    """Rows finished by earlier runs: the leaderboard's, updated by any row files."""
    from napari_petite.errors import PetiteError
    from napari_petite.io.jsonfile import read_json
    from napari_petite.training.leaderboard import read_rows

    done = {r["key"]: r for r in read_rows(out)}
    for path in sorted((out / "rows").glob("*.json")) if (out / "rows").is_dir() else []:
        try:
            row = read_json(path)
        except PetiteError:
            continue
        if isinstance(row, dict) and "key" in row:
            done[row["key"]] = row
    return done


