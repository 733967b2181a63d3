"""Check that a built wheel carries what napari and the CLI need at run time.

napari finds the plugin through the ``napari.manifest`` entry point, which points at
``napari_petite/napari.yaml`` inside the wheel; the sample data (scanner profiles, anatomy,
base models) must travel inside the package too.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(wheel: str) -> int:
    names = set(zipfile.ZipFile(wheel).namelist())
    problems = []
    if "napari_petite/napari.yaml" not in names:
        problems.append("napari_petite/napari.yaml (the npe2 manifest) is missing")
    else:
        packed = zipfile.ZipFile(wheel).read("napari_petite/napari.yaml")
        if packed != (ROOT / "napari.yaml").read_bytes():
            problems.append("napari_petite/napari.yaml differs from the repository's napari.yaml")
    entry = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode() if entry else ""
    if "napari_petite:napari.yaml" not in text:
        problems.append("the napari.manifest entry point is missing")
    if "petite = napari_petite.cli:main" not in text:
        problems.append("the petite console script is missing")
    shipped = [p for p in (ROOT / "sample_data").rglob("*") if p.is_file()]
    for path in shipped:
        inside = "napari_petite/sample_data/" + path.relative_to(ROOT / "sample_data").as_posix()
        if inside not in names:
            problems.append(f"{inside} is missing")
    if problems:
        print(f"{wheel}: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"{Path(wheel).name}: manifest, entry points, {len(shipped)} sample-data files present")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
