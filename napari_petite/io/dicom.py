"""DICOM PET series in napari's (z, y, x) order, with geometry, units and the SUV factor.

Clinical PET leaves the scanner as DICOM: a folder of one file per slice (or one Enhanced PET
multi-frame file), often mixed with the CT of the same study. Reading one turns it into the
same :class:`~napari_petite.io.nifti.Volume` a NIfTI gives, so the models, the docks and the
exporters need not know where a volume came from.

What makes this harder than stacking files:

- the file order and InstanceNumber say nothing reliable about where a slice is; slices are
  sorted by their position along the slice normal, ``cross(row, column)`` of
  ImageOrientationPatient, and the spacing comes from those positions (SliceThickness is the
  slice *sensitivity* width and may differ);
- a missing file, two series in one folder, mixed orientations or a sheared stack would give
  a volume whose voxels are not where the affine says; each is refused with a sentence;
- PET stores small integers with a RescaleSlope that changes from slice to slice, so the
  slope is applied per slice;
- DICOM patient space is LPS while NIfTI affines are RAS: the affine is built in LPS and
  flipped on x and y, so a series exported to NIfTI lands where a NIfTI reader expects it.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_petite.errors import InputError
from napari_petite.io.memory import check_fits_in_memory
from napari_petite.io.nifti import Volume
from napari_petite.io.suv import (
    as_float,
    as_text,
    bqml_suv_factor,
    combine,
    parse_datetime,
    philips_factors,
    suv_factor,
    suv_tags,
)

PET_MODALITY = "PT"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET_STORAGE = "1.2.840.10008.5.1.4.1.1.130"
#: DICOM patient coordinates are LPS, NIfTI world coordinates RAS
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: slice spacings may differ by this fraction of the spacing (rounding in the positions)
SPACING_TOL = 0.01
#: direction cosines of two slices may differ by this much and still count as parallel
ORIENTATION_TOL = 1e-3
#: Units (0054,1001) codes -> the units napari-petite names
UNITS = {"BQML": "Bq/mL", "GML": "SUV", "CNTS": "counts"}
#: series named in one message before the rest are counted
MAX_LISTED = 8
#: files looked at by :func:`is_dicom_path` before a folder counts as not DICOM
_PROBE_FILES = 256


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder: what a user needs to choose it (``--series UID``)."""

    uid: str
    modality: str
    description: str
    n_files: int
    n_frames: int
    patient_id: str
    study_date: str
    files: tuple[Path, ...] = ()

    @property
    def label(self) -> str:
        return f'{self.uid} "{self.description}" ({self.modality or "no modality"})'


@dataclass
class Frame:
    """One 2D image of a series: a single-frame file, or one frame of a multi-frame file."""

    file: Path
    index: int | None
    ds: Any
    ipp: np.ndarray
    iop: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    cols: int
    slope: float
    intercept: float
    thickness: float | None
    rescale_type: str
    acquired: _dt.datetime | None
    duration_ms: float | None
    reference_ms: float | None
    time_index: int | None
    activity_scale: float | None
    sop_uid: str

    @property
    def label(self) -> str:
        return self.file.name if self.index is None else f"{self.file.name} frame {self.index + 1}"


@dataclass
class Stack:
    """Frames sorted along the slice normal, with the geometry they share."""

    frames: list[Frame]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    normal: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.frames), self.frames[0].rows, self.frames[0].cols


# -- finding files ---------------------------------------------------------------------------
def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_header(path: Path):
    """The header of a DICOM image file (no pixels), or None for anything else."""
    from pydicom import dcmread

    preamble = _has_preamble(path)
    if not preamble and path.suffix.lower() != ".dcm":
        return None
    try:
        ds = dcmread(path, stop_before_pixels=True, force=not preamble)
    except Exception:  # non-DICOM bytes make pydicom raise almost anything: skip the file
        return None
    if "SeriesInstanceUID" not in ds:  # DICOMDIR, presentation states, unreadable headers
        return None
    if not preamble and "SOPClassUID" not in ds:
        return None
    return ds


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _files_under(path: Path) -> Iterable[Path]:
    """Files of a folder, recursively and sorted, without hidden ones (unfinished exports)
    and without links leading out of the folder."""
    if path.is_file():
        yield path
        return
    root = path.resolve()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = Path(dirpath) / name
            if file.is_symlink() and not _inside(file.resolve(), root):
                continue
            if file.is_file():
                yield file


