"""Write a multi-scanner sample dataset in the dataset layout of the README, all or nothing.

``<root>/<scanner-id>/scanner.json`` and ``<root>/<scanner-id>/<subject-id>/`` with
``low.nii.gz``, ``full.nii.gz``, ``truth.nii.gz`` (Bq/mL, same grid), ``labels.nii.gz``
(uint8, same grid) and ``meta.json``; a lesion-insertion set (``lesions=``) adds
``lesions.nii.gz`` (uint8 instance labels: 0 none, k lesion k of meta.json's list).
Everything is written into a hidden sibling folder that
is renamed onto the requested name only when complete (``io.atomic.atomic_dir``), so an
interrupted run never leaves a half dataset under the final name.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from napari_petite import __version__
from napari_petite.errors import ConfigError, OutputError
from napari_petite.io.atomic import atomic_dir, check_folder_destination
from napari_petite.simulate.anatomy import LABELS
from napari_petite.simulate.profiles import ScannerProfile, available_ids, load_profile
from napari_petite.simulate.scan import (
    NOISE_CALIBRATION,
    SIMULATOR_VERSION,
    ScannerSimulator,
    SimulatedScan,
)

SIZES = ("small", "native")


def subject_id(scanner_id: str, index: int) -> str:
    """Subject folder name; the scanner is part of it because every site scans other people."""
    return f"sub-{scanner_id}{index + 1:02d}"


def check_request(scanners: Sequence[str], subjects: int, drf: float | None,
                  size: str) -> list[str]:
    """Validate the options before any work; return the scanner ids (deduplicated, in order)."""
    ids = available_ids()
    chosen = list(dict.fromkeys(s.strip() for s in scanners if s.strip()))
    if not chosen:
        raise ConfigError(f"No scanner ids given; choose from {', '.join(ids)}.")
    unknown = [s for s in chosen if s not in ids]
    if unknown:
        raise ConfigError(f"Unknown scanner id {', '.join(map(repr, unknown))}; choose from "
                          f"{', '.join(ids)}.")
    if not isinstance(subjects, int) or subjects < 1:
        raise ConfigError(f"--subjects must be a whole number >= 1, not {subjects!r}.")
    if drf is not None and (not math.isfinite(drf) or drf < 1):
        raise ConfigError(f"--drf must be a number >= 1 (1 = full count, 6 = 5 of 30 min), "
                          f"not {drf!r}; leave it out to use each site's own protocol.")
    if size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)}, not {size!r}.")
    return chosen


#: bytes one simulated subject takes on disk (four compressed volumes and meta.json), with
#: margin: a native-grid subject is ~10 MB
SUBJECT_BYTES = 32 << 20


def check_output(out: str | os.PathLike, overwrite: bool, subjects: int = 0) -> Path:
    """Refuse a file, a non-empty folder (unless ``overwrite`` and it is a dataset this tool
    wrote), an unwritable location or a disk without room for ``subjects`` subjects."""
    if Path(out).expanduser().is_file():
        raise OutputError(f"{out} is a file; --out must name a folder for the dataset.")
    return check_folder_destination(Path(out).expanduser().absolute(), overwrite=overwrite,
                                    needed=subjects * SUBJECT_BYTES)


def _write_json(path: Path, doc: dict) -> None:
    from napari_petite.io.atomic import write_text

    write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n", overwrite=True)


def _write_labels(path: Path, labels: np.ndarray, affine: np.ndarray,
                  descrip: bytes = b"region labels; names in meta.json") -> None:
    import nibabel as nib

    from napari_petite.io.atomic import atomic_write

    img = nib.Nifti1Image(np.ascontiguousarray(labels.astype(np.uint8).transpose(2, 1, 0)),
                          affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip
    atomic_write(path, lambda tmp: nib.save(img, str(tmp)), overwrite=True)


def write_subject(folder: Path, scan: SimulatedScan, extra_meta: dict | None = None) -> None:
    """Write one subject's four volumes (Bq/mL; uint8 labels) and ``meta.json``."""
    from napari_petite.io.nifti import write_volume

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("low", "full", "truth"):
        write_volume(folder / f"{name}.nii.gz", getattr(scan, name), affine=scan.affine,
                     units="Bq/mL", overwrite=True)
    _write_labels(folder / "labels.nii.gz", scan.labels, scan.affine)
    if scan.lesions is not None:
        _write_labels(folder / "lesions.nii.gz", scan.lesions, scan.affine,
                      b"lesion k = meta.json lesions[k-1]")
    meta = {k: v for k, v in scan.meta.items() if k != "seconds"}
    meta["labels"] = {str(k): v for k, v in LABELS.items()}
    meta.update(extra_meta or {})
    _write_json(folder / "meta.json", meta)


