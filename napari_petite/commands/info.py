"""``petite info PATH``: describe a volume (NIfTI or DICOM PET series) or check a dataset.

The quickest way for a user to learn whether the tool will accept their data, and why not.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser(
        "info",
        help="describe a volume (NIfTI, DICOM PET series) or check a dataset folder",
        description="Describe a volume (shape, voxel size, units, SUV factor, value range): a "
        "NIfTI file, a DICOM PET series folder or a multi-frame DICOM file; or check that a "
        "dataset folder follows <root>/<scanner>/<subject>/{low,full}; every problem is "
        "listed at once and the exit code is 2 when there is any.",
    )
    parser.add_argument("path", help="a .nii/.nii.gz file, an ECAT 7 .v file, a DICOM series "
                        "folder or .dcm file, or a dataset folder")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="the SeriesInstanceUID to read when a DICOM folder holds several")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_petite.io.dataset import discover, looks_like_dataset
    from napari_petite.io.volumes import describe, is_volume_path, read_any

    path = Path(args.path).expanduser()
    if path.is_dir() and (looks_like_dataset(path) or not is_volume_path(path)):
        info = discover(path, strict=True).summary()
    else:
        info = describe(read_any(path, series=args.series))
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
        suv = f"SUV factor {info['suv_factor']:.6g} (SUV = value x factor)" \
            if info["suv_factor"] else f"no SUV: {info['suv_reason'] or 'no SUV factor known'}"
        print(f"{info['path']} ({info['format']})\n  shape (z,y,x) {tuple(info['shape_zyx'])}, "
              f"voxel {spacing} mm, units {info['units'] or 'unknown'}\n  {suv}\n  values "
              f"{info['min']:.4g} .. {info['max']:.4g} (mean {info['mean']:.4g})")
    return 0