def is_dicom_path(path: str | os.PathLike) -> bool:
    """True for a DICOM file, or a folder holding one (a cheap look, not a validation).

    A file counts when it has the ``DICM`` marker at offset 128, or ends in ``.dcm`` and
    parses; a folder counts when one of its first files does.
    """
    path = Path(path).expanduser()
    if not path.exists():
        return False
    for n, file in enumerate(_files_under(path)):
        if n >= _PROBE_FILES:
            return False
        if _has_preamble(file) or (file.suffix.lower() == ".dcm" and _read_header(file)):
            return True
    return False


def _scan(path: Path) -> dict[str, list[tuple[Path, Any]]]:
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for file in _files_under(path):
        ds = _read_header(file)
        if ds is not None:
            groups.setdefault(as_text(ds.SeriesInstanceUID), []).append((file, ds))
    return groups


def _info(uid: str, members: list[tuple[Path, Any]]) -> SeriesInfo:
    ds = members[0][1]
    frames = sum(max(int(as_float(d.get("NumberOfFrames")) or 1), 1) for _, d in members)
    return SeriesInfo(uid=uid, modality=as_text(ds.get("Modality")).upper(),
                      description=as_text(ds.get("SeriesDescription")), n_files=len(members),
                      n_frames=frames, patient_id=as_text(ds.get("PatientID")),
                      study_date=as_text(ds.get("StudyDate")),
                      files=tuple(file for file, _ in members))


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    return path


def list_series(path: str | os.PathLike) -> list[SeriesInfo]:
    """The DICOM series in a folder (searched recursively) or a file, one entry per
    SeriesInstanceUID; files that are not DICOM are skipped without a word."""
    path = _existing(path)
    return [_info(uid, members) for uid, members in _scan(path).items()]


def _listing(infos: list[SeriesInfo]) -> str:
    shown = ", ".join(info.label for info in infos[:MAX_LISTED])
    if len(infos) > MAX_LISTED:
        shown += f" and {len(infos) - MAX_LISTED} more"
    return shown


def select_series(path: str | os.PathLike, series_uid: str | None = None
                  ) -> tuple[SeriesInfo, list[tuple[Path, Any]]]:
    """The one PET series to read from ``path``, with its files' headers; refused with a
    sentence when there is none, several without a choice, or it is not PET."""
    path = _existing(path)
    groups = _scan(path)
    if not groups:
        if path.is_file():
            raise InputError(f"{path.name} is not a DICOM image file; choose a DICOM PET series "
                             "(its folder or one of its files).")
        raise InputError(f"No DICOM image files were found in {path}; choose the folder of a "
                         "DICOM PET series.")
    infos = {uid: _info(uid, members) for uid, members in groups.items()}
    if series_uid is not None:
        series_uid = series_uid.strip()
        if series_uid not in groups:
            raise InputError(f"{path} holds no DICOM series with UID {series_uid}; it holds "
                             f"{_listing(list(infos.values()))}.")
        uid = series_uid
    elif len(groups) > 1:
        raise InputError(f"{path} holds {len(groups)} DICOM series "
                         f"({_listing(list(infos.values()))}); choose one with --series UID.")
    else:
        uid = next(iter(groups))
    info = infos[uid]
    if info.modality != PET_MODALITY:
        what = f"a {info.modality} series" if info.modality else "a series without Modality"
        raise InputError(f'{path} holds {what} ("{info.description}"), not PET; napari-petite '
                         "reads PET series (Modality PT) only, so choose the PET series of the "
                         "study.")
    return info, groups[uid]


# -- frames and geometry ---------------------------------------------------------------------
def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        items = [value] if isinstance(value, str | bytes | float | int) else list(value)
    except TypeError:
        return None
    numbers = [as_float(v) for v in items]
    if len(numbers) != n or any(v is None for v in numbers):
        return None
    return np.array(numbers, dtype=np.float64)


def _group_value(frame_group, shared, sequence: str, keyword: str) -> Any:
    """A value of an Enhanced functional group: per-frame first, then shared."""
    for group in (frame_group, shared):
        if group is None:
            continue
        seq = group.get(sequence)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None


