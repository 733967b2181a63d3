"""Lesion and region fidelity: do adapted reconstructions keep the numbers clinicians read?

For each backbone and source -> target pair: a lesion-insertion test set simulated with the
target's protocol (``petite make-sample-data --lesions``, seeds disjoint from the training
dataset's subjects; >= 30 lesions per target by default), and rows for the low-count input,
No-FT (the shipped base), Full-FT, PETITE, the best Mix-PEFT of ``quality_<backbone>.json``
and "faithful" (PETITE with the fidelity options given by ``--faithful``). Every trained row
goes through the job pipeline on the target's training subjects (the sweep's split and
fingerprint), is scored on the test set (``training/evaluation.fidelity_of_subject``) and
saved at once under ``OUT/rows/``, so re-running skips what is done. Then per backbone
``fidelity_<backbone>.{json,md}`` (PSNR / SSIM in the head; lesion SUVmean, SUVmax, SUVpeak
bias vs full count and vs truth; mean |regional bias|; SUVR bias; recovery by diameter) and
``recovery_vs_diameter.png`` (RCmean of hot lesions vs diameter, like NEMA / EARL curves).

    python benchmarks/bench_fidelity.py                      # 2 backbones x 4 pairs, hours
    python benchmarks/bench_fidelity.py --backbones unetr --pairs mct:vision --steps 100
    python benchmarks/bench_fidelity.py --faithful "--sampling hot --lowfreq-weight 5"
    python benchmarks/bench_fidelity.py --aggregate-only
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
from bench_quality import BACKBONES, PAIRS  # the same backbones and pairs as the tables

ROWS = ("input", "no-ft", "full-ft", "petite", "best-mix", "faithful")
#: the lesion test set: subjects per target, lesions per subject, seed (the training
#: dataset uses seed 0, so these are other people)
TEST_SUBJECTS, TEST_LESIONS, TEST_SEED = 3, "10:12", 1000
DEFAULT_TESTSET = Path("~/.cache/napari-petite/fidelity-testset").expanduser()
#: figures per row, pooled over the test subjects: key -> (column title, format)
FIGURES = {
    "psnr": ("PSNR dB", ".2f"), "ssim": ("SSIM", ".4f"),
    "lesion_suvmean_bias_pct": ("lesion SUVmean bias %", "+.1f"),
    "lesion_abs_bias_p90_pct": ("p90 |SUVmean bias| %", ".1f"),
    "lesion_suvmax_bias_pct": ("SUVmax bias %", "+.1f"),
    "lesion_suvpeak_bias_pct": ("SUVpeak bias %", "+.1f"),
    "lesion_suvmean_bias_truth_pct": ("SUVmean bias vs truth %", "+.1f"),
    "region_mean_abs_bias_pct": ("mean |regional bias| %", ".2f"),
    "suvr_pcc_pons_bias_pct": ("SUVR PCC/pons %", "+.2f"),
    "suvr_precuneus_pons_bias_pct": ("SUVR precuneus/pons %", "+.2f"),
    "suvr_hypo_pons_bias_pct": ("SUVR hypo/pons %", "+.2f"),
    "suvr_pcc_cereb_bias_pct": ("SUVR PCC/cerebellum %", "+.2f"),
}
SUVR_KEYS = {"suvr_pcc_pons_bias_pct": "posterior cingulate/pons",
             "suvr_precuneus_pons_bias_pct": "precuneus/pons",
             "suvr_hypo_pons_bias_pct": "hypometabolism/pons",
             "suvr_pcc_cereb_bias_pct": "posterior cingulate/cerebellar cortex",
             "suvr_precuneus_cereb_bias_pct": "precuneus/cerebellar cortex",
             "suvr_hypo_cereb_bias_pct": "hypometabolism/cerebellar cortex"}


def parse_args(argv=None) -> argparse.Namespace:
    p = common.pair_parser(__doc__, BACKBONES, PAIRS)
    p.add_argument("--only", default=None, metavar="ROWS",
                   help=f"rows to run, comma-separated, of {', '.join(ROWS)} (default all)")
    p.add_argument("--faithful", default="--recipe faithful", metavar="FLAGS",
                   help="fidelity flags of the 'faithful' row, as `petite finetune` takes "
                   "them (default: --recipe faithful)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help=f"training dataset (default {common.DEFAULT_DATA}, simulated when missing)")
    p.add_argument("--testset", default=None, metavar="DIR",
                   help=f"lesion test set (default {DEFAULT_TESTSET}, simulated when missing)")
    p.add_argument("--test-subjects", type=int, default=TEST_SUBJECTS)
    p.add_argument("--test-lesions", default=TEST_LESIONS, metavar="N|MIN:MAX")
    p.add_argument("--test-seed", type=int, default=TEST_SEED)
    p.add_argument("--base", action="append", default=[], metavar="BACKBONE=FILE",
                   help="base checkpoint per backbone (default: the shipped one)")
    p.add_argument("--quality", default=str(common.RESULTS), metavar="DIR",
                   help="where quality_<backbone>.json names the best Mix-PEFT")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--val-every", type=int, default=25)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(common.RESULTS / "fidelity"), metavar="DIR")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; build the tables from the rows done so far")
    return p.parse_args(argv)


def faithful_options(flags: str) -> dict[str, Any]:
    """TrainConfig fields from ``petite finetune``'s fidelity flags."""
    from napari_petite.commands import _options as opt

    parser = argparse.ArgumentParser(prog="--faithful")
    opt.add_fidelity(parser)
    return opt.fidelity_options(parser.parse_args(shlex.split(flags)))


