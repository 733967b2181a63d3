"""Helpers the benchmark scripts share: where results go, JSON in and out, the machine record.

Every benchmark writes one JSON file under ``benchmarks/results`` (or ``--out``) that
``summary.py`` reads; they are written atomically so an interrupted run never leaves half a
file that the summary would then misread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the committed results folder
RESULTS = Path(__file__).resolve().parent / "results"
#: the repository root (benchmarks/..)
ROOT = RESULTS.parent.parent
#: where the benchmarks simulate the sample dataset when no --data is given
DEFAULT_DATA = Path("~/.cache/napari-petite/bench-dataset").expanduser()


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically (NaN is written as null)."""
    from napari_petite.io.atomic import write_text

    return write_text(Path(path), json.dumps(clean(payload), indent=2) + "\n", overwrite=True)


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def clean(value: Any) -> Any:
    """Replace NaN / inf by None (strict JSON) all the way down."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def mean_sd(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and count of the finite values (None when empty)."""
    xs = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return {"mean": statistics.fmean(xs) if xs else None,
            "sd": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}


def command_line() -> str:
    """How this script was invoked, relative to the repository when possible."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they are only comparable on the same machine)."""
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": load,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a child process limited to ``threads`` intra-op threads."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def run_json(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> Any:
    """Run ``cmd``; return the JSON it printed on stdout (stderr passes through).

    Raises RuntimeError with the end of the output when it fails.
    """
    done = subprocess.run(list(cmd), stdout=subprocess.PIPE, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} exited with {done.returncode}: "
                           f"{done.stdout[-1500:]}")
    text = done.stdout.strip()
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise RuntimeError(f"{shlex.join(cmd)} printed no JSON: {text[-1500:]}")
    return json.loads(text[start:])


def pair_parser(doc: str, backbones, pairs) -> argparse.ArgumentParser:
    """A script's parser from its docstring, with ``--backbones`` and ``--pairs``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(doc.splitlines()[1:]))
    p.add_argument("--backbones", default=",".join(backbones), help="comma-separated")
    p.add_argument("--pairs", default=",".join(pairs), help="comma-separated SOURCE:TARGET")
    return p


def pairs_of(text: str) -> list[tuple[str, str]]:
    """``"mct:vision,mct:dmi"`` -> [("mct", "vision"), ("mct", "dmi")] (``--pairs``)."""
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        source, sep, target = item.partition(":")
        if not sep or not source or not target:
            raise SystemExit(f"--pairs item {item!r} must look like SOURCE:TARGET")
        out.append((source, target))
    return out


def ensure_data(data: Path, scanners: Sequence[str]) -> None:
    """Simulate the sample dataset (``petite make-sample-data --size small``) into ``data``
    when it is missing or was made by another simulator version; refuse a user's folder
    (not :data:`DEFAULT_DATA`) that is stale or lacks one of ``scanners``."""
    from napari_petite.simulate.scan import SIMULATOR_VERSION

    needed = sorted(set(scanners))
    made = (read_json(data / "dataset.json") or {}).get("simulator_version")
    stale = made is not None and made != SIMULATOR_VERSION
    if all((data / s).is_dir() for s in needed) and not stale:
        return
    if data.exists() and any(data.iterdir()) and data != DEFAULT_DATA:
        why = (f"was simulated by simulator version {made}, not {SIMULATOR_VERSION}" if stale
               else f"lacks scanner(s) {needed}")
        raise SystemExit(f"{data} {why}; pass --data with a current dataset of all of them.")
    cmd = [sys.executable, "-m", "napari_petite.cli", "make-sample-data", "--out", str(data),
           "--size", "small", "--scanners", ",".join(needed), "--jobs", "2", "--overwrite"]
    print("simulating the dataset:", shlex.join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def wait_until(app, cond, timeout: float = 600.0) -> None:
    """Run the Qt event loop of ``app`` until ``cond()`` holds (GUI benchmarks)."""
    t0 = time.monotonic()
    while not cond():
        app.processEvents()
        time.sleep(0.002)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("gave up waiting")