def _require(value: np.ndarray | None, what: str, label: str) -> np.ndarray:
    if value is None:
        raise InputError(f"{label} has no valid {what}; the slice geometry needs it, so the "
                         "series cannot be stacked into a volume.")
    return value


def _frame(file: Path, ds, index: int | None, fg=None, shared=None) -> Frame:
    label = file.name if index is None else f"{file.name} frame {index + 1}"

    def pick(sequence: str, keyword: str) -> Any:
        value = _group_value(fg, shared, sequence, keyword) if index is not None else None
        return ds.get(keyword) if value is None else value

    ipp = _require(_floats(pick("PlanePositionSequence", "ImagePositionPatient"), 3),
                   "ImagePositionPatient (0020,0032)", label)
    iop = _require(_floats(pick("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                   "ImageOrientationPatient (0020,0037)", label)
    spacing = _require(_floats(pick("PixelMeasuresSequence", "PixelSpacing"), 2),
                       "PixelSpacing (0028,0030)", label)
    if np.any(spacing <= 0):
        raise InputError(f"{label} has PixelSpacing {list(spacing)}; the spacing must be "
                         "positive, so the file is damaged.")
    rows, cols = as_float(ds.get("Rows")), as_float(ds.get("Columns"))
    if not rows or not cols:
        raise InputError(f"{label} has no Rows/Columns; the file is damaged or not an image.")
    slope = as_float(pick("PixelValueTransformationSequence", "RescaleSlope"))
    intercept = as_float(pick("PixelValueTransformationSequence", "RescaleIntercept"))
    thickness = as_float(pick("PixelMeasuresSequence", "SliceThickness"))
    rescale_type = as_text(pick("PixelValueTransformationSequence", "RescaleType")).upper()
    time_index = None
    if index is not None:
        content = fg.get("FrameContentSequence") if fg is not None else None
        item = content[0] if content else None
        acquired = parse_datetime(item.get("FrameAcquisitionDateTime")) if item else None
        duration = as_float(item.get("FrameAcquisitionDuration")) if item else None
        reference = None
        temporal = as_float(item.get("TemporalPositionIndex")) if item else None
        time_index = None if temporal is None else int(temporal)
    else:
        acquired = parse_datetime(ds.get("AcquisitionDateTime")) or combine(
            ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"))
        duration = as_float(ds.get("ActualFrameDuration"))
        reference = as_float(ds.get("FrameReferenceTime"))
        n_times = as_float(ds.get("NumberOfTimeSlices")) or 1
        n_slices, image_index = as_float(ds.get("NumberOfSlices")), as_float(ds.get("ImageIndex"))
        if n_times > 1 and n_slices and image_index:
            time_index = int((image_index - 1) // n_slices)
    _, activity = philips_factors(ds)
    return Frame(file=file, index=index, ds=ds, ipp=ipp, iop=iop,
                 pixel_spacing=(float(spacing[0]), float(spacing[1])), rows=int(rows),
                 cols=int(cols), slope=1.0 if slope is None else slope,
                 intercept=0.0 if intercept is None else intercept, thickness=thickness,
                 rescale_type=rescale_type, acquired=acquired, duration_ms=duration,
                 reference_ms=reference, time_index=time_index, activity_scale=activity,
                 sop_uid=as_text(ds.get("SOPInstanceUID")))


def series_frames(members: list[tuple[Path, Any]]) -> list[Frame]:
    """Every 2D frame of a series' files, single- and multi-frame alike."""
    frames: list[Frame] = []
    for file, ds in members:
        n = int(as_float(ds.get("NumberOfFrames")) or 1)
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if n <= 1 and not per_frame:
            frames.append(_frame(file, ds, None))
            continue
        if not per_frame or len(per_frame) != n:
            raise InputError(f"{file.name} holds {n} frames without per-frame positions "
                             "(PerFrameFunctionalGroupsSequence), so they cannot be placed in "
                             "space; export the series as one file per slice.")
        shared_seq = ds.get("SharedFunctionalGroupsSequence")
        shared = shared_seq[0] if shared_seq else None
        frames.extend(_frame(file, ds, i, per_frame[i], shared) for i in range(n))
    return frames


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def stack_frames(frames: list[Frame], where: str | os.PathLike) -> Stack:
    """Sort ``frames`` along the slice normal and check they form one regular voxel grid.

    Refused with a sentence: mixed orientations, different image sizes or pixel spacings,
    two slices at one position, a missing slice or unequal spacing (beyond
    :data:`SPACING_TOL`), and slices shifted within their plane.
    """
    n = len(frames)
    iops = np.array([f.iop for f in frames])
    off = np.nonzero(np.abs(iops - iops[0]).max(axis=1) > ORIENTATION_TOL)[0]
    if off.size:
        k = int(off[0])
        raise InputError(f"{where} mixes slice orientations (ImageOrientationPatient "
                         f"{_fmt(iops[0])} in {frames[0].label}, {_fmt(iops[k])} in "
                         f"{frames[k].label}); choose a folder holding one series of parallel "
                         "slices.")
    row, col = iops[0][:3].copy(), iops[0][3:].copy()
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if abs(nr - 1) > 0.01 or abs(nc - 1) > 0.01 or abs(float(row @ col)) > 0.01:
        raise InputError(f"{frames[0].label} has an invalid ImageOrientationPatient "
                         f"{_fmt(iops[0])} (not two unit, perpendicular directions); the file "
                         "is damaged.")
    row, col = row / nr, col / nc
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    sizes = {(f.rows, f.cols) for f in frames}
    if len(sizes) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise InputError(f"{where} mixes image sizes ({shown} pixels); choose a folder holding "
                         "one series whose slices all have the same size.")
    spacings = np.array([f.pixel_spacing for f in frames])
    off = np.nonzero(np.abs(spacings - spacings[0]).max(axis=1) > 1e-4 * spacings[0].max())[0]
    if off.size:
        k = int(off[0])
        raise InputError(f"{where} mixes pixel spacings ({_fmt(spacings[0])} mm in "
                         f"{frames[0].label}, {_fmt(spacings[k])} mm in {frames[k].label}); "
                         "choose a folder holding one series.")
    if n < 2:
        raise InputError(f"{where} holds a single slice ({frames[0].label}); a 3D PET volume "
                         "needs the whole series, so choose the folder holding all its files.")
    dy, dx = (float(v) for v in spacings[0])
    proj = np.array([f.ipp @ normal for f in frames])
    order = np.argsort(proj, kind="stable")
    pos = proj[order]
    diffs = np.diff(pos)
    same = np.nonzero(diffs < max(1e-3, 0.01 * min(dx, dy)))[0]
    if same.size:
        i = int(same[0])
        a, b = frames[order[i]], frames[order[i + 1]]
        raise InputError(f"{where} has two slices at the same position ({pos[i]:.2f} mm along "
                         f"the slice normal: {a.label} and {b.label}); it mixes several series "
                         "or time frames, so choose a folder holding one static series.")
    values, counts = np.unique(np.round(diffs, 2), return_counts=True)
    typical = float(values[counts.argmax()])
    step = float(np.mean(diffs[np.abs(diffs - typical) <= SPACING_TOL * typical]))
    bad = np.nonzero(np.abs(diffs - step) > SPACING_TOL * step)[0]
    if bad.size:
        i = int(bad[0])
        a, b = frames[order[i]], frames[order[i + 1]]
        missing = round(diffs[i] / step) - 1
        if missing >= 1 and abs(diffs[i] - (missing + 1) * step) <= SPACING_TOL * step * 2:
            raise InputError(f"{where} is missing {missing} slice{'s' if missing > 1 else ''} "
                             f"between {a.label} and {b.label} ({pos[i]:.2f} and "
                             f"{pos[i + 1]:.2f} mm along the slice normal, where the other "
                             f"slices are {step:.4g} mm apart); copy the complete series again.")
        raise InputError(f"{where} has unequal slice spacing ({diffs[i]:.4g} mm between "
                         f"{a.label} and {b.label}, {step:.4g} mm elsewhere); a voxel grid "
                         "needs evenly spaced slices, so resample the series on the scanner "
                         "console.")
    dz = float((pos[-1] - pos[0]) / (n - 1))
    ordered = [frames[i] for i in order]
    ipps = np.array([f.ipp for f in ordered])
    expected = ipps[0] + np.outer(pos - pos[0], normal)
    shift = float(np.linalg.norm(ipps - expected, axis=1).max())
    if shift > max(0.02 * min(dx, dy), 0.01):
        raise InputError(f"{where} has slices shifted within their plane by up to {shift:.2f} mm "
                         "(a tilted or sheared stack), which a voxel grid cannot represent; "
                         "resample the series on the scanner console.")
    lps = np.eye(4)
    lps[:3, 0] = row * dx
    lps[:3, 1] = col * dy
    lps[:3, 2] = normal * dz
    lps[:3, 3] = ipps[0]
    return Stack(frames=ordered, spacing=(dz, dy, dx), affine=LPS_TO_RAS @ lps, normal=normal)


# -- pixels ----------------------------------------------------------------------------------
def _unreadable(file: Path, err: BaseException) -> InputError:
    reason = " ".join(str(err).split()).rstrip(".") or type(err).__name__
    return InputError(f"The pixel data of {file} cannot be read ({reason}); the file is "
                      "truncated, corrupted or compressed in a way this installation cannot "
                      "decode, so copy it again from the scanner or PACS, uncompressed.")


def frames_per_file(members: list[tuple[Path, Any]]) -> int:
    """The most image frames one file of the series holds (multi-frame files are read
    whole): what :func:`read_bytes` needs."""
    return max(int(as_float(ds.get("NumberOfFrames")) or 1) for _, ds in members)


def read_bytes(n_frames: int, rows: int, cols: int, frames_per_file: int = 1) -> int:
    """Peak bytes reading a series allocates: the float32 volume, one file's decoded pixels
    and a float64 slice while rescaling."""
    plane = rows * cols
    return n_frames * plane * 4 + frames_per_file * plane * 8 + plane * 16


def load_frames(frames: list[Frame], out: np.ndarray, scales: list[float] | None = None) -> None:
    """Decode ``frames`` into ``out[k]`` (float32), applying each frame's own slope and
    intercept, times ``scales[k]`` (Philips counts -> Bq/mL); each file is read once."""
    from pydicom import dcmread

    by_file: dict[Path, list[tuple[int, Frame]]] = {}
    for k, frame in enumerate(frames):
        by_file.setdefault(frame.file, []).append((k, frame))
    for file, items in by_file.items():
        try:
            ds = dcmread(file)
            pixels = np.asarray(ds.pixel_array)
        except MemoryError:
            raise InputError(f"{file} does not fit in memory; use a machine with more "
                             "memory.") from None
        except Exception as err:  # pydicom raises ValueError, RuntimeError, EOFError...
            raise _unreadable(file, err) from None
        if pixels.ndim == 2:
            pixels = pixels[None]
        rows, cols = items[0][1].rows, items[0][1].cols
        if pixels.ndim != 3 or pixels.shape[1:] != (rows, cols) or pixels.dtype.kind not in "biuf":
            raise InputError(f"{file} holds pixels of shape {pixels.shape} ({pixels.dtype}), not "
                             f"{rows}x{cols} grey values; a PET image has one value per pixel.")
        for k, frame in items:
            index = frame.index or 0
            if index >= pixels.shape[0]:
                raise _unreadable(file, ValueError(f"frame {index + 1} is missing"))
            scale = 1.0 if scales is None else scales[k]
            plane = pixels[index].astype(np.float64)
            out[k] = plane * (frame.slope * scale) + frame.intercept * scale


def units_code(frame: Frame) -> str:
    """The Units (0054,1001) code, or an Enhanced PET frame's RescaleType."""
    return as_text(frame.ds.get("Units")).upper() or frame.rescale_type


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    number = as_float(value) if isinstance(value, float | int) else None
    return number if number is not None else as_text(value)


def _provenance(stack: Stack, code: str, bqml_factor: float | None) -> dict[str, Any]:
    """What a derived series needs from its source, JSON-able (patient, study, geometry)."""
    ds = stack.frames[0].ds
    files: list[str] = []
    slices = []
    for frame in stack.frames:
        name = str(frame.file)
        if name not in files:
            files.append(name)
        slices.append({"file": files.index(name), "frame": frame.index,
                       "sop_instance_uid": frame.sop_uid,
                       "position": [float(v) for v in frame.ipp],
                       "thickness": frame.thickness})
    info = {key: _json_value(ds.get(key)) for key in (
        "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID", "SOPClassUID",
        "Modality", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "PatientWeight", "StudyDate", "StudyTime", "AccessionNumber", "SeriesDescription",
        "SeriesNumber", "Manufacturer", "ManufacturerModelName")}
    acquired = [f.acquired for f in stack.frames if f.acquired is not None]
    info.update(Units=code, suv_tags=suv_tags(ds), bqml_suv_factor=bqml_factor,
                earliest_acquisition=min(acquired).isoformat() if acquired else None,
                orientation=[float(v) for v in stack.frames[0].iop],
                pixel_spacing=list(stack.frames[0].pixel_spacing), files=files, slices=slices)
    return info


def describe(stack: Stack) -> tuple[str | None, list[float] | None, dict[str, Any]]:
    """Units, per-frame scales and the ``extra`` dict (SUV factor, provenance) of a stack."""
    first = stack.frames[0]
    code = units_code(first)
    acquired = [f.acquired for f in stack.frames if f.acquired is not None] or None
    factor, reason = suv_factor(first.ds, acquisition_times=acquired, units=code)
    units = UNITS.get(code, code or None)
    scales = None
    if code == "CNTS" and all(f.activity_scale and f.activity_scale > 0 for f in stack.frames):
        # Philips counts: (7053,1009) turns them into Bq/mL, and the SUV factor follows
        scales = [float(f.activity_scale) for f in stack.frames]  # type: ignore[arg-type]
        units = "Bq/mL"
        if factor is not None:
            factor = factor / scales[0]
    if units == "Bq/mL":
        bqml_factor = factor
    elif code == "GML":
        bqml_factor = bqml_suv_factor(first.ds, acquisition_times=acquired)[0]
    else:
        bqml_factor = None
    extra = {"format": "dicom", "suv_factor": factor,
             "suv_reason": None if factor is not None else reason,
             "dicom": _provenance(stack, code, bqml_factor)}
    return units, scales, extra


def _refuse_dynamic(frames: list[Frame], where: Path) -> None:
    times = {f.time_index for f in frames if f.time_index is not None}
    n_times = int(as_float(frames[0].ds.get("NumberOfTimeSlices")) or 1)
    if len(times) > 1 or n_times > 1:
        count = max(len(times), n_times)
        raise InputError(f"{where} is a dynamic series with {count} time frames, not one static "
                         "volume; read it as a dynamic scan (napari_petite.io.dynamic) to sum "
                         "or pair its frames.")


def read_series(path: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Read a DICOM PET series (a folder, or one multi-frame file) into a :class:`Volume`.

    ``data`` is float32 (z, y, x) = (slice along the normal, row, column) in the series'
    units after each slice's RescaleSlope/Intercept; Philips counts with an activity factor
    (7053,1009) become Bq/mL. ``extra`` holds ``suv_factor`` (multiply a value by it to get
    SUVbw, or None), ``suv_reason`` (why not), ``format`` ("dicom") and ``dicom`` (the
    provenance a derived series needs, JSON-able).

    Raises
    ------
    InputError
        with one sentence: no DICOM, several series and no ``series_uid``, not PET, a
        missing slice or another geometry problem, unreadable pixel data, too little memory.
    """
    path = _existing(path)
    _, members = select_series(path, series_uid)
    frames = series_frames(members)
    _refuse_dynamic(frames, path)
    stack = stack_frames(frames, path)
    from napari_petite.io.grid import check_affine

    check_affine(stack.affine, path.name)
    n, rows, cols = stack.shape
    check_fits_in_memory(
        read_bytes(n, rows, cols, frames_per_file(members)),
        f"Reading {path.name} ({n}x{rows}x{cols} voxels)",
        "use a machine with more memory, or resample the series to a coarser grid first.")
    units, scales, extra = describe(stack)
    data = np.empty((n, rows, cols), dtype=np.float32)
    load_frames(stack.frames, data, scales)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path} holds NaN or infinite values after rescaling; the series is "
                         "damaged, so export it again from the scanner.")
    return Volume(data=data, spacing=stack.spacing, affine=stack.affine, units=units,
                  header=None, path=path, extra=extra)
