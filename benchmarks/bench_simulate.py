"""Simulator speed and realism per scanner profile, at ``small`` and ``native`` size.

For each profile and size, simulates ``--subjects`` subjects (seeded like
``petite make-sample-data``) and prints: seconds per subject (minimum and median; the first
subject of a profile also builds or loads the cached system matrices, reported separately),
full-dose deep-white-matter CoV (the clinical noise figure, target ~8-15 %), the low-count
CoV, and the PSNR of low vs full and of full vs truth (UDPET definition, whole volume).
Optionally (``--dataset``) times the whole default command: 5 scanners x 6 subjects, small.

On a machine shared with other jobs the wall times are noisy; the minimum is the figure to
quote. numpy/scipy here run single-threaded, so ``--jobs 2`` is how two cores are used.

Usage::

    python benchmarks/bench_simulate.py                       # small, 2 subjects per scanner
    python benchmarks/bench_simulate.py --sizes small,native --subjects 1
    python benchmarks/bench_simulate.py --dataset --jobs 2    # the 5 x 6 default dataset
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def bench_profile(scanner: str, size: str, subjects: int, seed: int) -> dict:
    from napari_petite.simulate.profiles import load_profile
    from napari_petite.simulate.quality import psnr, wm_cov
    from napari_petite.simulate.scan import ScannerSimulator, simulate_subject

    profile = load_profile(scanner)
    sim = ScannerSimulator(profile, size)
    t0 = time.perf_counter()
    _ = sim.rec_projector.matrix_t, sim.sim_projector.matrix  # build or load the matrices
    setup = time.perf_counter() - t0
    rows = []
    for index in range(subjects):
        t0 = time.perf_counter()
        scan = simulate_subject(profile, seed=seed, index=index, size=size)
        seconds = time.perf_counter() - t0
        rows.append({
            "seconds": seconds,
            "cov_full": wm_cov(scan.full, scan.labels, scan.spacing),
            "cov_low": wm_cov(scan.low, scan.labels, scan.spacing),
            "psnr_low_full": psnr(scan.full, scan.low),
            "psnr_full_truth": psnr(scan.truth, scan.full),
            "prompts_full": scan.meta["counts_full"]["prompts"],
        })

    def med(key):
        return statistics.median(r[key] for r in rows)

    return {
        "scanner": scanner, "size": size, "grid": list(sim.grid.shape),
        "spacing_mm": [round(s, 3) for s in sim.grid.spacing], "tof_bins": sim.rec_geo.n_tof,
        "matrix_setup_s": setup, "seconds_min": min(r["seconds"] for r in rows),
        "seconds_median": med("seconds"), "cov_full": med("cov_full"), "cov_low": med("cov_low"),
        "psnr_low_full": med("psnr_low_full"), "psnr_full_truth": med("psnr_full_truth"),
        "prompts_full": med("prompts_full"), "subjects": subjects,
    }


def bench_dataset(jobs: int, seed: int) -> dict:
    from napari_petite.simulate.dataset import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = make_dataset(Path(tmp) / "ds", subjects=6, seed=seed, jobs=jobs)
        seconds = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "ds").rglob("*")
                      if p.is_file()) / 1e6
    return {"seconds": seconds, "subjects": len(summary["subjects_written"]), "jobs": jobs,
            "size_mb": size_mb}


def main(argv: list[str] | None = None) -> int:
    from napari_petite.simulate.profiles import available_ids

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small", help="comma-separated: small,native")
    parser.add_argument("--scanners", default=",".join(available_ids()))
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", action="store_true",
                        help="also time make-sample-data for 5 scanners x 6 subjects (small)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    results = []
    head = (f"{'scanner':10s} {'size':6s} {'grid z,y,x':>14s} {'tof':>3s} {'setup s':>7s} "
            f"{'s/subj min':>10s} {'median':>6s} {'CoV full':>8s} {'CoV low':>7s} "
            f"{'PSNR low-full':>13s} {'PSNR full-truth':>15s}")
    print(head)
    for size in args.sizes.split(","):
        for scanner in args.scanners.split(","):
            r = bench_profile(scanner, size, args.subjects, args.seed)
            results.append(r)
            grid = "x".join(str(v) for v in r["grid"])
            print(f"{scanner:10s} {size:6s} {grid:>14s} {r['tof_bins']:>3d} "
                  f"{r['matrix_setup_s']:7.1f} {r['seconds_min']:10.1f} "
                  f"{r['seconds_median']:6.1f} {100 * r['cov_full']:7.1f}% "
                  f"{100 * r['cov_low']:6.1f}% {r['psnr_low_full']:13.2f} "
                  f"{r['psnr_full_truth']:15.2f}", flush=True)
    out = {"profiles": results}
    if args.dataset:
        d = bench_dataset(args.jobs, args.seed)
        out["dataset"] = d
        print(f"make-sample-data 5 scanners x 6 subjects (small, --jobs {d['jobs']}): "
              f"{d['seconds']:.0f} s, {d['size_mb']:.1f} MB")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
