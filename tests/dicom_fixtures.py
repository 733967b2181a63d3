"""Synthetic DICOM PET series written with pydicom directly, independent of the reader.

Small on purpose (a few slices of 8x10 pixels), so every test builds its own series in its
tmp_path in milliseconds. Files and InstanceNumbers are shuffled relative to the slice
positions, so a reader that trusts the file order or InstanceNumber fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET_SOP = "1.2.840.10008.5.1.4.1.1.130"
SOP_BY_MODALITY = {"PT": PET_SOP, "CT": "1.2.840.10008.5.1.4.1.1.2",
                   "MR": "1.2.840.10008.5.1.4.1.1.4"}
STUDY_DATE = "20240102"
PATIENT = {"PatientName": "Test^Petite", "PatientID": "PETITE-001",
           "PatientBirthDate": "19700101", "PatientSex": "F"}
PHILIPS = "Philips PET Private Group"
#: duration of a static frame, seconds
FRAME_S = 600.0

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def oblique(angle_deg: float = 20.0, tilt_deg: float = 10.0) -> tuple[float, ...]:
    """Row/column cosines of an axial plane rotated about z, then tilted about x."""
    a, b = np.deg2rad(angle_deg), np.deg2rad(tilt_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot = rx @ rz
    return (*rot[:, 0], *rot[:, 1])


def normal_of(orientation: Sequence[float]) -> np.ndarray:
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    n = np.cross(row, col)
    return n / np.linalg.norm(n)


def positions(origin, orientation, dz: float, n: int, offsets=None) -> list[np.ndarray]:
    """ImagePositionPatient of each slice: ``origin + offset_k * normal`` (LPS, mm)."""
    offsets = [k * dz for k in range(n)] if offsets is None else list(offsets)
    normal = normal_of(orientation)
    return [np.asarray(origin, float) + off * normal for off in offsets]


def add_seconds(hhmmss: str, seconds: float, date: str = STUDY_DATE) -> tuple[str, str]:
    """("100000", 90) -> ("20240102", "100130.000000")."""
    base = dt.datetime.strptime(date + hhmmss[:6], "%Y%m%d%H%M%S") + dt.timedelta(seconds=seconds)
    return base.strftime("%Y%m%d"), base.strftime("%H%M%S.%f")


def default_slopes(data_zyx: np.ndarray) -> list[float]:
    """A different slope per slice, each using about half of the uint16 range."""
    out = []
    for k, plane in enumerate(data_zyx):
        peak = float(plane.max())
        out.append(peak / 30000.0 * (1.0 + 0.1 * k) if peak > 0 else 1.0)
    return out


def encode(data_zyx: np.ndarray, slopes: Sequence[float]) -> list[np.ndarray]:
    planes = []
    for plane, slope in zip(data_zyx, slopes, strict=True):
        planes.append(np.clip(np.round(plane / slope), 0, 65535).astype(np.uint16))
    return planes


def _file_meta(sop_class: str, sop_uid: str):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _set(ds, key: Any, value: Any, k: int) -> None:
    """Apply one ``extra_tags`` entry: keyword or (group, element) tag; a callable value is
    called with the slice index; None removes the element."""
    if callable(value):
        value = value(k)
    tag = key if isinstance(key, str) else (key[0] << 16 | key[1] if isinstance(key, tuple)
                                            else key)
    if value is None:
        if tag in ds:
            del ds[tag]
        return
    if isinstance(key, str):
        setattr(ds, key, value)
    else:
        vr, val = value
        ds.add_new(tag, vr, val)


def _set_given(ds, **tags) -> None:
    """Set the tags whose value is given (None: the tag stays absent, as a test asks)."""
    for keyword, value in tags.items():
        if value is not None:
            setattr(ds, keyword, value)


def _code(value: str, scheme: str, meaning: str):
    """One item of a code sequence."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def decay_factor(duration_s: float, half_life_s: float = 6586.2) -> float:
    """DecayFactor (0054,1321) of a frame decay-corrected to its start: the mean decay over
    the frame, lambda*T / (1 - exp(-lambda*T))."""
    lam = np.log(2.0) / half_life_s
    return float(lam * duration_s / -np.expm1(-lam * duration_s))


