"""The paper's quality tables re-measured: every method on several source -> target pairs.

For each backbone (default UNETR-small and CVT-GAN-small, the shipped bases pre-trained on
the simulated mCT) and each pair, runs ``petite sweep`` (No-FT, Full-FT, each single method,
every feasible Mix-PEFT + BitFit; same step budget and seed) in a child process. The sweep
saves each finished row at once, so re-running this command skips what is done: a multi-hour
run can be interrupted and continued. Then it aggregates over the pairs into
``quality_<backbone>.{md,csv,json}``: per method PSNR / SSIM / NRMSE in the head mask, the
mean absolute regional bias and the grey-matter bias (against the full-count image, and
against the simulated truth), % trainable parameters, wall time, peak memory, each as mean ±
sd over the pairs that have the row (n stated; missing rows shown as missing), the PSNR gain
over No-FT and the gap to Full-FT taken pair by pair, and the paper's numbers beside ours.
Last, ``psnr_vs_params.png``: PSNR gain over No-FT against % trainable parameters.

    python benchmarks/bench_quality.py                     # 2 backbones x 4 pairs, hours
    python benchmarks/bench_quality.py --aggregate-only    # tables from what is done so far
    python benchmarks/bench_quality.py --nproc 2 --threads 1   # rows spread over 2 torchrun ranks

The best Mix-PEFT is the one with the highest mean test PSNR over the pairs among those at
≤ 1 % trainable parameters (the issue's budget; the best of any size, flagged, when none fits):
one combination for all pairs, not the best per pair. Choosing it on the test subjects is
optimistic by the spread between the combinations, as in the paper.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    RESULTS,
    ROOT,
    clean,
    ensure_data,
    mean_sd,
    pair_parser,
    pairs_of,
    read_json,
    thread_env,
    write_json,
)

BACKBONES = ("unetr", "cvtgan")
PAIRS = ("mct:vision", "mct:dmi", "mct:uexplorer", "mct:vereos")
#: per-row metrics aggregated over pairs: key -> (column title, format)
METRICS = {
    "psnr": ("PSNR dB", ".2f"), "ssim": ("SSIM", ".4f"), "nrmse": ("NRMSE", ".4f"),
    "gain_db": ("Δ PSNR vs No-FT", "+.2f"), "vs_full_db": ("Δ PSNR vs Full-FT", "+.2f"),
    "abs_bias_pct": ("mean |bias| %", ".2f"), "gm_bias_pct": ("GM bias %", "+.2f"),
    "gm_bias_truth_pct": ("GM bias vs truth %", "+.2f"), "percent": ("% params", ".3f"),
    "train_s": ("train s", ".0f"), "peak_mem_mb": ("peak MB", ".0f"),
}
GREY_MATTER = "grey matter"


#: the issue's budget for the headline Mix-PEFT ("within 0.05 dB of Full-FT at <= 1 % params")
MIX_BUDGET_PERCENT = 1.0


def parse_args(argv=None) -> argparse.Namespace:
    p = pair_parser(__doc__, BACKBONES, PAIRS)
    p.add_argument("--data", default=None, metavar="DIR",
                   help=f"dataset (default {DEFAULT_DATA}, simulated with `petite "
                        "make-sample-data --size small` when missing)")
    p.add_argument("--base", action="append", default=[], metavar="BACKBONE=FILE",
                   help="base checkpoint per backbone (default: the shipped one)")
    p.add_argument("--steps", type=int, default=100, help="step budget of every row")
    p.add_argument("--val-every", type=int, default=25)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, metavar="KEYS", help="sweep rows to run (all)")
    p.add_argument("--lr-scale", type=float, default=1.0, metavar="F",
                   help="multiply the per-method learning rates by F (pair it with its own "
                   "--out)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="method hyper-parameter for the rows using that method, e.g. "
                        "lora.rank=2 (repeatable; pair it with its own --out)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per process")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument("--nproc", type=int, default=1,
                   help="torchrun ranks per sweep (rows are dealt out over them)")
    p.add_argument("--out", default=str(RESULTS), metavar="DIR",
                   help="results folder (quality_*.md/.csv/.json, psnr_vs_params.png)")
    p.add_argument("--work", default=None, metavar="DIR",
                   help="sweep folders (default OUT/sweeps/BACKBONE/SOURCE-TARGET)")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; build the tables from the sweep folders as they are")
    p.add_argument("--keep-going", action="store_true",
                   help="go on with the next pair when a sweep fails")
    return p.parse_args(argv)


def run_command(args, backbone: str, base: str | None) -> str:
    """The command that makes (or resumes) these rows: the invocation without the flags that
    only change how it runs (threads, ranks, --keep-going, --aggregate-only), so a reader can
    rerun it."""
    cmd = ["python", "benchmarks/bench_quality.py", "--backbones", backbone,
           "--steps", str(args.steps), "--val-every", str(args.val_every),
           "--batch", str(args.batch), "--seed", str(args.seed)]
    if args.pairs != ",".join(PAIRS):
        cmd += ["--pairs", args.pairs]
    if args.only:
        cmd += ["--only", args.only]
    for item in args.param:
        cmd += ["--param", item]
    if args.lr_scale != 1.0:
        cmd += ["--lr-scale", repr(args.lr_scale)]
    if args.data != DEFAULT_DATA:
        cmd += ["--data", str(args.data)]
    out = Path(args.out).expanduser().resolve()
    if out != RESULTS.resolve():
        cmd += ["--out", os.path.relpath(out, ROOT) if out.is_relative_to(ROOT) else str(out)]
    if base:
        cmd += ["--base", f"{backbone}={base}"]
    return shlex.join(cmd)


def bases_of(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--base {item!r} must look like BACKBONE=FILE")
        out[name] = path
    return out


def sweep_dir(work: Path, backbone: str, source: str, target: str) -> Path:
    return work / backbone / f"{source}-{target}"


def run_sweep(args, backbone: str, source: str, target: str, folder: Path,
              base: str | None) -> int:
    """One ``petite sweep`` in a child process (torchrun when --nproc > 1); its return code."""
    cli = ["-m", "napari_petite.cli", "sweep", "--data", str(args.data), "--source", source,
           "--target", target, "--backbone", backbone, "--steps", str(args.steps),
           "--val-every", str(args.val_every), "--batch", str(args.batch),
           "--seed", str(args.seed), "--device", args.device, "--out", str(folder), "--json"]
    if base:
        cli += ["--base", base]
    if args.only:
        cli += ["--only", args.only]
    for item in args.param:
        cli += ["--param", item]
    if args.lr_scale != 1.0:
        cli += ["--lr-scale", repr(args.lr_scale)]
    launcher = [sys.executable]
    if args.nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone",
                     f"--nproc-per-node={args.nproc}"]
    cmd = launcher + cli
    print(f"== {backbone} {source}->{target}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False,
                          env=thread_env(args.threads))
    if done.returncode:
        print(f"sweep {backbone} {source}->{target} failed ({done.returncode})",
              file=sys.stderr)
    return done.returncode


# -- aggregation -------------------------------------------------------------------------

def load_rows(folder: Path, steps: int, seed: int, base_sha: str) -> tuple[dict[str, dict], dict]:
    """Finished rows of one sweep folder made with this budget, seed and base; and its meta."""
    from napari_petite.training.sweep import done_rows

    meta = (read_json(folder / "leaderboard.json") or {}).get("meta", {})
    rows = {}
    for key, row in done_rows(folder).items():
        fp = row.get("fingerprint") or {}
        if row.get("skipped") or (fp.get("steps"), fp.get("seed"), fp.get("base_sha256")) \
                != (steps, seed, base_sha):
            continue
        rows[key] = row
    return rows, meta


def _bias(row: dict, kind: str, region: str) -> float | None:
    value = ((row.get("test_mean") or {}).get(kind) or {}).get("regional_bias_pct", {})
    value = value.get(region)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def row_values(row: dict, noft: dict | None, full: dict | None) -> dict[str, float | None]:
    """The aggregated quantities of one row on one pair (paired differences included)."""
    def diff(other):
        if other is None or row.get("psnr") is None or other.get("psnr") is None:
            return None
        return row["psnr"] - other["psnr"]

    return {"psnr": row.get("psnr"), "ssim": row.get("ssim"), "nrmse": row.get("nrmse"),
            "gain_db": diff(noft), "vs_full_db": diff(full),
            "abs_bias_pct": row.get("abs_bias_pct"),
            "gm_bias_pct": _bias(row, "recon", GREY_MATTER),
            "gm_bias_truth_pct": _bias(row, "recon_vs_truth", GREY_MATTER),
            "percent": row.get("percent"), "train_s": row.get("train_s"),
            "peak_mem_mb": row.get("peak_mem_mb")}


def paper_entry(backbone: str, key: str, label: str) -> dict | None:
    from napari_petite.peft.spec import PETITE
    from napari_petite.training.leaderboard import PAPER

    table = PAPER.get(backbone, {})
    name = label if label in table else None
    if key == "mix-{}-{}".format(*PETITE.get(backbone, ("?", "?"))):
        name = next((n for n in table if n.startswith("PETITE")), None)
    if name is None:
        return None
    psnr, ssim, nrmse, pct = table[name]
    return {"name": name, "psnr": psnr, "ssim": ssim, "nrmse": nrmse, "percent": pct}


def aggregate(backbone: str, pairs: list[tuple[str, str]], work: Path, steps: int,
              seed: int, base: str | None = None, params: dict | None = None) -> dict:
    """Per-method mean ± sd over the pairs, from whatever rows exist."""
    from napari_petite.training.job import load_base
    from napari_petite.training.sweep import plan_rows

    # the row order and labels of the sweep itself (the same plan as the runs)
    model, _, base_sha = load_base(base, backbone)
    plans = [p for p in plan_rows(model, params) if not p.skipped]
    per_pair: dict[str, dict[str, dict]] = {}
    metas = {}
    for source, target in pairs:
        folder = sweep_dir(work, backbone, source, target)
        rows, meta = load_rows(folder, steps, seed, base_sha)
        per_pair[f"{source}->{target}"] = rows
        metas[f"{source}->{target}"] = {k: meta.get(k) for k in
                                        ("base", "base_sha256", "split", "low_vs_full")}
    methods = []
    for plan in plans:
        values: dict[str, dict[str, float | None]] = {}
        for pair, rows in per_pair.items():
            if plan.key in rows:
                values[pair] = row_values(rows[plan.key], rows.get("no-ft"),
                                          rows.get("full-ft"))
        stats = {m: mean_sd([v[m] for v in values.values()]) for m in METRICS}
        methods.append({"key": plan.key, "label": plan.label, "kind": plan.kind,
                        "n_pairs": len(values), "pairs": sorted(values), "stats": stats,
                        "per_pair": values, "note": plan.note,
                        "paper": paper_entry(backbone, plan.key, plan.label)})
    n_max = len(pairs)
    mixes = [m for m in methods if m["kind"] == "mix" and m["stats"]["psnr"]["mean"] is not None]
    complete = [m for m in mixes if m["n_pairs"] == max(x["n_pairs"] for x in mixes)] \
        if mixes else []
    # the goal is about Mix-PEFT at <= 1 % trainable: pick the best within that budget, and
    # fall back to the best overall (flagged) when no combination fits it
    overall = max(complete, key=lambda m: m["stats"]["psnr"]["mean"]) if complete else None
    small = [m for m in complete if (m["stats"]["percent"]["mean"] or 0.0) <= MIX_BUDGET_PERCENT]
    best = max(small, key=lambda m: m["stats"]["psnr"]["mean"]) if small else overall
    headline = {"best_mix_key": best["key"] if best else None,
                "best_mix_label": best["label"] if best else None,
                "best_mix_within_budget": bool(small),
                "budget_percent": MIX_BUDGET_PERCENT,
                "best_overall_mix_key": overall["key"] if overall else None,
                "best_overall_mix_label": overall["label"] if overall else None,
                "mix_minus_full_psnr_db": best["stats"]["vs_full_db"] if best else None,
                "mix_minus_noft_psnr_db": best["stats"]["gain_db"] if best else None,
                "mix_trainable_percent": best["stats"]["percent"] if best else None}
    return {"backbone": backbone, "steps": steps, "seed": seed, "base_sha256": base_sha,
            "pairs_requested": [f"{s}->{t}" for s, t in pairs],
            "pairs_with_rows": [p for p, rows in per_pair.items() if rows],
            "n_pairs_requested": n_max, "sweeps": metas, "headline": headline,
            "methods": methods}


def _cell(stat: dict, spec: str) -> str:
    if stat["mean"] is None:
        return "missing"
    text = format(stat["mean"], spec)
    if stat["sd"] is not None:
        text += " ± " + format(stat["sd"], spec.lstrip("+"))
    return text if stat["n"] else "missing"


def to_markdown(agg: dict) -> str:
    """The quality table of one backbone, the paper's beside it."""
    backbone = agg["backbone"]
    best = agg["headline"]["best_mix_key"]
    cols = list(METRICS)
    lines = [f"# Quality: {backbone}, {agg['steps']} steps per row, seed {agg['seed']}", "",
             f"Pairs requested: {', '.join(agg['pairs_requested'])}; pairs with results: "
             f"{', '.join(agg['pairs_with_rows']) or 'none'}. Each cell: mean ± sd over the "
             "pairs that have the row (column n). Metrics on the target's held-out test "
             "subjects in the head mask; Δ columns are paired differences per pair; biases "
             "are regional means of the reconstruction against the full-count image (GM vs "
             "truth: against the simulated activity). **Bold** = best Mix-PEFT by mean PSNR "
             f"among those at ≤ {MIX_BUDGET_PERCENT:g} % trainable (any size if none is).",
             "", "| method | n | " + " | ".join(METRICS[c][0] for c in cols)
             + " | paper PSNR / SSIM / NRMSE (% params) |",
             "|" + "---|" * (len(cols) + 3)]
    for m in agg["methods"]:
        label = f"**{m['label']}**" if m["key"] == best else m["label"]
        paper = m["paper"]
        ptext = "" if paper is None else (
            f"{paper['psnr']:.3f} / {paper['ssim']:.3f} / {paper['nrmse']:.4f}"
            + ("" if paper["percent"] is None else f" ({paper['percent']:g} %)"))
        cells = [_cell(m["stats"][c], METRICS[c][1]) for c in cols] if m["n_pairs"] else \
            ["missing (no pair has this row yet)"] + [""] * (len(cols) - 1)
        lines.append(f"| {label} | {m['n_pairs']}/{agg['n_pairs_requested']} | "
                     + " | ".join(cells) + f" | {ptext} |")
    h = agg["headline"]
    if h["best_mix_key"]:
        def s(stat, spec="+.3f"):
            return _cell(stat, spec) + f" (n={stat['n']})"
        budget = (f"at ≤ {h['budget_percent']:g} % trainable" if h["best_mix_within_budget"]
                  else f"none fits {h['budget_percent']:g} % trainable, so the best overall")
        lines += ["", f"Best Mix-PEFT ({budget}): {h['best_mix_label']}: "
                  f"{s(h['mix_minus_full_psnr_db'])} dB vs Full-FT, "
                  f"{s(h['mix_minus_noft_psnr_db'])} dB vs No-FT, "
                  f"{_cell(h['mix_trainable_percent'], '.3f')} % trainable parameters."]
        if h["best_overall_mix_key"] != h["best_mix_key"]:
            lines.append(f"Best Mix-PEFT of any size: {h['best_overall_mix_label']}.")
    notes = [m for m in agg["methods"] if m["note"]]
    if notes:
        lines += ["", "Notes:"] + [f"- {m['label']}: {m['note']}" for m in notes]
    lines += ["", "The paper's numbers are averages over 20 real scanner pairs × 3 folds on "
              "min-max-scaled volumes (PETITE, MICCAI 2024): compare orderings and gaps, not "
              "absolute decibels."]
    return "\n".join(lines) + "\n"


