"""``petite info PATH``: describe a NIfTI volume or validate a dataset folder.

The quickest way for a user to learn whether the tool will accept their data, and why not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def register(sub) -> None:
    parser = sub.add_parser(
        "info",
        help="describe a NIfTI volume or check a dataset folder",
        description="Describe a NIfTI volume (shape, voxel size, units, value range) or check "
        "that a dataset folder follows <root>/<scanner>/<subject>/{low,full}.nii.gz; every "
        "problem is listed at once and the exit code is 2 when there is any.",
    )
    parser.add_argument("path", help="a .nii/.nii.gz file or a dataset folder")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _describe_volume(path: Path) -> dict:
    from napari_petite.io.nifti import read_volume

    vol = read_volume(path)
    return {
        "path": str(path),
        "shape_zyx": list(vol.shape),
        "spacing_mm_zyx": [round(s, 6) for s in vol.spacing],
        "units": vol.units,
        "min": float(vol.data.min()),
        "max": float(vol.data.max()),
        "mean": float(vol.data.mean()),
        "affine": np.round(vol.affine, 6).tolist(),
    }


def run(args) -> int:
    from napari_petite.io.dataset import discover

    path = Path(args.path).expanduser()
    info = discover(path).summary() if path.is_dir() else _describe_volume(path)
    if args.json:
        print(json.dumps(info, indent=2))
    elif "scanners" in info:
        print(f"dataset {info['root']}: {len(info['scanners'])} scanners, all subjects valid")
        for sid, sc in info["scanners"].items():
            spacing = "x".join(f"{s:.2f}" for s in sc["spacing_mm"] or [])
            print(f"  {sid:<12} {len(sc['subjects']):>3} subjects  grid {sc['shape']}  "
                  f"voxel {spacing} mm  ({sc['name']})")
    else:
        spacing = " x ".join(f"{s:.4g}" for s in info["spacing_mm_zyx"])
        print(f"{info['path']}\n  shape (z,y,x) {tuple(info['shape_zyx'])}, voxel {spacing} mm, "
              f"units {info['units'] or 'unknown'}\n  values {info['min']:.4g} .. "
              f"{info['max']:.4g} (mean {info['mean']:.4g})")
    return 0