def _common(ds, *, modality, units, weight, dose, half_life, injection_time,
            injection_datetime, series_date, series_time, decay, corrected, manufacturer,
            description, study_uid, series_uid, for_uid) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    for key, value in PATIENT.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
        study_uid, series_uid, for_uid)
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = STUDY_DATE, "091500", "ACC42"
    ds.StudyID, ds.ReferringPhysicianName, ds.SeriesNumber = "1", "", 3
    ds.Modality, ds.Manufacturer, ds.SeriesDescription = modality, manufacturer, description
    ds.PositionReferenceIndicator = ""
    if corrected is not None and "\\" in corrected:
        corrected = corrected.split("\\")
    _set_given(ds, SeriesDate=series_date, SeriesTime=series_time, PatientWeight=weight,
               Units=units, DecayCorrection=decay, CorrectedImage=corrected)
    if modality == "PT":
        item = Dataset()
        item.Radiopharmaceutical = "Fluorodeoxyglucose"
        _set_given(item, RadiopharmaceuticalStartTime=injection_time,
                   RadiopharmaceuticalStartDateTime=injection_datetime,
                   RadionuclideTotalDose=dose, RadionuclideHalfLife=half_life)
        item.RadionuclidePositronFraction = 0.97
        item.RadionuclideCodeSequence = DicomSequence([_code("77004003", "SCT",
                                                             "^18^Fluorine")])
        item.RadiopharmaceuticalCodeSequence = DicomSequence([_code(
            "35321007", "SCT", "Fluorodeoxyglucose F^18^")])
        ds.RadiopharmaceuticalInformationSequence = DicomSequence([item])
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.CountsSource = "EMISSION"
        ds.CollimatorType = "NONE"
        recumbent = _code("102538003", "SCT", "recumbent")
        recumbent.PatientOrientationModifierCodeSequence = DicomSequence([_code(
            "40199007", "SCT", "supine")])
        ds.PatientOrientationCodeSequence = DicomSequence([recumbent])
        ds.PatientGantryRelationshipCodeSequence = DicomSequence([_code(
            "102540008", "SCT", "headfirst")])
        ds.BodyPartExamined = "BRAIN"  # unpaired: no Laterality
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0


