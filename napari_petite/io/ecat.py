"""ECAT 7 (``.v``) PET volumes, read with ``nibabel.ecat``.

The CTI/Siemens ECAT 7 format is what the ADNI-era scanners wrote (ECAT HR+, HRRT,
Accel), so older multi-site data arrives as ``.v`` files: a main header, then per time frame
a subheader and its voxels. nibabel parses the headers and the voxels; the rules for what the
numbers mean are applied here, from the headers themselves:

- a voxel's value is its stored integer times the frame subheader's ``scale_factor``, times
  the main header's ``ecat_calibration_factor`` when ``calibration_units`` says the file is
  *calibrated* (1); a *processed* file (2) already holds ``data_units``, an uncalibrated one
  (0) holds ECAT counts, which no SUV or Bq/mL reading can use;
- ``data_units`` (free text: ``Bq/cc``, ``kBq/cc``, ``nCi/cc``...) is turned into Bq/mL;
- each frame's start and duration (ms in the subheader) and its decay-correction factor are
  kept, so a dynamic file becomes a training pair (:mod:`napari_petite.io.dynamic`);
- the geometry is nibabel's affine (voxel sizes in cm in the subheader, turned into mm), in
  the voxel order nibabel returns for the file's ``patient_orientation``.

SUV is not computed: the main header's dose field has no unit the format fixes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_petite.errors import InputError
from napari_petite.io.memory import check_fits_in_memory
from napari_petite.io.nifti import Volume, spacing_from_affine

#: the first bytes of an ECAT 7 file ("MATRIX72v", "MATRIX7011"...)
MAGIC = b"MATRIX7"
#: main header ``calibration_units`` codes
UNCALIBRATED, CALIBRATED, PROCESSED = 0, 1, 2
#: ``data_units`` text (lower case, spaces removed) -> factor to Bq/mL
TO_BQML = {"bq/cc": 1.0, "bq/ml": 1.0, "kbq/cc": 1e3, "kbq/ml": 1e3, "mbq/cc": 1e6,
           "mbq/ml": 1e6, "nci/cc": 37.0, "nci/ml": 37.0, "uci/cc": 3.7e4, "uci/ml": 3.7e4,
           "µci/cc": 3.7e4, "µci/ml": 3.7e4}
SUV_REASON = ("ECAT 7 headers give the injected dose without a unit the format fixes, so SUV "
              "is not computed; give a suv_factor in a NIfTI sidecar if it is needed.")


def is_ecat(path: str | os.PathLike) -> bool:
    """A file that starts with the ECAT 7 magic number (whatever its name)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


@dataclass
class EcatFrames:
    """Every frame of an ECAT 7 file: ``frames`` float32 (t, z, y, x) sorted by start,
    starts and durations in seconds, and the per-frame decay-correction factors."""

    frames: np.ndarray
    starts_s: np.ndarray
    durations_s: np.ndarray
    decay_factors: np.ndarray
    template: Volume


def _text(value) -> str:
    raw = np.asarray(value).item()
    return (raw.decode("latin-1", "replace") if isinstance(raw, bytes) else str(raw)) \
        .strip("\x00 ").strip()


def _load(path: Path):
    import warnings

    import nibabel as nib

    try:
        with warnings.catch_warnings():  # frames stored out of time order: sorted below
            warnings.filterwarnings("ignore", "Frames stored out of order")
            img = nib.ecat.load(str(path))
        subheaders = img.get_subheaders()
        _ = subheaders.subheaders[0]
    except Exception as err:  # nibabel raises many types for damaged files
        reason = " ".join(str(err).split()).rstrip(".") or type(err).__name__
        raise InputError(f"{path.name} looks like ECAT 7 but cannot be read ({reason}); the "
                         "file is truncated or damaged, so copy it again.") from None
    return img, subheaders


