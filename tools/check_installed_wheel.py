"""Install the built wheel into a fresh virtual environment and use it from there.

``check_wheel.py`` looks inside the wheel; this runs it: the npe2 manifest validates with its
imports, napari's sample-data entry loads through the manifest, and both shipped base models
load from the installed package and run a forward pass. An editable install hides what a
wheel forgets (a file outside the package, a path relative to the repository), so the
project's own source must not be importable here.

The fresh environment reuses the development environment's dependencies (torch, napari, Qt)
by linking them in, so the check takes a minute instead of a download; the development
environment's editable install of this project is left out.

Usage: ``python tools/check_installed_wheel.py dist/napari_petite-*.whl`` (run it with the
development environment's Python).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

#: entries of the development site-packages that belong to this project's editable install
OWN = re.compile(r"napari[_-]petite", re.IGNORECASE)

PROBE = r"""
import json, sys, time
from pathlib import Path

fresh = Path(sys.argv[1]).resolve()
import napari_petite
package = Path(napari_petite.__file__).resolve().parent
assert package.is_relative_to(fresh), f"napari_petite imported from {package}, not the wheel"

from npe2 import PluginManager

manager = PluginManager.instance()
manager.discover()
manifest = manager.get_manifest("napari-petite")
entry = manifest.contributions.sample_data[0]
started = time.perf_counter()
layers = entry.open()
names = [kwargs["name"] for _, kwargs, _ in layers]
assert len(layers) == 3 and all(data.ndim == 3 for data, _, _ in layers), names
sample_s = time.perf_counter() - started

import torch
from napari_petite.training.job import load_base, shipped_base

models = {}
for backbone in ("unetr", "cvtgan"):
    path = shipped_base(backbone)
    assert path.resolve().is_relative_to(package), f"{path} is not inside the installed package"
    model, card, sha = load_base(path, backbone)
    with torch.inference_mode():
        x = torch.rand(1, 1, *model.patch_size)
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all(), backbone
    models[backbone] = {"file": path.name, "sha256": sha[:12], "preset": card["preset"]}
print(json.dumps({"package": str(package), "sample": entry.key, "layers": names,
                  "sample_seconds": round(sample_s, 1), "models": models}))
"""


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        print(f"failed: {' '.join(map(str, cmd))}\n{result.stdout}{result.stderr}",
              file=sys.stderr)
        raise SystemExit(1)
    return result


def main(wheel: str) -> int:
    started = time.perf_counter()
    wheel_path = Path(wheel).resolve()
    dev_site = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory(prefix="petite-wheel-") as tmp:
        fresh = Path(tmp) / "venv"
        _run([sys.executable, "-m", "venv", "--without-pip", fresh])
        python = fresh / "bin" / "python"
        site = Path(_run([python, "-c", "import sysconfig; "
                          "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
        linked = 0
        for entry in dev_site.iterdir():
            if OWN.search(entry.name) or (site / entry.name).exists():
                continue
            (site / entry.name).symlink_to(entry)
            linked += 1
        _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
              wheel_path])
        # outside the repository, so the source tree is not on sys.path; a fresh cache, so
        # the sample entry really simulates with the installed package's data
        env = {**os.environ, "PETITE_CACHE_DIR": str(Path(tmp) / "cache"),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        env.pop("PYTHONPATH", None)
        _run([python, "-m", "npe2", "validate", "napari-petite", "--imports"], cwd=tmp, env=env)
        version = _run([fresh / "bin" / "petite", "--version"], cwd=tmp, env=env).stdout.strip()
        probe = _run([python, "-c", PROBE, fresh], cwd=tmp, env=env).stdout.strip()
    print(f"{wheel_path.name} installed into a fresh venv ({linked} dependencies linked): "
          f"npe2 validate --imports ok; {version}; {probe.splitlines()[-1]}; "
          f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