def scanner_document(profile: ScannerProfile, size: str, drf: float | None = None) -> dict:
    """``scanner.json``: the cited profile plus the grid, sampling and dose-reduction factor
    this dataset used (``drf`` given: an override of the site's protocol)."""
    sim = ScannerSimulator(profile, size)
    doc = profile.to_json()
    doc["simulation"] = {
        "size": size,
        "grid": {"shape_zyx": list(sim.grid.shape),
                 "spacing_zyx_mm": [round(s, 6) for s in sim.grid.spacing]},
        "views": sim.rec_geo.n_views,
        "radial_bins": sim.rec_geo.n_bins,
        "tof_bins": sim.rec_geo.n_tof,
        "simulation_oversampling": sim.oversample,
        "noise_calibration": NOISE_CALIBRATION,
        "drf": profile.drf if drf is None else float(drf),
        "drf_source": "site protocol" if drf is None else "override",
        "units": "Bq/mL",
        "generator": f"napari-petite {__version__}",
        "simulator_version": SIMULATOR_VERSION,
    }
    return doc


def _simulate_one(task: tuple) -> dict:
    """Worker: simulate and write one subject; return its summary (runs in a subprocess)."""
    from napari_petite.simulate.scan import simulate_subject

    root, scanner_id, index, seed, size, drf, lesions = task
    t0 = time.perf_counter()
    profile = load_profile(scanner_id)
    scan = simulate_subject(profile, seed=seed, index=index, size=size, drf=drf,
                            lesions=lesions)
    sid = subject_id(scanner_id, index)
    write_subject(Path(root) / scanner_id / sid, scan, {"subject": sid})
    return {"scanner": scanner_id, "subject": sid, "seconds": time.perf_counter() - t0,
            "prompts_full": scan.meta["counts_full"]["prompts"],
            "prompts_low": scan.meta["counts_low"]["prompts"]}


def make_dataset(
    out: str | os.PathLike,
    *,
    scanners: Sequence[str] | None = None,
    subjects: int = 6,
    drf: float | None = None,
    seed: int = 0,
    size: str = "small",
    overwrite: bool = False,
    jobs: int = 1,
    progress: Callable[[dict], None] | None = None,
    lesions: tuple[int, int] | None = None,
) -> dict:
    """Simulate ``subjects`` per scanner and write the dataset at ``out`` (all or nothing).

    ``drf`` overrides every site's protocol dose-reduction factor (``None``: each site's
    own, from its profile). ``lesions`` = (min, max) makes a lesion-insertion set (see
    ``simulate.scan.simulate_subject``); None keeps the default data bit for bit. Returns a
    summary (paths, settings, per-subject seconds and
    counts). ``progress`` is called after each finished subject with its summary.
    """
    ids = check_request(list(scanners) if scanners else available_ids(), subjects, drf, size)
    out = check_output(out, overwrite, subjects * len(ids))
    jobs = max(1, int(jobs))
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite, kind="dataset",
                    needed=subjects * len(ids) * SUBJECT_BYTES) as tmp:
        for sid in ids:
            (tmp / sid).mkdir()
            _write_json(tmp / sid / "scanner.json",
                        scanner_document(load_profile(sid), size, drf))
        tasks = [(str(tmp), sid, i, int(seed), size, None if drf is None else float(drf),
                  lesions) for sid in ids for i in range(subjects)]
        done: list[dict] = []
        if jobs == 1:
            for task in tasks:
                done.append(_simulate_one(task))
                if progress:
                    progress(done[-1])
        else:
            pool = ProcessPoolExecutor(max_workers=jobs)
            try:
                for fut in as_completed([pool.submit(_simulate_one, t) for t in tasks]):
                    done.append(fut.result())
                    if progress:
                        progress(done[-1])
            finally:  # a failure or a stop cancels the rest before the folder is removed
                pool.shutdown(wait=True, cancel_futures=True)
        drfs = {sid: float(drf) if drf is not None else load_profile(sid).drf for sid in ids}
        settings = {"scanners": ids, "subjects": subjects, "drf": drfs,
                    "drf_source": "site protocols" if drf is None else "--drf override",
                    "seed": int(seed), "size": size, "units": "Bq/mL",
                    "simulator_version": SIMULATOR_VERSION,
                    "generator": f"napari-petite {__version__}",
                    "anatomy": "MNI ICBM152 2009a (Fonov et al. 2009, 2011)"}
        if lesions is not None:  # only when asked, so the default dataset.json is unchanged
            settings["lesions"] = list(lesions)
        _write_json(tmp / "dataset.json", settings)
    done.sort(key=lambda d: (d["scanner"], d["subject"]))
    return {"out": str(out), **settings, "seconds": round(time.perf_counter() - t0, 3),
            "subjects_written": done}