def _units(header, path: Path) -> tuple[str | None, float, str]:
    """(units, factor to those units from calibrated values, the rule applied)."""
    code = int(np.asarray(header["calibration_unitS"]).item())  # nibabel's spelling
    text = _text(header["data_units"])
    if code == UNCALIBRATED:
        return "ECAT counts", 1.0, "uncalibrated (calibration_units 0): ECAT counts"
    factor = TO_BQML.get(text.lower().replace(" ", ""))
    if factor is None:
        return text or None, 1.0, (f"data_units {text!r} not known as an activity "
                                   "concentration: values kept as stored")
    return "Bq/mL", factor, f"data_units {text!r} x {factor:g} = Bq/mL"


def read_frames(path: str | os.PathLike) -> EcatFrames:
    """Read every frame of an ECAT 7 file with the calibration its headers describe.

    Raises
    ------
    InputError
        with one sentence: unreadable file, frames on different grids, NaN/Inf values, too
        little memory.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path} does not exist; check the path.")
    img, subheaders = _load(path)
    header = img.header
    n = len(subheaders.subheaders)
    shapes = {subheaders.get_shape(i) for i in range(n)}
    if len(shapes) > 1:
        raise InputError(f"The frames of {path.name} have different grids ({sorted(shapes)}); "
                         "every frame of one scan must cover the same voxels.")
    nx, ny, nz = next(iter(shapes))
    check_fits_in_memory(n * nx * ny * nz * 4 * 2, f"Reading {path.name} ({n} frames of "
                         f"{nz}x{ny}x{nx} voxels)", "use a machine with more memory.")
    code = int(np.asarray(header["calibration_unitS"]).item())
    calibration = float(np.asarray(header["ecat_calibration_factor"]).item()) \
        if code == CALIBRATED else 1.0
    units, to_units, rule = _units(header, path)
    frames = np.empty((n, nz, ny, nx), dtype=np.float32)
    for i in range(n):
        sub = subheaders.subheaders[i]
        scale = float(sub["scale_factor"]) * calibration * to_units
        raw = np.asarray(subheaders.raw_data_from_fileobj(i), dtype=np.float64)
        frames[i] = (raw * scale).transpose(2, 1, 0)
    if not np.all(np.isfinite(frames)):
        raise InputError(f"{path.name} holds NaN or infinite values after calibration; the "
                         "file is damaged, so export it again from the scanner.")
    subs = subheaders.subheaders
    starts = np.array([float(s["frame_start_time"]) / 1000.0 for s in subs])
    durations = np.array([float(s["frame_duration"]) / 1000.0 for s in subs])
    decay = np.array([float(s["decay_corr_fctr"]) for s in subs])
    order = np.argsort(starts, kind="stable")
    frames, starts, durations, decay = frames[order], starts[order], durations[order], \
        decay[order]
    affine = np.asarray(subheaders.get_frame_affine(int(order[0])), dtype=np.float64)
    extra = {"format": "ecat", "suv_factor": None, "suv_reason": SUV_REASON,
             "ecat": {"calibration": rule, "calibration_units": code,
                      "ecat_calibration_factor": calibration,
                      "isotope": _text(header["isotope_name"]),
                      "radiopharmaceutical": _text(header["radiopharmaceutical"]),
                      "frame_starts_s": starts.tolist(), "frame_durations_s": durations.tolist(),
                      "decay_factors": decay.tolist()}}
    template = Volume(data=frames[0], spacing=spacing_from_affine(affine), affine=affine,
                      units=units, header=None, path=path, extra=extra)
    return EcatFrames(frames=frames, starts_s=starts, durations_s=durations,
                      decay_factors=decay, template=template)


def read_ecat(path: str | os.PathLike) -> Volume:
    """A static ECAT 7 file (one frame) as a :class:`Volume`; a dynamic one is refused with
    what to do instead."""
    ecat = read_frames(path)
    n = ecat.frames.shape[0]
    if n > 1:
        raise InputError(f"{Path(path).name} is a dynamic ECAT scan with {n} time frames, not "
                         "one static volume; turn it into a low/full pair with `petite "
                         "make-pairs` (or Add a subject from a dynamic scan…).")
    return ecat.template
