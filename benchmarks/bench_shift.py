"""How far apart the sample sites are, and how much of the gap fine-tuning closes.

For each backbone and each source -> target pair it puts side by side, on the target's
held-out test subjects (head mask):

- **input**: the low-count scan itself;
- **No-FT**: the shipped base (pre-trained on the source) as is;
- **Full-FT**: the base with every weight fine-tuned on the target's training subjects
  (the quality sweep's row: same budget, seed and split, reused when done);
- **in-domain**: the same network trained *from scratch* on the target's training subjects
  with the base's own recipe and step budget (read from the base's card), validated on the
  same subject: what the site would get without a base at all;

and the target's protocol (dose-reduction factor, injected activity, counts of its low-count
scan relative to the source's, post-filter, voxel size), so each shift can be read against
what makes the site differ. ``--few-subjects N`` adds the small-clinic case: every Mix-PEFT and
Full-FT trained on only N target subjects (UNETR by default).

    python benchmarks/bench_shift.py --threads 1           # after (or beside) bench_quality.py
    python benchmarks/bench_shift.py --aggregate-only      # tables from what is done

Writes ``shift.json`` and ``shift.md`` into the results folder. The in-domain checkpoints go
to ``--work`` (outside the repository; only their numbers are committed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, RESULTS, ensure_data, mean_sd, read_json, thread_env, write_json
from bench_quality import (
    BACKBONES,
    MIX_BUDGET_PERCENT,
    PAIRS,
    bases_of,
    load_rows,
    pairs_of,
    sweep_dir,
)

#: the sweep rows this script needs from every pair
ROWS = ("no-ft", "full-ft")
DEFAULT_WORK = Path("~/.cache/napari-petite/bench-indomain").expanduser()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated SOURCE:TARGET")
    p.add_argument("--data", default=None, metavar="DIR",
                   help=f"dataset (default {DEFAULT_DATA}, simulated when missing)")
    p.add_argument("--base", action="append", default=[], metavar="BACKBONE=FILE",
                   help="base checkpoint per backbone (default: the shipped one)")
    p.add_argument("--indomain-steps", type=int, default=None, metavar="N",
                   help="budget of the in-domain reference (default: the base card's)")
    p.add_argument("--steps", type=int, default=100,
                   help="fine-tuning budget of the Full-FT and Mix-PEFT rows (default 100, as "
                        "bench_quality.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=25, help="as bench_quality.py")
    p.add_argument("--few-subjects", type=int, default=2, metavar="N",
                   help="target training subjects of the small-clinic runs (0: skip them)")
    p.add_argument("--few-backbones", default="unetr", help="backbones of the small-clinic runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS), metavar="DIR")
    p.add_argument("--work", default=str(DEFAULT_WORK), metavar="DIR",
                   help="in-domain checkpoints (not committed)")
    p.add_argument("--aggregate-only", action="store_true")
    return p.parse_args(argv)


def _petite(args, cli: list[str]) -> int:
    cmd = [sys.executable, "-m", "napari_petite.cli", *cli]
    print("==", shlex.join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, env=thread_env(args.threads),
                          check=False).returncode


def base_path(args, backbone: str) -> Path:
    from napari_petite.training.job import shipped_base

    return Path(args.bases.get(backbone) or shipped_base(backbone))


def base_card(args, backbone: str) -> dict:
    from napari_petite.models.checkpoint import read_card

    return read_card(base_path(args, backbone))


def indomain_command(args, backbone: str, target: str, out: Path) -> list[str]:
    """``petite pretrain`` on the target with the base's recipe: same preset, overrides,
    steps, batch, learning rate, warm-up and validation interval; the sweep's split."""
    card = base_card(args, backbone)
    cfg = (card.get("training") or {}).get("config") or {}
    steps = args.indomain_steps or cfg.get("steps")
    if not steps:
        raise SystemExit(f"the {backbone} base card records no training budget; pass "
                         "--indomain-steps")
    cli = ["pretrain", "--data", str(args.data), "--source", target, "--backbone", backbone,
           "--preset", card["preset"]]
    overrides = card.get("overrides") or {k: v for k, v in card["config"].items()}
    for key, value in overrides.items():
        cli += ["--override", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    cli += ["--n-val", "1", "--steps", str(steps), "--batch", str(cfg.get("batch_size", 2)),
            "--val-every", str(cfg.get("val_every", 50)), "--seed", str(args.seed),
            "--device", args.device, "--out", str(out), "--overwrite", "--json"]
    if cfg.get("lr") is not None:
        cli += ["--lr", repr(cfg["lr"])]
    if cfg.get("gan_warmup_steps"):
        cli += ["--gan-warmup", str(min(cfg["gan_warmup_steps"], steps))]
    return cli


def run_indomain(args, backbone: str, target: str) -> Path:
    """Train the in-domain reference unless a card made by the same command exists."""
    out = Path(args.work) / backbone / f"{target}.safetensors"
    cli = indomain_command(args, backbone, target, out)
    card = read_json(out.with_suffix(".json")) or {}
    if card.get("bench_command") == cli and out.is_file():
        return out
    if _petite(args, cli) == 0:
        card = read_json(out.with_suffix(".json")) or {}
        card["bench_command"] = cli
        write_json(out.with_suffix(".json"), card)
    return out


def run_sweep(args, backbone: str, source: str, target: str, folder: Path, *,
              only: str, n_train: int | None = None) -> int:
    cli = ["sweep", "--data", str(args.data), "--source", source, "--target", target,
           "--backbone", backbone, "--steps", str(args.steps), "--val-every", str(args.val_every),
           "--seed", str(args.seed), "--device", args.device, "--only", only,
           "--out", str(folder), "--json"]
    if n_train is not None:
        cli += ["--n-train", str(n_train), "--n-val", "1"]
    if backbone in args.bases:  # else the shipped base, recorded as such
        cli += ["--base", args.bases[backbone]]
    return _petite(args, cli)


def protocol(data: Path, scanner: str) -> dict[str, Any]:
    """The site's protocol as its dataset's scanner.json records it."""
    from napari_petite.simulate.profiles import REFERENCE_FULL_MIN

    doc = read_json(data / scanner / "scanner.json") or {}

    def value(key):
        entry = doc.get(key)
        return entry.get("value") if isinstance(entry, dict) else None

    sim = doc.get("simulation") or {}
    drf = sim.get("drf")
    counts = None
    if drf and value("relative_counts") and value("injected_activity_mbq"):
        counts = (value("relative_counts") * value("injected_activity_mbq") / 200.0
                  * (value("full_scan_min") or REFERENCE_FULL_MIN) / REFERENCE_FULL_MIN / drf)
    return {"drf": drf, "injected_mbq": value("injected_activity_mbq"),
            "short_scan_min": value("short_scan_min"), "full_scan_min": value("full_scan_min"),
            "postfilter_mm": (value("postfilter_fwhm_mm") or [None])[0],
            "psf": value("recon_psf"), "fwhm_mm": (value("resolution_fwhm_mm") or [None])[0],
            "voxel_mm": sim.get("grid", {}).get("spacing_zyx_mm"),
            "low_counts_rel": counts}


def explain(target: dict, source: dict) -> str:
    """One sentence on what separates the target's scans from the source's."""
    parts = []
    if target["low_counts_rel"] and source["low_counts_rel"]:
        ratio = target["low_counts_rel"] / source["low_counts_rel"]
        word = "fewer" if ratio < 1 else "more"
        parts.append(f"DRF {target['drf']:g} at {target['injected_mbq']:g} MBq: "
                     f"{max(ratio, 1 / ratio):.1f}x {word} low-count counts than the source's")
    known = {k for k in ("postfilter_mm", "psf") if None not in (target[k], source[k])}
    if "postfilter_mm" in known and target["postfilter_mm"] != source["postfilter_mm"]:
        pf = target["postfilter_mm"]
        parts.append("no post-filter" if not pf else f"{pf:g} mm post-filter "
                     f"(source {source['postfilter_mm']:g})")
    if "psf" in known and target["psf"] != source["psf"]:
        parts.append("PSF modelling" if target["psf"] else "no PSF modelling")
    if target["voxel_mm"] and source["voxel_mm"] and target["voxel_mm"] != source["voxel_mm"]:
        parts.append("voxels " + "x".join(f"{v:.2f}" for v in target["voxel_mm"]) + " mm")
    return "; ".join(parts) or "same protocol as the source"


def _metric(rows: dict, key: str, what: str = "psnr") -> float | None:
    row = rows.get(key)
    return None if row is None else row.get(what)


def indomain_metrics(args, backbone: str, target: str) -> dict | None:
    card = read_json(Path(args.work) / backbone / f"{target}.json")
    rec = ((card or {}).get("metrics") or {}).get("model_vs_full") or {}
    if not rec:
        return None
    return {"psnr": rec.get("psnr_mask"), "ssim": rec.get("ssim_mask"),
            "test": (card.get("split") or {}).get("test"),
            "n_train": len((card.get("split") or {}).get("train") or []),
            "steps": (card.get("training") or {}).get("steps_done"),
            "best_step": ((card.get("training") or {}).get("val_best") or {}).get("step")}


def aggregate(args, backbones, pairs, work: Path) -> dict:
    from napari_petite.training.job import load_base

    out: dict[str, Any] = {"steps": args.steps, "seed": args.seed, "backbones": {}}
    for backbone in backbones:
        _, _, sha = load_base(base_path(args, backbone), backbone)
        card = base_card(args, backbone)
        rows_out = []
        for source, target in pairs:
            rows, meta = load_rows(sweep_dir(work, backbone, source, target), args.steps,
                                   args.seed, sha)
            low = meta.get("low_vs_full") or {}
            src, tgt = protocol(args.data, source), protocol(args.data, target)
            noft, full = _metric(rows, "no-ft"), _metric(rows, "full-ft")
            ind = indomain_metrics(args, backbone, target)
            rows_out.append({
                "pair": f"{source}->{target}", "target": target, "protocol": tgt,
                "explanation": explain(tgt, src),
                "input": {"psnr": low.get("psnr"), "ssim": low.get("ssim")},
                "no_ft": {"psnr": noft, "ssim": _metric(rows, "no-ft", "ssim")},
                "full_ft": {"psnr": full, "ssim": _metric(rows, "full-ft", "ssim")},
                "in_domain": ind,
                "shift_full_minus_noft_db": None if None in (noft, full) else full - noft,
                "indomain_minus_noft_db": None if ind is None or noft is None
                else ind["psnr"] - noft,
            })
        shifts = mean_sd([r["shift_full_minus_noft_db"] for r in rows_out])
        out["backbones"][backbone] = {
            "base_sha256": sha, "base_steps": ((card.get("training") or {}).get("config")
                                               or {}).get("steps"),
            "base_n_train": len((card.get("split") or {}).get("train") or []),
            "source_protocol": protocol(args.data, pairs[0][0]) if pairs else None,
            "rows": rows_out, "shift_full_minus_noft_db": shifts,
        }
    out["few_subjects"] = few_aggregate(args, pairs, work)
    return out


def few_dir(args, backbone: str, source: str, target: str) -> Path:
    return Path(args.out) / f"few{args.few_subjects}" / "sweeps" / backbone / f"{source}-{target}"


def few_aggregate(args, pairs, work: Path) -> dict:
    """Best Mix-PEFT at <= 1 % minus Full-FT, both trained on ``few_subjects`` subjects."""
    from napari_petite.training.job import load_base

    if not args.few_subjects:
        return {}
    out = {}
    for backbone in [b for b in args.few_backbones.split(",") if b]:
        _, _, sha = load_base(base_path(args, backbone), backbone)
        per_pair = {f"{s}->{t}": load_rows(few_dir(args, backbone, s, t), args.steps,
                                           args.seed, sha)[0] for s, t in pairs}
        mixes = sorted({k for rows in per_pair.values() for k in rows if k.startswith("mix-")})
        means, small = {}, set()
        for key in mixes:
            rows = [r[key] for r in per_pair.values() if key in r]
            if len(rows) == len(pairs):
                means[key] = sum(r["psnr"] for r in rows) / len(rows)
                if all((r.get("percent") or 100) <= MIX_BUDGET_PERCENT for r in rows):
                    small.add(key)
        # the best within the 1 % budget; the best of any size (flagged) when none fits
        pool = {k: v for k, v in means.items() if k in small} or means
        best = max(pool, key=pool.get) if pool else None
        diffs = [rows[best]["psnr"] - rows["full-ft"]["psnr"] for rows in per_pair.values()
                 if best in rows and "full-ft" in rows] if best else []
        noft = [rows["full-ft"]["psnr"] - rows["no-ft"]["psnr"] for rows in per_pair.values()
                if "full-ft" in rows and "no-ft" in rows]
        out[backbone] = {"n_train": args.few_subjects, "best_mix_key": best,
                         "within_budget": bool(small),
                         "best_mix_label": next((r[best]["label"] for r in per_pair.values()
                                                 if best in r), None),
                         "mix_minus_full_db": mean_sd(diffs),
                         "full_minus_noft_db": mean_sd(noft),
                         "per_pair": {p: {k: rows[k]["psnr"] for k in rows}
                                      for p, rows in per_pair.items()}}
    return out


def _f(value, spec=".2f") -> str:
    return "–" if value is None else format(value, spec)


def to_markdown(agg: dict) -> str:
    lines = ["# Cross-site shift: what separates the sample sites, and what fine-tuning "
             "recovers", "",
             f"Held-out test subjects of each target, head mask; fine-tuning rows "
             f"{agg['steps']} steps, seed {agg['seed']}. *In-domain*: the same network trained "
             "from scratch on the target's training subjects with the base's recipe and step "
             "budget. PSNR dB / SSIM.", ""]
    for backbone, b in agg["backbones"].items():
        s = b["shift_full_minus_noft_db"]
        n_ind = sorted({r["in_domain"]["n_train"] for r in b["rows"] if r["in_domain"]})
        lines += [f"## {backbone} (base: {b['base_steps']} steps on the source)", "",
                  f"The base learnt from {b.get('base_n_train', '?')} source subjects; each "
                  f"in-domain reference from the target's {'/'.join(map(str, n_ind)) or '?'} "
                  "training subjects only, so it shows what the target's own few scans give "
                  "alone, not a ceiling: where the shift is small (a base trained on many "
                  "subjects already fits) it falls below No-FT.", "",
                  "| pair | protocol (vs source) | input | No-FT | Full-FT | in-domain | "
                  "Full-FT − No-FT dB |", "|---|---|---|---|---|---|---|"]
        for r in b["rows"]:
            cells = [f"{_f(r[k]['psnr'])} / {_f(r[k]['ssim'], '.3f')}" if r[k] else "–"
                     for k in ("input", "no_ft", "full_ft", "in_domain")]
            lines.append(f"| {r['pair']} | {r['explanation']} | " + " | ".join(cells)
                         + f" | {_f(r['shift_full_minus_noft_db'], '+.2f')} |")
        lines += ["", f"Mean shift (Full-FT − No-FT): {_f(s['mean'], '+.2f')} dB "
                  f"(sd {_f(s['sd'])}, n={s['n']}).", ""]
    for backbone, few in (agg.get("few_subjects") or {}).items():
        d = few["mix_minus_full_db"]
        lines += [f"## Few subjects ({backbone}, {few['n_train']} training subjects per "
                  "target)", "",
                  f"Best Mix-PEFT at ≤ {MIX_BUDGET_PERCENT:g} %: {few['best_mix_label']}; "
                  f"minus Full-FT: {_f(d['mean'], '+.2f')} dB (sd {_f(d['sd'])}, n={d['n']}); "
                  f"Full-FT − No-FT with so few subjects: "
                  f"{_f(few['full_minus_noft_db']['mean'], '+.2f')} dB.", ""]
    return "\n".join(lines)


def recorded_command(argv: list[str]) -> str:
    """The invocation that makes these numbers, without the flags that only change how it
    runs (threads, device placement stays) or that it only aggregated."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--threads":
            skip = True
        elif not arg.startswith("--threads=") and arg != "--aggregate-only":
            kept.append(arg)
    return shlex.join(["python", "benchmarks/bench_shift.py", *kept])


def main(argv=None) -> int:
    args = parse_args(argv)
    args.bases = bases_of(args.base)
    backbones = [b for b in args.backbones.split(",") if b]
    pairs = pairs_of(args.pairs)
    args.data = Path(args.data).expanduser() if args.data else DEFAULT_DATA
    out = Path(args.out).expanduser()
    work = out / "sweeps"  # shared with bench_quality.py: its finished rows are reused
    if not args.aggregate_only:
        ensure_data(args.data, [target for _, target in pairs])
        from napari_petite.training.job import load_base
        from napari_petite.training.sweep import plan_rows

        for backbone in backbones:
            for source, target in pairs:
                run_sweep(args, backbone, source, target,
                          sweep_dir(work, backbone, source, target), only=",".join(ROWS))
                run_indomain(args, backbone, target)
        for backbone in [b for b in args.few_backbones.split(",") if b] \
                if args.few_subjects else []:
            model, _, _ = load_base(base_path(args, backbone), backbone)
            keys = [p.key for p in plan_rows(model) if p.kind == "mix" or p.key in ROWS]
            for source, target in pairs:
                run_sweep(args, backbone, source, target, few_dir(args, backbone, source, target),
                          only=",".join(keys), n_train=args.few_subjects)
    agg = aggregate(args, backbones, pairs, work)
    agg["command"] = recorded_command(argv if argv is not None else sys.argv[1:])
    write_json(out / "shift.json", agg)
    from napari_petite.io.atomic import write_text

    write_text(out / "shift.md", to_markdown(agg), overwrite=True)
    print(f"written {out / 'shift.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