def ensure_testset(args, targets: list[str]) -> Path:
    """The lesion test set of ``targets`` (simulated into the default folder when missing or
    made with other settings; a user's folder is refused instead)."""
    from napari_petite.simulate.lesions import parse_count
    from napari_petite.simulate.scan import SIMULATOR_VERSION

    folder = Path(args.testset).expanduser() if args.testset else DEFAULT_TESTSET
    want = {"simulator_version": SIMULATOR_VERSION, "seed": args.test_seed,
            "subjects": args.test_subjects, "lesions": list(parse_count(args.test_lesions))}
    made = common.read_json(folder / "dataset.json") or {}
    if all(made.get(k) == v for k, v in want.items()) and all(
            (folder / t).is_dir() for t in targets):
        return folder
    if folder.exists() and any(folder.iterdir()) and folder != DEFAULT_TESTSET:
        raise SystemExit(f"{folder} is not a lesion test set of {targets} made with {want}; "
                         "pass another --testset or leave it out.")
    cmd = [sys.executable, "-m", "napari_petite.cli", "make-sample-data", "--out", str(folder),
           "--size", "small", "--scanners", ",".join(sorted(set(targets))), "--subjects",
           str(args.test_subjects), "--seed", str(args.test_seed), "--lesions",
           args.test_lesions, "--overwrite"]
    print("simulating the lesion test set:", shlex.join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return folder


def best_mix_key(quality: Path, backbone: str) -> str | None:
    return ((common.read_json(quality / f"quality_{backbone}.json") or {}).get("headline")
            or {}).get("best_mix_key")


def row_specs(args, model, backbone: str) -> list[dict]:
    """The rows of one backbone: key, label, spec (None: no training) and options."""
    from napari_petite.peft.spec import PETITE, MixPEFTSpec

    name, preset = model.name, model.preset
    enc, dec = PETITE[backbone]
    rows = [{"key": "input", "label": "low-count input", "spec": None},
            {"key": "no-ft", "label": "No-FT (shipped base)", "spec": None},
            {"key": "full-ft", "label": "Full-FT",
             "spec": MixPEFTSpec(name, preset, "full", "full", False)},
            {"key": "petite", "label": f"PETITE (enc {enc} + dec {dec} + BitFit)",
             "spec": MixPEFTSpec(name, preset, enc, dec, True)}]
    best = best_mix_key(Path(args.quality), backbone)
    if best and best.startswith("mix-"):
        b_enc, b_dec = best.split("-")[1:3]
        rows.append({"key": "best-mix", "label": f"best Mix ({best})",
                     "spec": MixPEFTSpec(name, preset, b_enc, b_dec, True)})
    rows.append({"key": "faithful", "label": f"faithful (PETITE, {args.faithful})",
                 "spec": MixPEFTSpec(name, preset, enc, dec, True),
                 "options": faithful_options(args.faithful)})
    wanted = [k.strip() for k in args.only.split(",")] if args.only else list(ROWS)
    unknown = set(wanted) - set(ROWS)
    if unknown:
        raise SystemExit(f"--only names unknown rows {sorted(unknown)}; rows are {ROWS}")
    return [r for r in rows if r["key"] in wanted]


def pooled(subjects: list[dict]) -> dict[str, Any]:
    """Figures of one row over the test subjects: lesions pooled, the rest averaged."""
    from napari_petite.training.fidelity import lesion_figures, recovery_by_diameter
    from napari_petite.training.fidelity_check import pooled_figures

    lesions = [r for s in subjects for r in s["lesions"]]
    figures = pooled_figures(subjects)
    vs_truth = lesion_figures(lesions, "_truth")
    out: dict[str, Any] = {
        **{k: figures[k] for k in ("psnr", "ssim", "n_subjects", "n_lesions",
                                   "lesion_suvmean_bias_pct", "lesion_abs_bias_p90_pct",
                                   "lesion_suvmax_bias_pct", "lesion_suvpeak_bias_pct")},
        "lesion_suvmean_bias_truth_pct": vs_truth["lesion_suvmean_bias_pct"],
        "lesion_suvmax_bias_truth_pct": vs_truth["lesion_suvmax_bias_pct"],
        "lesion_suvpeak_bias_truth_pct": vs_truth["lesion_suvpeak_bias_pct"],
        "hot_lesion_suvmean_bias_pct": lesion_figures(
            [r for r in lesions if r.get("kind") == "hot"])["lesion_suvmean_bias_pct"],
        "region_mean_abs_bias_pct": figures["region_mean_abs_bias_pct"],
        "recovery": recovery_by_diameter(lesions),
    }
    for key, ratio in SUVR_KEYS.items():
        values = [s["suvr_bias_pct"].get(ratio) for s in subjects]
        out[key] = common.mean_sd(values)["mean"]
    return out


def evaluate_row(model, testset, target: str, device) -> dict:
    """The row's figures on the target's lesion test set (``model`` None: the input)."""
    from napari_petite.io.dataset import discover
    from napari_petite.io.volumes import read_any
    from napari_petite.training.evaluation import fidelity_of_subject
    from napari_petite.training.inference import predict_volume

    subjects = []
    for subject in discover(testset).scanner(target).subjects:
        low = read_any(subject.low).data
        image = low if model is None else predict_volume(model, low, device=device)
        subjects.append(fidelity_of_subject(subject, image))
    return {**pooled(subjects), "subjects": subjects}


def run_pair(args, backbone: str, base: str | None, source: str, target: str,
             data: Path, testset: Path, out: Path) -> None:
    """Train (where needed) and score every missing row of one pair; each saved at once."""
    import torch

    from napari_petite.io.dataset import discover
    from napari_petite.training import job as jobs
    from napari_petite.training.device import resolve_device
    from napari_petite.training.engine import TrainConfig
    from napari_petite.training.sweep import RowPlan, SweepSetup, fingerprint

    torch.set_num_threads(args.threads)
    scanner = discover(data).scanner(target)
    split = jobs.split_subjects([s.id for s in scanner.subjects])
    base_path, _ = jobs.resolve_base(base, backbone)
    model, _, sha = jobs.load_base(base_path)
    folder = out / "rows" / backbone / f"{source}-{target}"
    device = resolve_device(args.device)
    test_meta = common.read_json(testset / "dataset.json") or {}
    for row in row_specs(args, model, backbone):
        config = TrainConfig(steps=args.steps, batch_size=args.batch, seed=args.seed,
                             val_every=args.val_every, device=args.device,
                             **row.get("options", {}))
        setup = SweepSetup(scanner, split, base_path, sha, config, folder, {}, source)
        fp = {**fingerprint(RowPlan(row["key"], row["label"], "fidelity", row["spec"]), setup),
              "testset": {k: test_meta.get(k) for k in ("seed", "subjects", "lesions",
                                                       "simulator_version")}}
        if row["key"] == "input":
            fp = {"input": True, "target": target, "testset": fp["testset"]}
        path = folder / f"{row['key']}.json"
        done = common.read_json(path)
        if done and done.get("fingerprint") == fp:
            print(f"reusing {backbone} {source}->{target} {row['key']}", file=sys.stderr)
            continue
        print(f"== {backbone} {source}->{target} {row['key']}", file=sys.stderr, flush=True)
        record: dict[str, Any] = {}
        if row["key"] == "input":
            net = None
        elif row["spec"] is None:
            net, _, _ = jobs.load_base(base_path)
        else:
            run = jobs.build_run(jobs.JobRequest(scanner, split, config, spec=row["spec"],
                                                 base=base_path, source=source))
            result = jobs.drive(run)
            net = run.model
            record = {"train_s": round(result.seconds, 1), "steps_done": result.steps_done,
                      "val_best": result.best_val, "percent": run.report.percent,
                      "options": config.fidelity_options()}
        if net is not None:
            net.to(device).eval()
        scores = evaluate_row(net, testset, target, device)
        common.write_json(path, {"key": row["key"], "label": row["label"], "backbone": backbone,
                          "pair": f"{source}->{target}", **record, **scores,
                          "fingerprint": fp})


def aggregate(out: Path, backbone: str, pairs: list[tuple[str, str]]) -> dict | None:
    """Per row: each figure's mean over the pairs that have it (and per pair)."""
    per_pair = {f"{s}->{t}": {p.stem: common.read_json(p) for p in sorted(
        (out / "rows" / backbone / f"{s}-{t}").glob("*.json"))} for s, t in pairs}
    if not any(per_pair.values()):
        return None
    rows = []
    for key in ROWS:
        have = {pair: r[key] for pair, r in per_pair.items() if r.get(key)}
        if not have:
            continue
        label = next(iter(have.values()))["label"]
        stats = {f: common.mean_sd([r.get(f) for r in have.values()]) for f in FIGURES}
        gains = [r["psnr"] - per_pair[pair]["input"]["psnr"] for pair, r in have.items()
                 if per_pair[pair].get("input")]
        stats["psnr_gain_over_input_db"] = common.mean_sd(gains)
        changes = [r["region_mean_abs_bias_pct"] - per_pair[pair]["no-ft"][
            "region_mean_abs_bias_pct"] for pair, r in have.items() if per_pair[pair].get(
            "no-ft")]
        stats["adaptation_bias_change_pct"] = common.mean_sd(changes)
        rows.append({"key": key, "label": label, "pairs": sorted(have), "stats": stats,
                     "recovery": {pair: r["recovery"] for pair, r in have.items()},
                     "n_lesions": {pair: r["n_lesions"] for pair, r in have.items()},
                     "options": next(iter(have.values())).get("options")})
    return {"backbone": backbone, "pairs_requested": [f"{s}->{t}" for s, t in pairs],
            "rows": rows}


def to_markdown(agg: dict, command: str) -> str:
    cols = ["psnr", "ssim", "lesion_suvmean_bias_pct", "lesion_abs_bias_p90_pct",
            "lesion_suvmax_bias_pct", "lesion_suvpeak_bias_pct",
            "lesion_suvmean_bias_truth_pct", "region_mean_abs_bias_pct",
            "suvr_pcc_pons_bias_pct", "suvr_precuneus_pons_bias_pct"]
    lines = [f"# Lesion and region fidelity: {agg['backbone']}", "",
             "Mean over the pairs that have the row (n in brackets); lesion figures pooled "
             "over each target's lesion-insertion test subjects; biases against the full-count "
             "image unless marked 'vs truth'.", "",
             "| row | " + " | ".join(FIGURES[c][0].replace("|", "\\|") for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for row in agg["rows"]:
        cells = []
        for c in cols:
            s = row["stats"][c]
            cells.append("–" if s["mean"] is None else format(s["mean"], FIGURES[c][1]))
        lines.append(f"| {row['label']} ({len(row['pairs'])}) | " + " | ".join(cells) + " |")
    lines += ["", f"`{command}`", ""]
    return "\n".join(lines)


def plot_recovery(out: Path, aggs: list[dict]) -> Path | None:
    """RCmean of hot lesions vs diameter, one line per row (mean over pairs per bin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(aggs), figsize=(5.5 * len(aggs), 4), squeeze=False)
    for ax, agg in zip(axes[0], aggs, strict=True):
        for row in agg["rows"]:
            curves = list(row["recovery"].values())
            centres = [(b["diameter_lo_mm"] + b["diameter_hi_mm"]) / 2 for b in curves[0]]
            values = [np.mean([c[i]["rc_mean"] for c in curves if c[i]["rc_mean"] is not None])
                      if any(c[i]["rc_mean"] is not None for c in curves) else np.nan
                      for i in range(len(centres))]
            ax.plot(centres, values, marker="o", label=row["label"][:40])
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("lesion diameter (mm)")
        ax.set_ylabel("RCmean (measured / true activity)")
        ax.set_title(f"{agg['backbone']}: hot lesions")
        ax.legend(fontsize=7)
    fig.tight_layout()
    from napari_petite.io.atomic import atomic_path

    path = out / "recovery_vs_diameter.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def command(args) -> str:
    parts = ["python", "benchmarks/bench_fidelity.py", "--backbones", args.backbones,
             "--pairs", args.pairs, "--steps", str(args.steps), "--seed", str(args.seed)]
    if args.faithful != "--recipe faithful":
        parts += ["--faithful", args.faithful]
    return shlex.join(parts)


def main(argv=None) -> int:
    args = parse_args(argv)
    pairs = common.pairs_of(args.pairs)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    bases = dict(item.split("=", 1) for item in args.base)
    out = Path(args.out).expanduser()
    if not args.aggregate_only:
        data = Path(args.data).expanduser() if args.data else common.DEFAULT_DATA
        common.ensure_data(data, sorted({t for _, t in pairs}))  # the bases stand for the sources
        testset = ensure_testset(args, sorted({t for _, t in pairs}))
        for backbone in backbones:
            for source, target in pairs:
                run_pair(args, backbone, bases.get(backbone), source, target, data, testset,
                         out)
    aggs = []
    for backbone in backbones:
        agg = aggregate(out, backbone, pairs)
        if agg is None:
            continue
        agg["command"] = command(args)
        common.write_json(out / f"fidelity_{backbone}.json", common.clean(agg))
        from napari_petite.io.atomic import write_text

        write_text(out / f"fidelity_{backbone}.md", to_markdown(agg, agg["command"]),
                   overwrite=True)
        aggs.append(agg)
    if aggs:
        plot_recovery(out, aggs)
        print(f"written {out}/fidelity_*.json, .md and recovery_vs_diameter.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