def to_csv(agg: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["key", "label", "kind", "n_pairs"]
    for c in METRICS:
        header += [f"{c}_mean", f"{c}_sd"]
    header += ["paper_psnr", "paper_ssim", "paper_nrmse", "paper_percent"]
    writer.writerow(header)
    for m in agg["methods"]:
        row: list[Any] = [m["key"], m["label"], m["kind"], m["n_pairs"]]
        for c in METRICS:
            row += [m["stats"][c]["mean"], m["stats"][c]["sd"]]
        p = m["paper"] or {}
        row += [p.get("psnr"), p.get("ssim"), p.get("nrmse"), p.get("percent")]
        writer.writerow(["" if v is None else v for v in clean(row)])
    return buffer.getvalue()


def plot(out: Path, backbones: list[str]) -> Path | None:
    """PSNR gain over No-FT vs % trainable parameters (log x), one marker per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_petite.io.atomic import atomic_path

    found = {b: read_json(out / f"quality_{b}.json") for b in backbones}
    found = {b: a for b, a in found.items() if a}
    if not found:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    markers = {"baseline": "s", "single": "o", "mix": "^"}
    colours = {"unetr": "tab:blue", "cvtgan": "tab:orange"}
    for backbone, agg in found.items():
        for m in agg["methods"]:
            gain, pct = m["stats"]["gain_db"], m["stats"]["percent"]
            if gain["mean"] is None or not pct["mean"]:
                continue  # No-FT (0 %) is the zero line
            ax.errorbar(pct["mean"], gain["mean"], yerr=gain["sd"] or 0.0,
                        marker=markers.get(m["kind"], "o"), color=colours.get(backbone, "k"),
                        markersize=7 if m["key"] == agg["headline"]["best_mix_key"] else 5,
                        capsize=2, linestyle="none", alpha=0.85)
            short = m["key"].replace("mix-", "")
            ax.annotate(short, (pct["mean"], gain["mean"]), fontsize=6,
                        xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axvline(1.0, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel("trainable parameters (% of the backbone, log scale)")
    ax.set_ylabel("PSNR gain over No-FT (dB, head mask, mean ± sd over pairs)")
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="none", label=b)
               for b, c in colours.items() if b in found]
    handles += [plt.Line2D([], [], color="k", marker=mk, linestyle="none", label=k)
                for k, mk in markers.items()]
    ax.legend(handles=handles, fontsize=8, loc="best")
    steps = {a["steps"] for a in found.values()}
    ax.set_title(f"PSNR gain vs trainable parameters ({', '.join(map(str, steps))} steps/row)")
    fig.tight_layout()
    path = out / "psnr_vs_params.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown:
        raise SystemExit(f"unknown backbone(s) {unknown}; choose from {BACKBONES}")
    pairs = pairs_of(args.pairs)
    bases = bases_of(args.base)
    out = Path(args.out).expanduser()
    work = Path(args.work).expanduser() if args.work else out / "sweeps"
    args.data = Path(args.data).expanduser() if args.data else DEFAULT_DATA
    failed = []
    if not args.aggregate_only:
        ensure_data(args.data, [target for _, target in pairs])
        for backbone, (source, target) in ((b, p) for b in backbones for p in pairs):
            code = run_sweep(args, backbone, source, target,
                             sweep_dir(work, backbone, source, target), bases.get(backbone))
            if code:
                failed.append(f"{backbone} {source}->{target}")
                if not args.keep_going:
                    break  # the tables below still show what finished
    from napari_petite.io.atomic import write_text

    os.makedirs(out, exist_ok=True)
    for backbone in backbones:
        from napari_petite.commands._options import parse_params

        params = parse_params(args.param)
        agg = aggregate(backbone, pairs, work, args.steps, args.seed, bases.get(backbone),
                        params)
        agg["params"] = params
        agg["command"] = run_command(args, backbone, bases.get(backbone))
        agg["failed_sweeps"] = failed
        write_json(out / f"quality_{backbone}.json", agg)
        write_text(out / f"quality_{backbone}.md", to_markdown(agg), overwrite=True)
        write_text(out / f"quality_{backbone}.csv", to_csv(agg), overwrite=True)
        h = agg["headline"]
        print(f"{backbone}: {len(agg['pairs_with_rows'])}/{len(pairs)} pairs with rows; best "
              f"mix {h['best_mix_key']}; written {out / f'quality_{backbone}.md'}")
    path = plot(out, list(BACKBONES))
    if path:
        print(f"plot written to {path}")
    if failed:
        print(f"failed sweeps: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