def write_pet_series(
    folder: Path,
    data_zyx: np.ndarray,
    *,
    spacing: Sequence[float],
    origin: Sequence[float] = (-40.0, -30.0, -12.0),
    orientation: Sequence[float] = AXIAL,
    units: str | None = "BQML",
    slopes: Sequence[float] | None = None,
    weight: float | None = 75.0,
    dose: float | None = 3.7e8,
    half_life: float | None = 6586.2,
    injection_time: str | None = "093000",
    injection_datetime: str | None = None,
    series_date: str | None = STUDY_DATE,
    series_time: str | None = "100000",
    acquisition_times: str | Sequence[str | None] | None = None,
    decay: str | None = "START",
    corrected: str | None = "ATTN\\DECY",
    modality: str = "PT",
    shuffle: bool = True,
    manufacturer: str = "SIEMENS",
    offsets: Sequence[float] | None = None,
    thickness: float | None = None,
    description: str = "PET AC",
    series_uid: str | None = None,
    study_uid: str | None = None,
    for_uid: str | None = None,
    prefix: str = "IM",
    first_instance: int = 1,
    seed: int = 0,
    extra_tags: dict[Any, Any | Callable[[int], Any]] | None = None,
) -> Path:
    """Write one file per slice; slice k (in ``data_zyx`` order) lies at ``origin + offsets[k]
    * normal`` with ``offsets`` defaulting to ``k * spacing[0]``. ``spacing`` is (dz, dy, dx):
    PixelSpacing = [dy, dx]. Values are stored as uint16 with ``slopes[k]`` per slice."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data_zyx = np.asarray(data_zyx, dtype=np.float64)
    n, rows, cols = data_zyx.shape
    slopes = default_slopes(data_zyx) if slopes is None else list(slopes)
    planes = encode(data_zyx, slopes)
    ipps = positions(origin, orientation, float(spacing[0]), n, offsets)
    if acquisition_times is None or isinstance(acquisition_times, str):
        acquisition_times = [acquisition_times or series_time] * n
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    for_uid = for_uid or generate_uid()
    rng = np.random.default_rng(seed)
    instances = rng.permutation(n) + first_instance if shuffle else np.arange(n) + first_instance
    order = rng.permutation(n) if shuffle else np.arange(n)
    sop_class = SOP_BY_MODALITY[modality]
    for k in (int(i) for i in order):
        sop_uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _file_meta(sop_class, sop_uid)
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
        _common(ds, modality=modality, units=units if modality == "PT" else None,
                weight=weight, dose=dose, half_life=half_life, injection_time=injection_time,
                injection_datetime=injection_datetime, series_date=series_date,
                series_time=series_time, decay=decay if modality == "PT" else None,
                corrected=corrected if modality == "PT" else None, manufacturer=manufacturer,
                description=description, study_uid=study_uid, series_uid=series_uid,
                for_uid=for_uid)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.InstanceNumber = int(instances[k])
        if acquisition_times[k] is not None:
            ds.AcquisitionDate = series_date or STUDY_DATE
            ds.AcquisitionTime = acquisition_times[k]
        ds.ImagePositionPatient = [round(float(v), 6) for v in ipps[k]]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in orientation]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0] if thickness is None else thickness)
        ds.SliceLocation = round(float(ipps[k][2]), 6)
        ds.Rows, ds.Columns = rows, cols
        ds.RescaleSlope = f"{slopes[k]:.10g}"
        ds.RescaleIntercept = 0
        if modality == "PT":
            ds.ImageIndex = k + 1
            ds.NumberOfSlices = n
            ds.FrameReferenceTime = FRAME_S * 500.0  # ms: the middle of the frame
            ds.ActualFrameDuration = int(FRAME_S * 1000)
            ds.DecayFactor = f"{decay_factor(FRAME_S, half_life or 6586.2):.6f}"
        ds.PixelData = planes[k].tobytes()
        for key, value in (extra_tags or {}).items():
            _set(ds, key, value, k)
        ds.save_as(folder / f"{prefix}{int(instances[k]):04d}.dcm", enforce_file_format=True)
    return folder


def write_enhanced_pet(
    path: Path,
    data_zyx: np.ndarray,
    *,
    spacing: Sequence[float],
    origin: Sequence[float] = (-40.0, -30.0, -12.0),
    orientation: Sequence[float] = AXIAL,
    slopes: Sequence[float] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    **tags: Any,
) -> Path:
    """One Enhanced PET multi-frame file: per-frame PlanePositionSequence and
    PixelValueTransformationSequence, shared orientation and pixel measures; frames stored in
    a shuffled order."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import generate_uid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data_zyx = np.asarray(data_zyx, dtype=np.float64)
    n, rows, cols = data_zyx.shape
    slopes = default_slopes(data_zyx) if slopes is None else list(slopes)
    planes = encode(data_zyx, slopes)
    ipps = positions(origin, orientation, float(spacing[0]), n)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(ENHANCED_PET_SOP, sop_uid)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_PET_SOP, sop_uid
    settings = {"modality": "PT", "units": "BQML", "weight": 75.0, "dose": 3.7e8,
                "half_life": 6586.2, "injection_time": "093000", "injection_datetime": None,
                "series_date": STUDY_DATE, "series_time": "100000", "decay": "START",
                "corrected": "ATTN\\DECY", "manufacturer": "SIEMENS",
                "description": "PET enhanced", "study_uid": generate_uid(),
                "series_uid": generate_uid(), "for_uid": generate_uid()}
    settings.update(tags)
    _common(ds, **settings)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceNumber = 1
    ds.AcquisitionDateTime = STUDY_DATE + "100000"
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = rows, cols
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [round(float(v), 8) for v in orientation]
    measures = Dataset()
    measures.PixelSpacing = [float(spacing[1]), float(spacing[2])]
    measures.SliceThickness = float(spacing[0])
    shared.PlaneOrientationSequence = DicomSequence([orient])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in (int(i) for i in order):
        group = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [round(float(v), 6) for v in ipps[k]]
        value = Dataset()
        value.RescaleSlope = f"{slopes[k]:.10g}"
        value.RescaleIntercept = 0
        value.RescaleType = "BQML"
        content = Dataset()
        content.FrameAcquisitionDateTime = STUDY_DATE + "100000"
        content.FrameAcquisitionDuration = FRAME_S * 1000.0
        content.FrameReferenceDateTime = STUDY_DATE + "100500"  # the middle of the frame
        factors = Dataset()  # the PET Frame Correction Factors macro
        factors.PrimaryPromptsCountsAccumulated = 1000000 + k
        factors.SliceSensitivityFactor = 1.0
        factors.DecayFactor = f"{decay_factor(FRAME_S) + 0.001 * k:.6f}"
        factors.ScatterFractionFactor = 0.3
        factors.DeadTimeFactor = 1.01
        group.PETFrameCorrectionFactorsSequence = DicomSequence([factors])
        group.PlanePositionSequence = DicomSequence([plane])
        group.PixelValueTransformationSequence = DicomSequence([value])
        group.FrameContentSequence = DicomSequence([content])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = b"".join(planes[int(k)].tobytes() for k in order)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dynamic_series(
    folder: Path,
    frames_tzyx: np.ndarray,
    *,
    starts_s: Sequence[float],
    durations_s: Sequence[float],
    spacing: Sequence[float],
    series_time: str = "100000",
    **kwargs: Any,
) -> Path:
    """A classic dynamic PET series: one file per (time frame, slice), NumberOfTimeSlices,
    ImageIndex, AcquisitionTime (frame start), FrameReferenceTime and ActualFrameDuration."""
    from pydicom.uid import generate_uid

    frames_tzyx = np.asarray(frames_tzyx, dtype=np.float64)
    nt, nz = frames_tzyx.shape[:2]
    uids = {"series_uid": generate_uid(), "study_uid": generate_uid(), "for_uid": generate_uid()}
    extra = kwargs.pop("extra_tags", None) or {}
    for t in range(nt):
        _, start = add_seconds(series_time, starts_s[t])
        mid_ms = (starts_s[t] + durations_s[t] / 2) * 1000.0
        tags = {"NumberOfTimeSlices": nt, "ImageIndex": (lambda k, t=t: t * nz + k + 1),
                "FrameReferenceTime": mid_ms, "ActualFrameDuration": int(durations_s[t] * 1000),
                "SeriesType": ["DYNAMIC", "IMAGE"]}
        tags.update(extra)
        write_pet_series(folder, frames_tzyx[t], spacing=spacing, series_time=series_time,
                         acquisition_times=start, prefix=f"T{t:02d}_", first_instance=t * nz + 1,
                         seed=t, extra_tags=tags, **uids, **kwargs)
    return folder


def philips_tags(suv_scale: float | None, activity_scale: float | None) -> dict:
    """extra_tags for the Philips private SUV (7053,1000) and activity (7053,1009) factors."""
    tags: dict = {(0x7053, 0x0010): ("LO", PHILIPS)}
    if suv_scale is not None:
        tags[(0x7053, 0x1000)] = ("DS", f"{suv_scale:.10g}")
    if activity_scale is not None:
        tags[(0x7053, 0x1009)] = ("DS", f"{activity_scale:.10g}")
    return tags


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (inputs must be byte-identical after a run)."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def pet_volume(shape_zyx=(6, 8, 10), seed: int = 0, peak: float = 20000.0) -> np.ndarray:
    """A positive blob (Bq/mL), different on every slice, in (z, y, x) order."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_zyx], indexing="ij")
    blob = np.exp(-sum(g**2 for g in grids) * 1.5) * peak
    return blob * rng.uniform(0.8, 1.2, size=shape_zyx) + 100.0
