"""``petite make-sample-data``: simulate a multi-scanner FDG brain dataset offline.

Thin over :func:`napari_petite.simulate.dataset.make_dataset`; options are checked before
any work so a mistake costs nothing, and the dataset appears under ``--out`` only when
complete.
"""

from __future__ import annotations

import argparse
import json
import sys

from napari_petite.commands import _options as opt
from napari_petite.errors import ConfigError


def _scanner_list(text: str) -> list[str]:
    return [s.strip() for s in text.replace(" ", ",").split(",") if s.strip()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-sample-data",
        help="simulate a multi-scanner PET dataset (physics-based, offline)",
        description=(
            "Simulate FDG brain PET exams of MNI ICBM152 anatomy on real scanner profiles "
            "(projection, attenuation, scatter, randoms, Poisson noise, binomial thinning "
            "for the low-count scan, OSEM) and write <out>/<scanner>/<subject>/"
            "{low,full,truth,labels}.nii.gz + meta.json and <out>/<scanner>/scanner.json."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to create")
    p.add_argument("--scanners", default=None, metavar="IDS",
                   help="comma-separated scanner ids (default: all shipped profiles)")
    p.add_argument("--subjects", type=opt.positive_int, default=6, metavar="N",
                   help="subjects per scanner (default 6)")
    p.add_argument("--drf", type=float, default=None, metavar="D",
                   help="dose-reduction factor of the low-count scan for every site, >= 1 "
                   "(default: each site's own protocol, from its scanner profile; the source "
                   "site mct keeps 5 of 30 min = 6)")
    p.add_argument("--seed", type=opt.seed, default=0, metavar="S",
                   help="random seed (default 0)")
    p.add_argument("--size", default="small", metavar="small|native",
                   help="small (default, reduced grids, fast) or native (the profile's grid)")
    p.add_argument("--lesions", default=None, metavar="N|MIN:MAX",
                   help="make a lesion-insertion set: N (or MIN to MAX) spheres of known "
                   "activity per subject, 4-20 mm, hot and cold, in grey and white matter, "
                   "written as lesions.nii.gz and listed in meta.json (default: none; the "
                   "default data stay as they are)")
    p.add_argument("--jobs", type=opt.positive_int, default=1, metavar="N",
                   help="worker processes (default 1; results do not depend on it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_petite.simulate.dataset import check_output, check_request, make_dataset
    from napari_petite.simulate.lesions import parse_count
    from napari_petite.simulate.profiles import available_ids
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {args.jobs}.")
    scanners = _scanner_list(args.scanners) if args.scanners is not None else available_ids()
    ids = check_request(scanners, args.subjects, args.drf, args.size)
    lesions = parse_count(args.lesions)
    check_output(args.out, args.overwrite, len(ids) * args.subjects)
    total = len(ids) * args.subjects
    from tqdm import tqdm

    bar = tqdm(total=total, desc="make-sample-data", unit="subject", file=sys.stderr,
               disable=None)

    def step(info: dict) -> None:
        bar.set_postfix_str(f"{info['scanner']}/{info['subject']}")
        bar.update(1)

    try:
        summary = make_dataset(args.out, scanners=ids, subjects=args.subjects, drf=args.drf,
                               seed=args.seed, size=args.size, overwrite=args.overwrite,
                               jobs=args.jobs, progress=step, lesions=lesions)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        drfs = ", ".join(f"{sid} {d:g}" for sid, d in summary["drf"].items())
        print(f"Wrote {total} subjects (DRF {drfs}; seed {args.seed}, {args.size}) to "
              f"{summary['out']} in {summary['seconds']:.0f} s.")
    return 0
