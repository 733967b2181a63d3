"""Dynamic PET scans -> a low-count / full-count training pair of one subject.

Fine-tuning on a new scanner needs pairs of the *same* acquisition at two count levels. A
dynamic (framed) scan already holds them: the first minutes are a low-count image, the whole
scan the full-count one, exactly as the PETITE paper builds its pairs (docs/paper.md). Each
frame is in Bq/mL, normalised by its own duration and decay-corrected to one reference
time, so the image of a time window is the duration-weighted mean of the frames inside it
(what summing the list-mode data over that window and reconstructing would give).

Only whole frames are used and the frames of a window must follow each other without a
gap: a window with a hole or overlapping frames would not be the image of that time, and a
pair built from it would teach the network the wrong count level.

A dynamic scan comes as a 4D NIfTI with its BIDS sidecar (``FrameTimesStart`` and
``FrameDuration`` in seconds, optional ``Units``), as an ECAT 7 file (frame start and
duration in each frame's subheader, :mod:`napari_petite.io.ecat`) or as a DICOM PET series
with several time frames (classic files with NumberOfTimeSlices / ImageIndex, or Enhanced PET
multi-frame).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_petite.errors import ConfigError, InputError
from napari_petite.io.atomic import atomic_dir, check_folder_destination, write_text
from napari_petite.io.memory import check_fits_in_memory
from napari_petite.io.nifti import (
    Volume,
    is_nifti,
    nifti_voxels,
    open_nifti,
    sidecar_path,
    spacing_from_affine,
    write_volume,
)

#: frame boundaries closer than this (seconds) count as touching: DICOM times are rounded
TIME_TOL_S = 0.5
#: the PETITE paper's windows, in seconds from the first frame's start
LOW_WINDOW = (0.0, 300.0)
FULL_WINDOW = (0.0, 1800.0)


@dataclass
class Dynamic:
    """A framed scan: ``frames`` float32 (t, z, y, x), sorted by start time.

    ``starts_s`` and ``durations_s`` are per frame, in seconds (from the file's time zero
    for NIfTI, from the first frame's start for DICOM); ``template`` is a 3D Volume with the
    grid, units and ``extra`` (SUV factor, provenance) every frame shares.
    """

    frames: np.ndarray
    starts_s: np.ndarray
    durations_s: np.ndarray
    template: Volume
    path: Path

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


# -- reading ---------------------------------------------------------------------------------
def _sorted(frames: np.ndarray, starts: np.ndarray, durations: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(starts, kind="stable")
    if np.all(order == np.arange(len(order))):
        return frames, starts, durations
    return frames[order], starts[order], durations[order]


def _timing_list(meta: dict, key: str, side: Path) -> np.ndarray:
    values = meta.get(key)
    ok = isinstance(values, list) and values and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in values)
    if not ok:
        raise InputError(f'"{key}" in {side.name} must be a list of numbers (seconds), one per '
                         "frame, so the timing of the frames is known.")
    return np.asarray(values, dtype=np.float64)


def _read_nifti(path: Path) -> Dynamic:
    side = sidecar_path(path)
    if not side.is_file():
        raise InputError(f"{path.name} has no BIDS sidecar {side.name} giving FrameTimesStart "
                         "and FrameDuration; add it so the timing of the frames is known.")
    from napari_petite.io.jsonfile import read_json

    meta = read_json(side, what=f"The sidecar {side}",
                     hint="it must be an object with FrameTimesStart and FrameDuration")
    starts = _timing_list(meta, "FrameTimesStart", side)
    durations = _timing_list(meta, "FrameDuration", side)
    units = meta.get("Units")
    if units is not None and not isinstance(units, str):
        raise InputError(f'"Units" in {side.name} must be a string such as "Bq/mL".')

    img, shape, disk_dtype = open_nifti(path)
    if len(shape) != 4 or shape[3] < 2:
        raise InputError(f"{path.name} has shape {shape}, not 4D with several time frames; a "
                         "dynamic scan is needed to make a low/full pair.")
    if len(starts) != shape[3] or len(durations) != shape[3]:
        raise InputError(f"{side.name} gives {len(starts)} frame starts and {len(durations)} "
                         f"durations for the {shape[3]} frames of {path.name}; give one of each "
                         "per frame.")
    raw = nifti_voxels(img, path, shape, disk_dtype)
    frames = np.ascontiguousarray(np.asarray(raw, dtype=np.float32).transpose(3, 2, 1, 0))
    del raw
    if not np.all(np.isfinite(frames)):
        raise InputError(f"{path.name} holds NaN or infinite voxels; replace them (e.g. with 0) "
                         "first.")
    frames, starts, durations = _sorted(frames, starts, durations)
    affine = np.asarray(img.affine, dtype=np.float64)
    factor, reason = (1.0, None) if units == "SUV" else (
        None, f"The sidecar {side.name} gives no SUV information, so SUV is unknown.")
    template = Volume(data=frames[0], spacing=spacing_from_affine(affine), affine=affine,
                      units=units or None, header=None, path=path,
                      extra={"format": "nifti", "suv_factor": factor, "suv_reason": reason})
    return Dynamic(frames=frames, starts_s=starts, durations_s=durations, template=template,
                   path=path)


def _read_dicom(path: Path, series_uid: str | None) -> Dynamic:
    from napari_petite.io.dicom import (
        describe,
        frames_per_file,
        load_frames,
        read_bytes,
        select_series,
        series_frames,
        stack_frames,
    )

    _, members = select_series(path, series_uid)
    frames = series_frames(members)
    # one way of telling frames apart for the whole series: an explicit time index (ImageIndex
    # with NumberOfTimeSlices, TemporalPositionIndex), else the frame's reference time or start
    for attribute in ("time_index", "reference_ms", "acquired"):
        if all(getattr(f, attribute) is not None for f in frames):
            break
    else:
        raise InputError(f"Some images of {path} have no frame timing (a time index, "
                         "FrameReferenceTime or AcquisitionTime), so its time frames cannot be "
                         "told apart.")
    groups: dict[Any, list] = {}
    for frame in frames:
        groups.setdefault(getattr(frame, attribute), []).append(frame)
    if len(groups) < 2:
        raise InputError(f"{path} is a static series (one time frame); a dynamic scan with "
                         "several frames is needed to make a low/full pair.")
    stacks = [stack_frames(groups[key], path) for key in sorted(groups)]
    first = stacks[0]
    for k, stack in enumerate(stacks[1:], 2):
        if stack.shape != first.shape or not np.allclose(stack.affine, first.affine, atol=1e-3):
            raise InputError(f"Time frame {k} of {path} is not on the grid of the first frame; "
                             "every frame of a dynamic series must cover the same slices.")
    starts, durations = [], []
    for k, stack in enumerate(stacks, 1):
        durs = [f.duration_ms for f in stack.frames if f.duration_ms is not None]
        if not durs or min(durs) <= 0:
            raise InputError(f"Time frame {k} of {path} has no positive ActualFrameDuration "
                             "(0018,1242), so its share of the scan is unknown.")
        duration = float(np.median(durs)) / 1000.0
        acquired = [f.acquired for f in stack.frames if f.acquired is not None]
        refs = [f.reference_ms for f in stack.frames if f.reference_ms is not None]
        if acquired:
            starts.append(min(acquired))
        elif refs:  # the decay-weighted middle of the frame: its start is about half before
            starts.append(float(np.median(refs)) / 1000.0 - duration / 2.0)
        else:
            raise InputError(f"Time frame {k} of {path} has neither AcquisitionTime nor "
                             "FrameReferenceTime, so its start is unknown.")
        durations.append(duration)
    kinds = {type(s) for s in starts}
    if len(kinds) > 1:
        raise InputError(f"Only some time frames of {path} have an AcquisitionTime, so their "
                         "starts cannot be compared.")
    if isinstance(starts[0], float):
        start_s = np.asarray(starts, dtype=np.float64)
    else:
        zero = min(starts)
        start_s = np.asarray([(s - zero).total_seconds() for s in starts], dtype=np.float64)
    nt = len(stacks)
    nz, rows, cols = first.shape
    check_fits_in_memory(read_bytes(nt * nz, rows, cols, frames_per_file(members)),
                         f"Reading the dynamic series {path.name} ({nt} frames of "
                         f"{nz}x{rows}x{cols} voxels)",
                         "use a machine with more memory or export fewer frames.")
    data = np.empty((nt, nz, rows, cols), dtype=np.float32)
    units, _, extra = describe(first)
    for t, stack in enumerate(stacks):
        frame_units, scales, _ = describe(stack)
        if frame_units != units:
            raise InputError(f"Time frame {t + 1} of {path} is in {frame_units}, the first in "
                             f"{units}; the frames of one scan must share their units.")
        load_frames(stack.frames, data[t], scales)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path} holds NaN or infinite values after rescaling; export the "
                         "series again from the scanner.")
    data, start_s, dur_s = _sorted(data, start_s, np.asarray(durations, dtype=np.float64))
    template = Volume(data=data[0], spacing=first.spacing, affine=first.affine, units=units,
                      header=None, path=path, extra=extra)
    return Dynamic(frames=data, starts_s=start_s, durations_s=dur_s, template=template,
                   path=path)


def _read_ecat(path: Path) -> Dynamic:
    from napari_petite.io.ecat import read_frames

    ecat = read_frames(path)
    if ecat.frames.shape[0] < 2:
        raise InputError(f"{path.name} is a static ECAT scan (one time frame); a dynamic scan "
                         "with several frames is needed to make a low/full pair.")
    return Dynamic(frames=ecat.frames, starts_s=ecat.starts_s, durations_s=ecat.durations_s,
                   template=ecat.template, path=path)


def read_dynamic(path: str | os.PathLike, series_uid: str | None = None) -> Dynamic:
    """Read a dynamic PET scan: a 4D NIfTI with its BIDS sidecar, an ECAT 7 file (frame
    timing from its subheaders), or a DICOM PET series (folder or multi-frame file) with
    several time frames; frames come sorted by start.

    Raises
    ------
    InputError
        with one sentence: missing sidecar or timing, not 4D / a single frame, frames on
        different grids, unreadable data, too little memory.
    """
    from napari_petite.io.dicom import is_dicom_path
    from napari_petite.io.ecat import is_ecat

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    if path.is_file() and is_nifti(path):
        return _read_nifti(path)
    if is_ecat(path):
        return _read_ecat(path)
    if is_dicom_path(path):
        return _read_dicom(path, series_uid)
    raise InputError(f"{path} is neither a 4D NIfTI (.nii, .nii.gz), an ECAT 7 file (.v) nor "
                     "a DICOM PET series; choose a dynamic scan in one of those formats.")


# -- the pair --------------------------------------------------------------------------------
def _window(value: Any, name: str) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in value)
    except (TypeError, ValueError):
        start = end = float("nan")
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise ConfigError(f"The {name} window must be (start, end) in seconds from the first "
                          f"frame's start, with 0 <= start < end; got {value!r}.")
    return start, end


def check_timing(dyn: Dynamic) -> None:
    """Refuse frames without a positive duration, or overlapping one another."""
    starts, durations = dyn.starts_s, dyn.durations_s
    name = dyn.path.name
    if len(starts) != dyn.n_frames or len(durations) != dyn.n_frames:
        raise InputError(f"{name} has {dyn.n_frames} frames but timing for {len(starts)}; give "
                         "a start and a duration per frame.")
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(durations))):
        raise InputError(f"{name} lacks the timing of some frames (start or duration missing); "
                         "fix the frame times.")
    bad = np.nonzero(durations <= 0)[0]
    if bad.size:
        k = int(bad[0])
        raise InputError(f"Frame {k + 1} of {name} lasts {durations[k]:g} s; every frame needs a "
                         "positive duration, so fix the frame durations.")
    ends = starts + durations
    overlap = np.nonzero(ends[:-1] - starts[1:] > TIME_TOL_S)[0]
    if overlap.size:
        k = int(overlap[0])
        raise InputError(f"Frames {k + 1} and {k + 2} of {name} overlap (frame {k + 1} ends at "
                         f"{ends[k]:.1f} s, frame {k + 2} starts at {starts[k + 1]:.1f} s); the "
                         "frame timing is wrong, so fix the frame start times and durations.")


def _frames_in(dyn: Dynamic, window: tuple[float, float], name: str) -> list[int]:
    rel = dyn.starts_s - dyn.starts_s[0]
    ends = rel + dyn.durations_s
    start, end = window
    inside = [int(k) for k in np.nonzero((rel >= start - TIME_TOL_S)
                                         & (ends <= end + TIME_TOL_S))[0]]
    if not inside:
        spans = ", ".join(f"{a:g}-{b:g}" for a, b in zip(rel[:4], ends[:4], strict=True))
        more = ", ..." if len(rel) > 4 else ""
        raise InputError(f"No whole frame of {dyn.path.name} lies inside the {name} window "
                         f"{start:g}-{end:g} s (frames span {spans}{more} s); choose a window "
                         "that covers whole frames.")
    for a, b in itertools.pairwise(inside):
        if rel[b] - ends[a] > TIME_TOL_S:
            raise InputError(f"The {name} window {start:g}-{end:g} s of {dyn.path.name} has a "
                             f"gap between frames {a + 1} and {b + 1} ({ends[a]:g}-"
                             f"{rel[b]:g} s without data); choose a window without gaps.")
    return inside


def _mean(dyn: Dynamic, frames: list[int]) -> np.ndarray:
    weights = dyn.durations_s[frames]
    acc = np.zeros(dyn.frames.shape[1:], dtype=np.float64)
    for k, w in zip(frames, weights, strict=True):
        acc += dyn.frames[k] * float(w)
    return (acc / float(weights.sum())).astype(np.float32)


def _summary(dyn: Dynamic, frames: list[int], window: tuple[float, float]) -> dict[str, Any]:
    rel = dyn.starts_s - dyn.starts_s[0]
    return {"window_s": list(window), "frames": frames,
            "start_s": float(rel[frames[0]]),
            "end_s": float(rel[frames[-1]] + dyn.durations_s[frames[-1]]),
            "duration_s": float(dyn.durations_s[frames].sum())}


def _sources(dyn: Dynamic) -> list[Path]:
    files = [Path(f) for f in dyn.template.extra.get("dicom", {}).get("files", [])]
    return [dyn.path, *files]


def make_pair(
    dyn: Dynamic,
    subject_folder: str | os.PathLike,
    *,
    low: tuple[float, float] = LOW_WINDOW,
    full: tuple[float, float] = FULL_WINDOW,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``low.nii.gz``, ``full.nii.gz`` and ``meta.json`` of one subject from a dynamic
    scan; returns what ``meta.json`` holds (frame indices there count from 0).

    ``low`` and ``full`` are windows in seconds from the first frame's start; each image is
    the duration-weighted mean of the whole frames inside its window. The subject folder is
    written whole or not at all and never over the scan it comes from.

    Raises
    ------
    InputError
        frames overlap or lack timing, a window holds no whole frame or has a gap, or both
        windows select the same frames.
    ConfigError
        a window is not ``(start, end)`` with ``0 <= start < end``.
    OutputError
        the folder exists (without ``overwrite``) or holds the input.
    """
    low_w, full_w = _window(low, "low"), _window(full, "full")
    check_timing(dyn)
    low_frames = _frames_in(dyn, low_w, "low")
    full_frames = _frames_in(dyn, full_w, "full")
    if low_frames == full_frames:
        raise InputError(f"The low and full windows select the same frames of {dyn.path.name} "
                         f"({len(low_frames)} frames), so the pair would not differ in counts; "
                         "widen the full window or narrow the low one.")
    dest = Path(subject_folder).expanduser()
    check_folder_destination(dest, inputs=_sources(dyn), overwrite=overwrite)
    template = dyn.template
    meta = {
        "source": str(dyn.path),
        "made_by": "napari-petite make_pair (duration-weighted mean of whole frames)",
        "units": template.units,
        "suv_factor": template.extra.get("suv_factor"),
        "suv_reason": template.extra.get("suv_reason"),
        "frame_starts_s": [float(v) for v in dyn.starts_s],
        "frame_durations_s": [float(v) for v in dyn.durations_s],
        "low": _summary(dyn, low_frames, low_w),
        "full": _summary(dyn, full_frames, full_w),
    }
    low_img, full_img = _mean(dyn, low_frames), _mean(dyn, full_frames)
    with atomic_dir(dest, overwrite=overwrite, inputs=_sources(dyn), kind="subject") as tmp:
        for name, image in (("low", low_img), ("full", full_img)):
            write_volume(tmp / f"{name}.nii.gz", image, affine=template.affine,
                         units=template.units)
        write_text(tmp / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta
